"""Experiment files and the one expansion of a grid into runs.

One YAML format serves ``synthmed run --config FILE`` and ``synthmed experiment run FILE``; every section is an
axis of the grid and may be one value or a list:

    name: chaptoukaev2021-quick              # default: the file name
    out: runs/chaptoukaev2021-quick           # default: runs/NAME
    datasets: [breastmnist, pneumoniamnist]   # MedMNIST flags, npz:PATH, folder:PATH
    protocols: [lowdata, {protocol: fraction, fraction: [0.05, 0.1], stratified: true}]
    methods: [none, flip, {method: cvae, params: {epochs: 50}, synthetic_weight: [0.5, 1]}]
    classifiers: resnet18
    recipes: {recipe: medmnist, epochs: 10, patience: 5}
    seeds: [0, 1, 2]
    options: {precision: auto, dropout: 0.0, robustness: false}

A mapping entry takes the fields of ``synthmed.spec.RunSpec`` of its section (``section_fields``; docs/configs.md
lists them: ``methods`` take ``params`` and ``param_grid`` for the hyper-parameters, and ``options`` the fields of
no other section, and levers that every method adding a synthetic set shares, such as ``fidelity_epochs``).
A list under a sweepable field runs every value;
``param_grid: {lr: [1e-4, 2e-4]}`` sweeps hyper-parameters (``params`` values are single values, so a list such
as ``betas: [0.5, 0.9]`` stays one value). Levers apply only to methods that add a synthetic set.

Every problem (unknown key, wrong type or bound) is one line naming the file and key, found before anything runs.
``real_curve: [25, 50, 100, 150, 300]`` adds ``none`` runs trained on that many real images per class, nested
within each run's real pool, from which the report reads every method's worth in real images (at the protocol's
own count the point is the plain ``none`` run, so no copy of it runs).

The older run-key dialect (``dataset:``, ``methods: [none, flip]``, ``epochs:`` at the top level) is read with a
deprecation note that names each new key.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthmed.data.protocol import anchor_per_class
from synthmed.errors import SynthmedError
from synthmed.spec import (
    PROTOCOLS,
    SYNTHESIS_FIELDS,
    TEACHER_FIELDS,
    RunSpec,
    SyntheticLevers,
    aliases,
    coerce,
    fields,
    flag_of,
    meta,
    method_label,
    split_values,
)

ENTRY_KEYS = {"protocols": "protocol", "methods": "method", "recipes": "recipe"}
TOP_KEYS = (
    "name",
    "out",
    "datasets",
    "protocols",
    "methods",
    "classifiers",
    "recipes",
    "seeds",
    "options",
    "real_curve",
    "execution",
)


#: The most aliases (``*name``) a YAML document may use, the most values it may hold once its aliases are expanded,
#: and the most bytes: aliases nested in aliases ("billion laughs") grow exponentially when the values are expanded;
#: an experiment file needs none of that.
MAX_YAML_ALIASES = 100
MAX_YAML_VALUES = 100_000
MAX_YAML_BYTES = 1_000_000


class _TooManyAliases(yaml.YAMLError):
    pass


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a document with more than MAX_YAML_ALIASES aliases."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise _TooManyAliases(f"more than {MAX_YAML_ALIASES} aliases (*name)")
        return super().compose_node(parent, index)


def _expanded_values(value: Any, limit: int) -> int:
    """The values of a loaded document with its aliases expanded, counted up to ``limit`` (shared lists count at
    every place they appear, as the grid would expand them)."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with at most MAX_YAML_ALIASES aliases and MAX_YAML_VALUES values once they are expanded."""
    value = yaml.load(text, Loader=BoundedLoader)  # a SafeLoader subclass
    if _expanded_values(value, MAX_YAML_VALUES) > MAX_YAML_VALUES:
        raise _TooManyAliases(f"more than {MAX_YAML_VALUES} values once its aliases (*name) are expanded")
    return value


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict:
    """A YAML file's top-level mapping (``{}`` when empty), or one error line naming the file and problem."""
    try:
        if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
            raise SynthmedError(f"{what} {path} holds more than {MAX_YAML_BYTES} bytes; an experiment file is a few KB")
        raw = safe_load(path.read_text())
    except _TooManyAliases as err:
        raise SynthmedError(f"{path} is refused: it uses {err}; write the values out instead") from None
    except FileNotFoundError:
        raise SynthmedError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise SynthmedError(f"{what} {path} is a folder; give a YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SynthmedError(f"{path} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SynthmedError(f"{path} must hold a mapping ({expected}), not a {type(raw).__name__}")
    return raw


@dataclass
class Grid:
    """A grid of runs in normal form: every axis a list, every entry a dict of coerced values (levers and
    ``param_grid`` as lists of the values to sweep)."""

    name: str = "synthmed"
    out: str | None = None
    datasets: list[str] = field(default_factory=list)
    protocols: list[dict] = field(default_factory=lambda: [{"protocol": "lowdata"}])
    methods: list[dict] = field(default_factory=lambda: [{"method": "none"}])
    classifiers: list[str] = field(default_factory=lambda: ["resnet18"])
    recipes: list[dict] = field(default_factory=lambda: [{"recipe": "medmnist"}])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    options: dict[str, Any] = field(default_factory=dict)
    real_curve: list[int] = field(default_factory=list)  # real images per class of extra `none` runs (the curve)
    #: how the grid runs (``Execution`` fields, checked), which the command line overrides; no part of a run's identity
    execution: dict[str, Any] = field(default_factory=dict)
    #: ``--rows``: only the runs whose row label (``row_label``) fully matches one of these regular expressions;
    #: the rest of the grid still decides every run's identity (a tsynd row's dropout, for example)
    rows: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # deprecations and defaults applied, for the user to read


def section_fields(section: str) -> list[str]:
    return [name for name in fields() if meta(name).section == section and not meta(name).internal]


def _canonical(key: str, allowed: list[str], where: str, notes: list[str]) -> str:
    """A key of a mapping entry as its field name (deprecated aliases accepted with a note)."""
    name = str(key).replace("-", "_")
    if name in aliases() and aliases()[name] in allowed:
        notes.append(f"{where}: key '{key}' is deprecated; write '{aliases()[name]}'")
        name = aliases()[name]
    return name


def _values(name: str, value: Any, where: str) -> list[Any]:
    """A field's value(s) from YAML: a list sweeps a sweepable field; anything else is one value."""
    if isinstance(value, list):
        if not meta(name).sweep:
            raise SynthmedError(f"{where} takes one value, not a list")
        return split_values(name, value, where)
    return [coerce(name, value, where)]


def _entries(section: str, raw: Any, where: str, notes: list[str]) -> list[dict]:
    """A section's entries (names or mappings) in normal form. Protocol and recipe entries are expanded over their
    lists here (one flat dict per combination); a method entry becomes one dict per method name, its levers and
    ``param_grid`` kept as lists of values for ``expand`` to multiply."""
    key = ENTRY_KEYS[section]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise SynthmedError(f"{where}: '{section}' is empty; give at least one entry")
    allowed = section_fields(section)
    if section == "methods":  # hyper-parameters are ``params`` / ``param_grid`` here, ``method_params`` in records
        allowed = [name for name in allowed if name != "method_params"] + ["params", "param_grid"]
    out: list[dict] = []
    for i, item in enumerate(items):
        at = f"{where}: {section}[{i}]" if isinstance(raw, list) else f"{where}: {section}"
        item = {key: item} if isinstance(item, str) else item
        if not isinstance(item, dict) or key not in item:
            raise SynthmedError(f"{at} must be a name or a mapping with '{key}'")
        entry: dict[str, Any] = {}
        for k, v in item.items():
            name = _canonical(k, allowed, at, notes)
            if name not in allowed:
                raise SynthmedError(f"{at}: unknown key {k!r}; known: {', '.join(sorted(allowed))}")
            if name in ("params", "param_grid"):
                entry[name] = _params(v, f"{at}.{k}", sweep=name == "param_grid")
            else:
                entry[name] = _values(name, v, f"{at}.{k}")
        if section == "methods":
            out += [{**copy.deepcopy(entry), "method": method} for method in entry["method"]]
        else:
            out += [dict(zip(entry, combo)) for combo in itertools.product(*entry.values())]
    return out


def parse_param_value(value: Any) -> Any:
    """A hyper-parameter value: YAML scalars as they are; text parsed as YAML (``true``, ``[0.5, 0.9]``), plus numbers
    YAML 1.1 leaves as text (``1e-4``)."""
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    try:
        return safe_load(value)
    except yaml.YAMLError:
        return value


def _params(raw: Any, where: str, sweep: bool) -> dict:
    if not isinstance(raw, dict):
        raise SynthmedError(f"{where} must be a mapping of hyper-parameters, e.g. {{epochs: 50, lr: 1e-4}}")
    out = {}
    for k, v in raw.items():
        if sweep:
            values = v if isinstance(v, list) else [v]
            if not values:
                raise SynthmedError(f"{where}.{k} is empty; give at least one value")
            out[str(k)] = [parse_param_value(x) for x in values]
        else:
            out[str(k)] = parse_param_value(v)
    return out


def _names(section: str, raw: Any, where: str, name: str) -> list:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise SynthmedError(f"{where}: '{section}' is empty; give at least one value")
    return [coerce(name, v, f"{where}: {section}") for v in items]


#: Top-level keys of the older run-file dialect -> (section, field), read with a deprecation note.
_OLD_KEYS = {
    "dataset": ("datasets", "dataset"),
    "protocol": ("protocols", "protocol"),
    "per_class": ("protocols", "real_per_class"),
    "real_per_class": ("protocols", "real_per_class"),
    "fraction": ("protocols", "fraction"),
    "fractions": ("protocols", "fraction"),
    "stratified": ("protocols", "stratified"),
    "size": ("protocols", "size"),
    "recipe": ("recipes", "recipe"),
    "epochs": ("recipes", "epochs"),
    "patience": ("recipes", "patience"),
    "classifier": ("classifiers", "classifier"),
    "method_param": ("methods", "param_grid"),
    **{name: ("methods", name) for name in SYNTHESIS_FIELDS},
    **{name: ("options", name) for name in fields() if meta(name).section == "options"},
    "paper_style": ("options", "report_test_selected"),
}


def _translate_old(doc: dict, path: Path, notes: list[str]) -> dict:
    """The run-key dialect (one run's options at the top level) as an experiment document."""
    kept = ("name", "out", "seeds", "datasets", "classifiers", "real_curve", "execution")
    new: dict[str, Any] = {k: doc[k] for k in kept if k in doc}
    protocol: dict[str, Any] = {}
    recipe: dict[str, Any] = {}
    method_extra: dict[str, Any] = {}
    options: dict[str, Any] = dict(doc.get("options") or {})
    for key, value in doc.items():
        k = str(key).replace("-", "_")
        if k in TOP_KEYS and k not in ("methods", "protocols", "recipes", "options"):
            continue
        if k == "methods":
            new["methods"] = value.split(",") if isinstance(value, str) else value
            continue
        if k in ("protocols", "recipes", "options"):
            new[k] = value
            continue
        if k not in _OLD_KEYS:
            raise SynthmedError(f"{path}: unknown key {key!r}; known: {', '.join(TOP_KEYS)}")
        section, name = _OLD_KEYS[k]
        notes.append(
            f"{path}: top-level key '{key}' is deprecated; write "
            + (f"'{section}'" if section in ("datasets", "classifiers") else f"'{name}' under '{section}'")
        )
        if section == "datasets":
            new["datasets"] = value.split(",") if isinstance(value, str) else value
        elif section == "classifiers":
            new["classifiers"] = value.split(",") if isinstance(value, str) else value
        elif section == "protocols":
            protocol[name] = value.split(",") if name == "fraction" and isinstance(value, str) else value
        elif section == "recipes":
            recipe[name] = value
        elif section == "methods":
            method_extra[name] = value
        else:
            options[name] = value
    if protocol:
        new["protocols"] = [{"protocol": protocol.pop("protocol", "lowdata"), **protocol}]
    if recipe:
        new["recipes"] = [{"recipe": recipe.pop("recipe", "medmnist"), **recipe}]
    if options:
        new["options"] = options
    if method_extra:
        methods = new.get("methods", ["none"])
        new["methods"] = [
            {"method": m, **method_extra} if isinstance(m, str) else {**m, **method_extra}
            for m in (methods if isinstance(methods, list) else [methods])
        ]
    return new


def parse_grid(doc: dict, path: Path | str = "<grid>") -> Grid:
    """An experiment document (a YAML mapping) in normal form, checked; deprecations go to ``Grid.notes``."""
    path = Path(path)
    notes: list[str] = []
    if any(str(k).replace("-", "_") not in TOP_KEYS for k in doc):
        doc = _translate_old(doc, path, notes)
    where = str(path)
    grid = Grid(name=str(doc.get("name") or path.stem), notes=notes)
    grid.out = str(doc["out"]) if doc.get("out") else None
    if "datasets" not in doc:
        raise SynthmedError(f"{where}: 'datasets' is missing; give e.g. datasets: [breastmnist]")
    grid.datasets = _names("datasets", doc["datasets"], where, "dataset")
    grid.seeds = _names("seeds", doc["seeds"], where, "seed") if "seeds" in doc else grid.seeds
    grid.classifiers = (
        _names("classifiers", doc["classifiers"], where, "classifier") if "classifiers" in doc else grid.classifiers
    )
    for section in ("protocols", "methods", "recipes"):
        if section in doc:
            setattr(grid, section, _entries(section, doc[section], where, notes))
    if "real_curve" in doc:
        grid.real_curve = sorted(set(split_values("curve_per_class", doc["real_curve"], f"{where}: real_curve")))
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        raise SynthmedError(f"{where}: 'options' must be a mapping, e.g. {{dropout: 0.2}}")
    allowed = section_fields("options") + list(SYNTHESIS_FIELDS)  # levers here apply to every synthetic-set method
    for k, v in options.items():
        name = _canonical(k, allowed, f"{where}: options", notes)
        if name not in allowed:
            raise SynthmedError(f"{where}: options: unknown key {k!r}; known: {', '.join(sorted(allowed))}")
        grid.options[name] = coerce(name, v, f"{where}: options.{k}")
    if doc.get("execution") is not None:
        from synthmed.experiment.execution import from_mapping

        grid.execution = from_mapping(doc["execution"], where)
    return grid


def load_grid(path: str | Path) -> Grid:
    """Read and check an experiment (or run) file."""
    path = Path(path)
    return parse_grid(read_yaml_mapping(path, "experiment file", "datasets, methods, seeds, ..."), path)


def _product(grid: dict[str, list]) -> list[dict]:
    """Every combination of a {key: [values]} grid, as dicts ({} for an empty grid)."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def expand(grid: Grid) -> list[RunSpec]:
    """The runs of a grid: dataset x protocol x method (x hyper-parameter grid x lever setting) x classifier x
    recipe x seed. Levers multiply only methods that add a synthetic set, which alone use them; a grid holding a
    method that needs MC dropout (tsynd) gives every method that method's dropout unless ``dropout`` is set (a
    note says so)."""
    from synthmed.augment import Kind, method_class, reads_unlabelled, takes_teacher

    repeated = sorted({seed for seed in grid.seeds if grid.seeds.count(seed) > 1})
    if repeated:
        raise SynthmedError(
            f"seeds {','.join(map(str, grid.seeds))} repeat seed {', '.join(map(str, repeated))}: a seed is one run "
            "per cell, so a repeat would train once and count twice; give distinct seeds"
        )

    classes = {entry["method"]: method_class(entry["method"]) for entry in grid.methods}
    options = dict(grid.options)
    needing = sorted(name for name, cls in classes.items() if "dropout" in cls.needs)
    if needing and "dropout" not in options:
        rate = classes[needing[0]].needs["dropout"]
        options["dropout"] = rate
        grid.notes.append(
            f"{', '.join(needing)} measure uncertainty by MC dropout: every method of this grid uses "
            f"dropout {rate:g} before the classifier head (give --dropout to choose another rate)"
        )
    shared_levers = {k: [options.pop(k)] for k in SYNTHESIS_FIELDS if k in options}
    specs = []
    for dataset, protocol, entry in itertools.product(grid.datasets, grid.protocols, grid.methods):
        cls = classes[entry["method"]]
        levers = {k: entry[k] for k in SYNTHESIS_FIELDS if k in entry}
        if levers and cls.kind is not Kind.SET:
            raise SynthmedError(
                f"{', '.join(levers)} apply to methods that add a synthetic set, not to "
                f"{entry['method']!r} ({cls.kind.value})"
            )
        shared = {k: v for k, v in shared_levers.items() if k not in TEACHER_FIELDS or takes_teacher(entry["method"])}
        levers = {**shared, **levers} if cls.kind is Kind.SET else {}
        base = entry.get("params") or {}
        param_sets = [{**base, **combo} for combo in _product(entry.get("param_grid") or {})]
        for params, setting in itertools.product(param_sets, _product(levers)):
            synthesis = SyntheticLevers(**setting)
            synthesis.check()
            drawn = protocol if reads_unlabelled(entry["method"], params) else _without_unlabelled(protocol)
            for classifier, recipe, seed in itertools.product(grid.classifiers, grid.recipes, grid.seeds):
                specs.append(
                    RunSpec(
                        dataset=dataset,
                        **drawn,
                        method=entry["method"],
                        method_params=params,
                        synthesis=synthesis,
                        classifier=classifier,
                        **recipe,
                        seed=seed,
                        **options,
                    )
                )
    for dataset, protocol, classifier, recipe, seed, n in itertools.product(
        grid.datasets, grid.protocols, grid.classifiers, grid.recipes, grid.seeds, grid.real_curve
    ):
        if n == anchor_per_class(protocol["protocol"], protocol.get("real_per_class"), dataset):
            continue  # the curve's point at the protocol's own count is the plain none run, not a copy of it
        specs.append(
            RunSpec(
                dataset=dataset,
                **_without_unlabelled(protocol),
                method="none",
                curve_per_class=n,
                classifier=classifier,
                **recipe,
                seed=seed,
                **options,
            )
        )
    if not specs:
        raise SynthmedError("the run grid is empty; give at least one dataset, method and seed")
    specs = list({repr(s): s for s in specs}.values())  # protocols differing only in what a run does not draw
    if grid.rows:
        specs = select_rows(specs, grid.rows)
    _check_protocol_fields(specs)
    plain = sorted({s.method for s in specs if s.unlabelled is None and s.curve_per_class is None})
    if any(p.get("unlabelled") is not None for p in grid.protocols) and plain:
        note = (
            f"--unlabelled: {', '.join(plain)} read no unlabelled image, so they run as without it (and share "
            "their runs with it); pseudo-label and generators with -p use_unlabelled=true draw them"
        )
        if note not in grid.notes:
            grid.notes.append(note)
    return specs


def row_label(spec: RunSpec) -> str:
    """The report's row label of a run (``ddpm tstr pretrain``); a real-image curve point is ``none 25/class``."""
    label = method_label(dataclasses.asdict(spec))
    return label + (f" {spec.curve_per_class}/class" if spec.curve_per_class is not None else "")


