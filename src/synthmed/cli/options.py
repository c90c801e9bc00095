"""Command-line options derived from the run schema (``synthmed.spec``), and the options of execution.

``schema_parameters`` turns ``RunSpec`` / ``SyntheticLevers`` fields into typer options: the flag, help text, type,
bounds and default come from the field and its ``Setting``; a sweepable field takes a comma list; a deprecated
spelling becomes a hidden option that still works and warns. ``with_parameters`` adds them to a command's
signature, so typer builds the options without their being restated here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import typer

from synthmed.spec import aliases, default_of, fields, flag_of, meta, value_type

#: Prefix of the hidden parameters that carry a deprecated flag's value.
DEPRECATED = "deprecated__"
#: "Use the field's default" (None is a default of its own).
UNSET: Any = object()
#: --help groups the options by the experiment-file section they belong to.
PANELS = {
    "datasets": "Data and protocol",
    "protocols": "Data and protocol",
    "methods": "Methods and their levers",
    "classifiers": "Classifier and training",
    "recipes": "Classifier and training",
    "seeds": "Classifier and training",
    "options": "Classifier and training",
}
EXECUTION = "Execution"


@dataclasses.dataclass(frozen=True)
class Override:
    """How one command shows a schema field differently (``generate`` takes one ``--seed``, not ``--seeds``)."""

    flag: str | None = None
    short: str | None = None
    default: Any = UNSET
    sweep: bool | None = None
    help: str | None = None
    aliases: tuple[str, ...] | None = None  # deprecated flags of this command (default: the schema's)
    show_default: str | bool = True


def _option(name: str, override: Override) -> list[inspect.Parameter]:
    m = meta(name)
    kind, optional = value_type(name)
    flag = override.flag or flag_of(name)
    short = override.short if override.short is not None else m.short
    sweep = m.sweep if override.sweep is None else override.sweep
    default = default_of(name) if override.default is UNSET else override.default
    help_text = override.help or m.help
    if not sweep:  # this command takes one value
        help_text = help_text.replace("; a comma list sweeps.", ".").replace(" (a comma list sweeps)", "")
    if m.choices and not sweep:
        help_text += f" [{' | '.join(map(str, m.choices))}]"
    if kind is bool and not m.words:
        decls = [f"{flag}/--no-{flag[2:]}"] if default else [flag]
        annotation: Any = bool
    elif sweep or kind is dict or m.words:  # text, coerced by the schema (``all`` is not a number)
        annotation, decls = str | None, [flag]
        default = None if default is None else ",".join(map(str, default if isinstance(default, list) else [default]))
    else:
        annotation, decls = (kind | None) if optional or default is None else kind, [flag]
    if short:
        decls.append(short)
    option = typer.Option(
        default, *decls, help=help_text, show_default=override.show_default, rich_help_panel=PANELS[m.section]
    )
    out = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)]
    for alias in override.aliases if override.aliases is not None else m.aliases:
        alias_flag = "--" + alias.replace("_", "-")
        out.append(
            inspect.Parameter(
                DEPRECATED + alias,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=annotation,
                default=typer.Option(None, alias_flag, hidden=True),
            )
        )
    return out


def schema_parameters(names: Iterable[str], overrides: dict[str, Override] | None = None) -> list[inspect.Parameter]:
    """Typer parameters for the named schema fields (``method_params`` is a repeatable ``-p KEY=VALUE``)."""
    overrides = overrides or {}
    params: list[inspect.Parameter] = []
    for name in names:
        if name == "method_params":
            params.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=list[str] | None,
                    default=typer.Option(
                        None,
                        "--method-param",
                        "-p",
                        rich_help_panel=PANELS["methods"],
                        help=(
                            "KEY=VALUE hyper-parameter of the methods that have it, repeatable; "
                            "a comma list sweeps (-p lr=1e-4,2e-4 -p gp_weight=5,10 runs the 4 "
                            "combinations; -p diffaugment=color,cutout is one policy); see `synthmed list --presets`."
                            if overrides.get(name, Override()).sweep is not False
                            else "KEY=VALUE hyper-parameter of the method, repeatable, one value each "
                            "(-p diffaugment=color,translation,cutout); see `synthmed list --presets`."
                        ),
                    ),
                )
            )
            continue
        params += _option(name, overrides.get(name, Override()))
    return params


def with_parameters(params: list[inspect.Parameter]) -> Callable[[Callable], Callable]:
    """Add ``params`` to a command's signature (the command takes them through ``**options``)."""

    def decorate(func: Callable) -> Callable:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(func).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        context = [p for p in own if p.annotation in (typer.Context, "typer.Context")]
        rest = [p for p in own if p not in context]
        func.__signature__ = inspect.Signature([*context, *params, *rest])  # type: ignore[attr-defined]
        return func

    return decorate


