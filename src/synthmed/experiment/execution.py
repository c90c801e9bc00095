"""How a grid runs, described once: the ``Execution`` schema.

Every field carries a ``Knob`` (its help, flag, bounds and how text becomes its value). ``synthmed run`` and
``synthmed experiment run`` derive their execution options from it (``cli/options.execution_parameters``), an
experiment file's ``execution:`` section is read with it (``from_mapping``), and ``run_grid`` takes the result. A
field is not a run's identity: changing one changes where, how fast and how far a grid runs, never a record.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any

from synthmed.errors import SynthmedError

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Knob:
    """How one execution field appears outside this module."""

    help: str
    flag: str | None = None  # default ``--`` + the name with dashes; a bool's default True gives --x/--no-x
    more_flags: tuple[str, ...] = ()  # other spellings of the same option
    metavar: str | None = None
    low: float | None = None  # inclusive
    choices: tuple[str, ...] | None = None
    parse: str | None = None  # "duration", "paths" or "names": text (CLI or YAML) -> value, see ``parse_value``
    internal: bool = False  # set by the command itself, neither an option nor a YAML key


def knob(default: Any = None, **meta: Any) -> Any:
    return field(default=default, metadata={"knob": Knob(**meta)})


@dataclass
class Execution:
    """How a grid runs: where (backend, workers, threads, device), what it reads and keeps, how long it may take,
    where finished runs go, and how seeds are added until the verdicts are decided."""

    data_root: str | None = knob(
        None, help="Folder holding the MedMNIST npz files (default: $SYNTHMED_DATA, else ~/.medmnist)."
    )
    verify: bool = knob(True, help="Check the MedMNIST files' MD5 (--no-verify skips it; other checks still apply).")
    device: str = knob("auto", help="auto | cpu | cuda.")
    classes: list[str] | None = knob(
        None,
        parse="names",
        help="npz:PATH datasets: comma-separated class names, in label order "
        "(default: the file's JSON side-car, else 0, 1, ...).",
    )
    cache_dir: Path | None = knob(
        None,
        flag="--generator-cache",
        more_flags=("--cache-dir",),
        help="Folder of cached trained generators and reference classifiers, reused when method, data subset and "
        "seed match (default: OUT/cache).",
    )
    save_model: bool = knob(False, help="Keep each run's selected weights (model.pt).")
    report: bool = knob(True, help="Write report.md, report.html and the CSV files at the end.")
    backend: str = knob(
        "local", choices=BACKENDS, help="local (this process, or --workers processes) | ray (one Ray task per run)."
    )
    address: str | None = knob(
        None,
        help="ray: an existing cluster (auto or ray://HOST:10001); default: start a local Ray instance on this "
        "machine's cores.",
    )
    workers: int | None = knob(
        None,
        low=1,
        help="local: run this many runs at once in worker processes, bounded by cores / --cpus-per-run and free "
        "memory (default: one single-thread worker per core on a CPU for a grid of 2+ runs, 1 on a GPU; 1 runs in "
        "this process).",
    )
    cpus_per_run: int | None = knob(
        None,
        low=1,
        help="CPUs (torch threads) each run uses (default: 1 per worker process or Ray task; all of torch's in this "
        "process). Set it when several synthmed processes share a machine.",
    )
    mlflow: str | None = knob(
        None,
        help="Also log every run to this MLflow tracking URI (e.g. file:./mlruns or http://host:5000); needs pip "
        "install mlflow.",
    )
    min_seeds: int | None = knob(
        None,
        low=2,
        help="With --seeds auto: the seeds of the first look (default 5, the fewest any verdict is decided on).",
    )
    max_seeds: int | None = knob(
        None, low=2, help="With --seeds auto: stop after this many seeds even if undecided (required with auto)."
    )
    seed_step: int | None = knob(
        None,
        low=1,
        help="With --seeds auto: the seeds each round adds before the next look (default: --workers, so a round "
        "fills them). Part of the plan: a resumed study keeps the step its sequential.json records.",
    )
    margin: float | None = knob(None, low=0, help="Equivalence margin of the verdicts, in AUC (default 0.01).")
    reference: str | None = knob(
        None,
        help="A third reference every method is also compared with, besides none and the count-matched oversample "
        "control at the same policy (e.g. pseudo-label: the unlabelled real images).",
    )
    resume_from: Path | None = knob(
        None, help="An export (`synthmed export`) whose runs are imported first and so not run again."
    )
    time_budget: float | None = knob(
        None,
        parse="duration",
        metavar="DURATION|HH:MM",
        help="End by this time from now (2h30m, 90m, 45s or seconds), or by a clock time (10:52 today in local "
        "time, or 2026-12-07T10:52): no run starts that the budget cannot fit "
        "(estimated from the store's runs of the same config, else of the same dataset, protocol and method, else "
        "1 hour); runs in flight at the end are abandoned without a record, and the command exits with status 3; "
        "run it again to continue.",
    )
    wait_for_others: bool = knob(
        True,
        help="When only runs other processes hold are left, wait for them (taking over any whose holder stops); "
        "--no-wait-for-others ends instead and leaves them, and a --seeds auto look, to their holders, so a lane's "
        "next command starts at once.",
    )
    export_to: Path | None = knob(
        None,
        metavar="DIR",
        help="An export (as `synthmed export` writes; new, or an earlier one) each finished run is added to as it "
        "is stored, with the report written there at the end.",
    )
    pages: list[Path] | None = knob(
        None,
        parse="paths",
        metavar="PAGE",
        help="With --export-to: study pages (Markdown, repeatable or a comma list) whose <!-- study_table --> "
        "tables are regenerated at the end, as `synthmed report DIR --pages PAGE` does (a block naming no export "
        "reads the --export-to one).",
    )
    auto_seeds: bool = knob(False, internal=True, help="--seeds auto: add seeds in rounds until decided.")
    skip_absent: bool = knob(False, internal=True, help="Leave out datasets whose files are absent (experiment run).")

    def check(self) -> None:
        """Refuse inconsistent settings before anything runs or is written."""
        for f in dataclasses.fields(self):
            value, k = getattr(self, f.name), knob_of(f.name)
            if k.low is not None and value is not None and not value >= k.low:
                raise SynthmedError(f"{flag_of(f.name)} {value:g} must be >= {k.low:g}")
            if k.choices and value not in k.choices:
                raise SynthmedError(f"{flag_of(f.name)} {value!r}: choose {' or '.join(k.choices)}")
        if self.auto_seeds and self.max_seeds is None:
            raise SynthmedError("--seeds auto needs --max-seeds N (the most seeds to run, e.g. 20)")
        if not self.auto_seeds and (given := [f for f in ("max_seeds", "min_seeds", "seed_step") if getattr(self, f)]):
            raise SynthmedError(f"{flag_of(given[0])} applies to --seeds auto")
        if self.min_seeds is not None and self.max_seeds is not None and self.min_seeds > self.max_seeds:
            raise SynthmedError(f"--min-seeds {self.min_seeds} is above --max-seeds {self.max_seeds}")
        if self.time_budget is not None and self.backend == "ray":
            raise SynthmedError(
                "--time-budget needs the local backend (Ray's runs in flight cannot be abandoned at the deadline); "
                "drop --backend ray"
            )
        if self.pages and self.export_to is None:
            raise SynthmedError("--pages regenerates tables from an export: give --export-to DIR too")


def knob_of(name: str) -> Knob:
    return Execution.__dataclass_fields__[name].metadata["knob"]


def flag_of(name: str) -> str:
    return knob_of(name).flag or "--" + name.replace("_", "-")


def public_fields() -> list[str]:
    """The fields a user sets (as an option or a YAML key), in declaration order."""
    return [f.name for f in dataclasses.fields(Execution) if not knob_of(f.name).internal]


_DURATION = re.compile(r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str | float | None, flag: str = "--time-budget", now: datetime | None = None) -> float | None:
    """Seconds of ``2h30m``, ``90m``, ``45s``, ``1h``, ``3600`` (plain seconds), or until a clock time (``until``);
    None for None."""
    if text is None:
        return None
    if ":" in str(text):
        return until(str(text), flag, now)
    compact = str(text).strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(compact)
    if not compact or match is None or not any(match.groupdict().values()):
        raise SynthmedError(f"{flag} {text!r}: give a duration such as 2h30m, 90m, 45s or 3600 (seconds)")
    seconds = sum(float(match[unit] or 0) * scale for unit, scale in (("h", 3600), ("m", 60), ("s", 1)))
    if not seconds > 0:
        raise SynthmedError(f"{flag} {text!r} must be longer than 0 seconds")
    return seconds


def until(text: str, flag: str = "--time-budget", now: datetime | None = None) -> float:
    """Seconds from ``now`` to a clock time: ``10:52`` or ``10:52:30`` today, or a date and time (``2026-12-07T10:52``,
    an offset such as ``+01:00`` or ``Z`` allowed), in the machine's local time unless an offset is given. A lane of
    several commands that must all end by one moment (a job's end, a session's) gives each the same time instead of
    working out what is left. A time already past is an error: a command started after its lane's end runs nothing."""
    now = now or datetime.now().astimezone()
    compact = text.strip().replace(" ", "T")
    try:
        if clock := re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", compact):
            hour, minute, second = (int(part or 0) for part in clock.groups())
            moment = datetime.combine(now.date(), time(hour, minute, second), tzinfo=now.tzinfo)
        else:
            moment = datetime.fromisoformat(compact)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)
    except ValueError:
        raise SynthmedError(
            f"{flag} {text!r}: give a clock time such as 10:52 (today, local time) or 2026-12-07T10:52, or a "
            "duration such as 2h30m"
        ) from None
    seconds = (moment - now).total_seconds()
    if not seconds > 0:
        raise SynthmedError(
            f"{flag} {text!r} has passed (it is {now:%Y-%m-%d %H:%M:%S}); give a later time or a duration"
        )
    return seconds


