"""Experiment files: one YAML describes datasets x protocols x methods (with parameters and levers) x
classifiers x recipes x seeds; ``synthmed experiment run FILE`` executes it into its ``out`` folder, resumable.

    name: chaptoukaev2021-quick
    out: runs/chaptoukaev2021-quick
    datasets: [breastmnist, pneumoniamnist]
    protocols: [lowdata]                    # or {protocol: fraction, fraction: 0.1, stratified: true}
    methods: [none, flip, {method: cvae, params: {epochs: 50}, synthetic_weight: 0.5}]
    classifiers: [resnet18]
    recipes: [{recipe: medmnist, epochs: 10, patience: 5}]
    seeds: [0, 1, 2]
    options: {precision: auto, fidelity_epochs: 10, dropout: 0.0, robustness: false}

Every problem (unknown key, method, recipe or classifier, wrong type) is one line naming the key, found before
anything runs. Datasets whose files are absent are skipped with the download hint instead of failing the grid.
"""

from __future__ import annotations

import numbers
from pathlib import Path

from synthmed.config import read_yaml_mapping
from synthmed.errors import SynthmedError
from synthmed.experiment.runner import RunSpec

TOP = {"name", "out", "datasets", "protocols", "methods", "classifiers", "recipes", "seeds", "options"}
PROTOCOL_KEYS = {"protocol": str, "per_class": int, "fraction": float, "stratified": bool, "size": int}
METHOD_KEYS = {"method": str, "params": dict, "synthetic_per_class": int, "synthetic_ratio": float,
               "balance": bool, "synthetic_weight": float, "min_confidence": float, "finetune_epochs": int,
               "generator_seed": int, "track_fid_every": int}
RECIPE_KEYS = {"recipe": str, "epochs": int, "patience": int}
OPTION_KEYS = {"precision": str, "paper_style": bool, "fidelity": bool, "fidelity_epochs": int, "dropout": float,
               "robustness": bool}


def _typed(where: str, value: object, kind: type) -> object:
    if kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SynthmedError(f"{where} should be {kind.__name__}, got {value!r}")
    return value


def _number(value: object) -> object:
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def _entries(doc: dict, key: str, name_key: str, allowed: dict[str, type], path: Path) -> list[dict]:
    """A list of names or mappings (``{name_key: ..., other keys}``), each checked against ``allowed``."""
    value = doc.get(key)
    if not isinstance(value, list) or not value:
        raise SynthmedError(f"{path}: '{key}' must be a non-empty list")
    out = []
    for i, item in enumerate(value):
        item = {name_key: item} if isinstance(item, str) else item
        where = f"{path}: {key}[{i}]"
        if not isinstance(item, dict) or name_key not in item:
            raise SynthmedError(f"{where} must be a name or a mapping with '{name_key}'")
        for k, v in item.items():
            if k not in allowed:
                raise SynthmedError(f"{where}: unknown key {k!r}; known: {', '.join(sorted(allowed))}")
            item[k] = _typed(f"{where}.{k}", v, allowed[k])
        out.append(item)
    return out


def load_experiment(path: str | Path) -> tuple[dict, list[RunSpec]]:
    """Read and check an experiment file; return (its header: name, out, options) and the expanded runs."""
    path = Path(path)
    doc = read_yaml_mapping(path, "experiment file", "name, out, datasets, methods, ...")
    for key in doc:
        if key not in TOP:
            raise SynthmedError(f"{path}: unknown key {key!r}; known: {', '.join(sorted(TOP))}")
    datasets = doc.get("datasets")
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
        raise SynthmedError(f"{path}: 'datasets' must be a non-empty list of names")
    seeds = doc.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in seeds):
        raise SynthmedError(f"{path}: 'seeds' must be a non-empty list of integers")
    protocols = _entries({"protocols": doc.get("protocols", ["lowdata"])}, "protocols", "protocol",
                         PROTOCOL_KEYS, path)
    methods = _entries(doc, "methods", "method", METHOD_KEYS, path)
    for method in methods:  # numbers YAML 1.1 leaves as strings (lr: 1e-4)
        method["params"] = {k: _number(v) for k, v in method.get("params", {}).items()}
    classifiers = doc.get("classifiers", ["resnet18"])
    if not isinstance(classifiers, list) or not all(isinstance(c, str) for c in classifiers):
        raise SynthmedError(f"{path}: 'classifiers' must be a list of names")
    recipes = _entries({"recipes": doc.get("recipes", ["medmnist"])}, "recipes", "recipe", RECIPE_KEYS, path)
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        raise SynthmedError(f"{path}: 'options' must be a mapping")
    for k, v in options.items():
        if k not in OPTION_KEYS:
            raise SynthmedError(f"{path}: options: unknown key {k!r}; known: {', '.join(sorted(OPTION_KEYS))}")
        options[k] = _typed(f"{path}: options.{k}", v, OPTION_KEYS[k])
    out = doc.get("out") or f"runs/{doc.get('name') or path.stem}"
    specs = [RunSpec(dataset=d, seed=seed, classifier=c, **protocol, **recipe, **options,
                     **{("method_params" if k == "params" else k): v for k, v in method.items()})
             for d in datasets for protocol in protocols for method in methods for c in classifiers
             for recipe in recipes for seed in seeds]
    return {"name": doc.get("name") or path.stem, "out": out, "options": options}, specs


def available_datasets(specs: list[RunSpec], data_root: str | None) -> tuple[list[RunSpec], dict[str, str]]:
    """Split off runs whose MedMNIST file is absent (offline): (runnable specs, {dataset: the download hint})."""
    from synthmed.data.medmnist import locate

    skipped: dict[str, str] = {}
    for name, size in sorted({(s.dataset, s.size) for s in specs}):
        if name.startswith("folder:"):
            continue
        try:
            locate(name, size, data_root, download=True)
        except SynthmedError as err:
            try:  # a missing 64-px file is made by upsampling the 28-px one
                if size == 28:
                    raise
                locate(name, 28, data_root, download=True)
            except SynthmedError:
                skipped[name] = str(err)
    return [s for s in specs if s.dataset not in skipped], skipped