def optional_values(argv: list[str]) -> list[str]:
    """``argv`` with every bare switch that may also take a name (``--robustness``, not ``--robustness
    medmnistc``) written ``--robustness=true``: a click option takes a value or none, never an optional one."""
    switches = {flag_of(name) for name in fields() if value_type(name)[0] is bool and meta(name).words}
    out = []
    for i, arg in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else "-"
        out.append(f"{arg}=true" if arg in switches and following.startswith("-") else arg)
    return out


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set the option (on the command line or through its environment variable)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def take_deprecated(
    options: dict[str, Any], warn: Callable[[str], None], meaning: dict[str, str] | None = None
) -> set[str]:
    """Move the values of deprecated flags onto their field (``meaning`` maps an alias to its field for this
    command; default: the schema's), with one warning each; returns the fields so set."""
    moved = set()
    for key in [k for k in options if k.startswith(DEPRECATED)]:
        value = options.pop(key)
        if value is None or value is False:  # not given (a flag that is absent reads False)
            continue
        alias = key.removeprefix(DEPRECATED)
        field = (meaning or {}).get(alias) or aliases()[alias]
        warn(f"--{alias.replace('_', '-')} is deprecated; use {flag_of(field)}")
        options[field] = value
        moved.add(field)
    return moved


def all_fields() -> list[str]:
    """Every schema field a user sets, in declaration order (internal ones are set by the grid)."""
    return [name for name in fields() if not meta(name).internal]


# --------------------------------------------------------------------------------- options of execution


def execution_option(name: str, default: Any = UNSET) -> Any:
    """The typer option of an ``Execution`` field, from its ``Knob`` (also for commands that take only a few)."""
    from synthmed.experiment.execution import Execution, flag_of, knob_of

    k = knob_of(name)
    value = Execution.__dataclass_fields__[name].default if default is UNSET else default
    flag = flag_of(name)
    decls = [f"{flag}/--no-{flag[2:]}"] if value is True else [flag, *k.more_flags]
    if k.choices:
        decls = [flag]
    return typer.Option(
        value,
        *decls,
        metavar=k.metavar,
        rich_help_panel=EXECUTION,
        help=k.help,
    )


def _annotation(name: str) -> Any:
    from synthmed.experiment.execution import base_type, knob_of

    parse = knob_of(name).parse
    if parse == "paths":
        return list[Path] | None
    if parse is not None:
        return str | None
    base = base_type(name)
    return base if base is bool else base | None


def execution_parameters(skip: Iterable[str] = ()) -> list[inspect.Parameter]:
    """Typer parameters for every public ``Execution`` field (a command reads them with ``execution_given``)."""
    from synthmed.experiment.execution import public_fields

    return [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=execution_option(name), annotation=_annotation(name)
        )
        for name in public_fields()
        if name not in skip
    ]


def execution_given(ctx: typer.Context, options: dict[str, Any]) -> dict[str, Any]:
    """Pop the execution options out of a command's ``options``; return those the user gave (raw values)."""
    from synthmed.experiment.execution import public_fields

    values = {name: options.pop(name) for name in public_fields() if name in options}
    return {name: value for name, value in values.items() if given(ctx, name)}


DATA_ROOT = execution_option("data_root")
NO_VERIFY = typer.Option(
    False, "--no-verify", rich_help_panel=EXECUTION, help="Skip the MD5 check (other checks still apply)."
)
DEVICE = execution_option("device")
CLASSES = execution_option("classes")
GENERATOR_CACHE = typer.Option(
    None,
    "--generator-cache",
    "--cache-dir",
    rich_help_panel=EXECUTION,
    help="Folder of cached trained generators "
    "and reference classifiers, reused when method, data subset and seed match "
    "(default: $XDG_CACHE_HOME/synthmed, else ~/.cache/synthmed).",
)


def split_classes(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def check_out_folder(out: Path) -> Path:
    """An output folder that is not a file."""
    from synthmed.errors import SynthmedError

    if out.exists() and not out.is_dir():
        raise SynthmedError(f"--out {out} is a file; give a folder (it will hold results.sqlite and runs/)")
    return out