def select_rows(specs: list[RunSpec], patterns: list[str]) -> list[RunSpec]:
    """The runs whose row label fully matches one of ``patterns`` (``--rows``), selected after the whole grid is
    expanded so that the selected runs keep the ids they have in it; a pattern matching no row is refused."""
    labels = {id(s): row_label(s) for s in specs}
    known = set(labels.values())
    compiled = []
    for pattern in _rejoin(patterns, known):
        try:  # a label given as it is names its row, regex characters (+, ≥) and all
            compiled.append(re.compile(re.escape(pattern) if pattern in known else pattern))
        except re.error as error:
            raise SynthmedError(f"--rows {pattern!r} is no regular expression ({error})") from None
        if not any(compiled[-1].fullmatch(label) for label in known):
            rows = ", ".join(sorted(known))
            raise SynthmedError(f"--rows {pattern!r} matches no row of this grid; its rows: {rows}")
    return [s for s in specs if any(regex.fullmatch(labels[id(s)]) for regex in compiled)]


def _rejoin(pieces: list[str], labels: set[str]) -> list[str]:
    """``--rows`` split at its commas, with the pieces of a label that has commas of its own
    (``diffaugment=color,translation,cutout``) joined back: the longest run of pieces that spells a label."""
    patterns, i = [], 0
    while i < len(pieces):
        j = next((j for j in range(len(pieces), i + 1, -1) if ",".join(pieces[i:j]) in labels), i + 1)
        patterns.append(",".join(pieces[i:j]))
        i = j
    return patterns