def _items(value: Any) -> list[str]:
    """A comma list, a list of comma lists, or nothing, as its non-empty parts."""
    parts = value if isinstance(value, list | tuple) else [value]
    return [p.strip() for part in parts if part is not None for p in str(part).split(",") if p.strip()]


_BASE_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "Path": Path}


def base_type(name: str) -> type:
    """The type a field holds, its ``| None`` aside (``int`` for ``workers: int | None``)."""
    return _BASE_TYPES[str(Execution.__dataclass_fields__[name].type).split(" ")[0]]


def parse_value(name: str, value: Any, where: str | None = None) -> Any:
    """A field's value from text or YAML (a duration, a comma list of paths or names, a number, a flag)."""
    where = where or flag_of(name)
    if value is None:
        return None
    kind = knob_of(name).parse
    if kind == "duration":
        return parse_duration(value, where)
    if kind == "paths":
        return [Path(p) for p in _items(value)] or None
    if kind == "names":
        return _items(value) or None
    kind_of = base_type(name)
    try:
        if kind_of is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind_of is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind_of is float:
            return float(value)
    except (TypeError, ValueError):
        raise SynthmedError(f"{where}: {value!r} is not {kind_of.__name__}") from None
    return kind_of(str(value))


def from_mapping(doc: Any, where: str) -> dict[str, Any]:
    """An experiment file's ``execution:`` section as checked field values (unknown keys refused)."""
    if not isinstance(doc, dict):
        raise SynthmedError(f"{where}: 'execution' must be a mapping, e.g. {{workers: 2, time_budget: 2h}}")
    known = public_fields()
    out = {}
    for key, value in doc.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise SynthmedError(f"{where}: execution: unknown key {key!r}; known: {', '.join(known)}")
        out[name] = parse_value(name, value, f"{where}: execution.{key}")
    return out


def build(file: dict[str, Any] | None = None, given: dict[str, Any] | None = None, **fixed: Any) -> Execution:
    """The execution of a command: the file's ``execution:`` values, overridden by the options given on the command
    line (raw text, parsed here), then by what the command fixes itself; checked."""
    values = dict(file or {})
    values.update({name: parse_value(name, value) for name, value in (given or {}).items()})
    values.update(fixed)
    execution = Execution(**values)
    execution.check()
    return execution
