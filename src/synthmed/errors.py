"""One exception type for everything a user can fix.

The CLI prints a ``SynthmedError`` as a single line and exits non-zero; anything else is a bug and
keeps its traceback. Messages name the problem and the fix.
"""


class SynthmedError(Exception):
    """A problem with the user's input or environment, explained in one line."""