def _without_unlabelled(protocol: dict) -> dict:
    """The protocol of a run that reads no unlabelled image: the same labelled images and evaluation, none drawn."""
    return {k: v for k, v in protocol.items() if k != "unlabelled"}


def _check_protocol_fields(specs: list[RunSpec]) -> None:
    """Protocol settings that the chosen protocol would ignore are refused (they would split the report into
    identical groups), and so is an attack strength without the robustness scoring it sets."""
    for spec in specs:
        if spec.protocol != "fraction" and spec.fraction is not None:
            raise SynthmedError(f"--fraction applies to --protocol fraction, not {spec.protocol}")
        if spec.protocol == "fraction" and spec.fraction is None:
            raise SynthmedError("the fraction protocol needs --fraction F (e.g. 0.05)")
        if spec.protocol != "lowdata" and spec.real_per_class is not None:
            raise SynthmedError(f"--real-per-class applies to --protocol lowdata, not {spec.protocol}")
        if spec.attack_eps is not None and not spec.robustness:
            raise SynthmedError("--attack-eps sets the attacks of --robustness: add --robustness or drop --attack-eps")


def available_datasets(specs: list[RunSpec], data_root: str | None) -> tuple[list[RunSpec], dict[str, str]]:
    """Split off runs whose MedMNIST file is absent (offline): (runnable specs, {dataset: the download hint})."""
    from synthmed.data import PATH_PREFIXES
    from synthmed.data.medmnist import check_flag, locate

    skipped: dict[str, str] = {}
    for name, size in sorted({(s.dataset, s.size) for s in specs}):
        if name.startswith(PATH_PREFIXES):
            continue
        check_flag(name)  # an unknown name is an error, not a file to skip
        try:
            locate(name, size, data_root, download=True)
        except SynthmedError as err:
            skipped[name] = str(err)
    return [s for s in specs if s.dataset not in skipped], skipped


