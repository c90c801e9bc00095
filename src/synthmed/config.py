"""YAML run files: the same options as ``synthmed run``, one per key, read with a safe loader.

Lists may be given as YAML lists or comma-separated strings (``methods: [none, flip]`` or
``methods: none,flip``). Options given on the command line override the file.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from synthmed.errors import SynthmedError


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict:
    """A YAML file's top-level mapping (``{}`` when empty), or one error line naming the file and problem."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SynthmedError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SynthmedError(f"{path} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SynthmedError(f"{path} must hold a mapping ({expected}), not a {type(raw).__name__}")
    return raw


def load_run_config(path: str | Path, types: dict[str, type]) -> dict:
    """Read ``path`` and check every key and value type against ``types`` (option name -> type)."""
    path = Path(path)
    raw = read_yaml_mapping(path, "config file", "option: value")
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in types:
            raise SynthmedError(f"unknown key {key!r} in {path}; known keys: {', '.join(sorted(types))}")
        expected = types[name]
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        bool_for_int = expected is int and isinstance(value, bool)  # YAML's `true` is not an epoch count
        if value is not None and (not isinstance(value, expected) or bool_for_int):
            raise SynthmedError(f"key {key!r} in {path} should be {expected.__name__}, got {value!r}")
        out[name] = value
    return out