def parse_method_params(items: list[str]) -> dict[str, list]:
    """``["lr=1e-4,2e-4", "betas=[0.5,0.9]"]`` -> ``{lr: [1e-4, 2e-4], betas: [[0.5, 0.9]]}``: a comma list sweeps,
    except inside brackets and for a hyper-parameter whose one value is a comma list (``diffaugment=color,cutout``;
    sweep those with ``param_grid`` in an experiment file); each value is parsed as YAML (numbers, booleans, lists,
    strings)."""
    from synthmed.augment.base import comma_params

    grid: dict[str, list] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise SynthmedError(f"--method-param {item!r} must look like KEY=VALUE (e.g. lr=2e-4 or lr=1e-4,2e-4)")
        if key.strip() in comma_params():
            grid[key.strip()] = [text.strip()]
            continue
        parts, depth, current = [], 0, ""
        for char in text:
            depth += {"[": 1, "]": -1}.get(char, 0)
            if char == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += char
        parts.append(current)
        grid[key.strip()] = [parse_param_value(v.strip()) for v in parts if v.strip()]
    return grid


def override(grid: Grid, values: dict[str, Any]) -> Grid:
    """``grid`` with the given settings replaced, as command-line options override an experiment file: an axis
    (datasets, methods, classifiers, seeds, protocol names, recipe names) is replaced; a protocol or recipe field
    is set on every entry it applies to; levers and ``-p`` hyper-parameters on every method that uses them (an
    error when none does); anything else becomes an option of every run. ``values`` holds raw command-line values
    (comma lists as text) by field name, plus ``method_params`` (``KEY=VALUE`` texts) and ``generator_epochs``."""
    from synthmed.augment import Kind, method_class, preset, takes_teacher

    grid = copy.deepcopy(grid)
    values = dict(values)
    if "dataset" in values:
        grid.datasets = split_values("dataset", values.pop("dataset"))
    if "seed" in values:
        grid.seeds = split_values("seed", values.pop("seed"))
    if "classifier" in values:
        grid.classifiers = split_values("classifier", values.pop("classifier"))
    if "method" in values:
        grid.methods = [{"method": m} for m in split_values("method", values.pop("method"))]
    if "protocol" in values:
        grid.protocols = [{"protocol": p} for p in split_values("protocol", values.pop("protocol"))]
    if "fraction" in values:
        fractions = split_values("fraction", values.pop("fraction"))
        if not any(e["protocol"] == "fraction" for e in grid.protocols):
            raise SynthmedError("--fraction applies to --protocol fraction; add --protocol fraction")
        grid.protocols = [e for e in grid.protocols if e["protocol"] != "fraction"] + [
            {**e, "fraction": f} for e in grid.protocols if e["protocol"] == "fraction" for f in fractions
        ]
    applies = {
        "real_per_class": ("lowdata",),
        "stratified": ("fraction",),
        "size": PROTOCOLS,
        "unlabelled": PROTOCOLS,
    }
    for name, protocols in applies.items():
        if name in values:
            value = coerce(name, values.pop(name))
            targets = [e for e in grid.protocols if e["protocol"] in protocols]
            if not targets:
                raise SynthmedError(f"{flag_of(name)} applies to --protocol {' or '.join(protocols)}")
            for entry in targets:
                entry[name] = value
    if "recipe" in values:
        grid.recipes = [{"recipe": r} for r in split_values("recipe", values.pop("recipe"))]
    if values.get("real_curve") is not None:
        grid.real_curve = sorted(set(split_values("curve_per_class", values.pop("real_curve"), "--real-curve")))
    values.pop("real_curve", None)
    for name in (n for n in section_fields("recipes") if n != "recipe"):  # epochs, patience, ema, swa, ...
        if name in values:
            value = coerce(name, values.pop(name))
            for entry in grid.recipes:
                entry[name] = value
    param_grid = parse_method_params(values.pop("method_params", None) or [])
    if values.get("generator_epochs") is not None:
        param_grid["epochs"] = [values.pop("generator_epochs")]
    values.pop("generator_epochs", None)
    for key, choices in param_grid.items():
        takers = [e for e in grid.methods if key in preset(e["method"])]
        if not takers:
            raise SynthmedError(
                f"no method of this grid ({', '.join(e['method'] for e in grid.methods)}) has the "
                f"parameter {key!r}; see `synthmed list --presets`"
            )
        for entry in takers:
            entry["param_grid"] = {**(entry.get("param_grid") or {}), key: choices}
    for name in [n for n in values if n in SYNTHESIS_FIELDS]:
        raw = values.pop(name)
        levers = split_values(name, raw) if meta(name).sweep else [coerce(name, raw)]
        takers = [e for e in grid.methods if method_class(e["method"]).kind is Kind.SET]
        if name in TEACHER_FIELDS:  # the count-matched copies stay the plain control: their labels are known
            takers = [e for e in takers if takes_teacher(e["method"])]
        if not takers:
            raise SynthmedError(
                f"{flag_of(name)} applies to methods that add a synthetic set"
                + (" it can relabel (generators, pseudo-label)" if name in TEACHER_FIELDS else "")
                + "; none of "
                f"{', '.join(e['method'] for e in grid.methods)} does"
            )
        for entry in takers:
            entry[name] = levers
    for name, raw in values.items():
        if name not in fields() or meta(name).section != "options":
            raise SynthmedError(f"unknown setting {name!r}")
        grid.options[name] = coerce(name, raw)
    return grid
