"""The typed results: ``RunRecord`` (one finished run) and ``SyntheticAudit`` (the audit of its synthetic set).

Each field is described once, here: the store's SQL columns, the report's run table (runs.csv), the MLflow scores
and the checks of an imported record are all read from these dataclasses, so adding a figure to a run means adding
one field. The JSON of a record (an export line, a store row) keeps the shape it always had, so old and new exports
are interchangeable; ``from_json`` refuses a field of the wrong type with one line that names it.

A bottom module (like ``spec`` and ``store``): every layer may import it, it imports no layer.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from synthmed.errors import SynthmedError

#: A JSON type -> (SQL column type, the words of the check that refuses another type).
KINDS: dict[type, tuple[str, str]] = {
    str: ("TEXT", "text"),
    float: ("REAL", "a number"),
    int: ("INTEGER", "an integer"),
    bool: ("INTEGER", "true or false"),
    dict: ("TEXT", "a mapping"),
    list: ("TEXT", "a list"),
}

Self = TypeVar("Self", bound="_Typed")


def _field(*, table: bool = False, mlflow: bool = False, omit_none: bool = False, stored: bool = True) -> Any:
    """A field that is None unless given (old records lack new fields). ``table``: a column of the report's run
    table; ``mlflow``: logged as an MLflow metric; ``omit_none``: left out of the JSON while None (figures only
    some runs have, so records without them keep their old shape); ``stored``: part of the JSON at all."""
    meta = {"table": table, "mlflow": mlflow, "omit_none": omit_none, "stored": stored}
    return field(default=None, metadata=meta)


def _json_type(annotation: Any) -> type:
    """The JSON type of an ``X | None`` annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    kind = args[0] if args else annotation
    return typing.get_origin(kind) or kind


#: Stored field name -> JSON type per record type, in declaration order (a report reads every record several times).
_STORED: dict[type, dict[str, type]] = {}


class _Typed:
    """JSON (de)serialisation and type checks shared by the record dataclasses."""

    #: what the type is called in an error message
    what: typing.ClassVar[str] = "record"

    @classmethod
    def _stored(cls) -> dict[str, type]:
        if cls not in _STORED:
            hints = typing.get_type_hints(cls)
            fields = dataclasses.fields(cls)  # type: ignore[arg-type]
            _STORED[cls] = {f.name: _json_type(hints[f.name]) for f in fields if f.metadata.get("stored", True)}
        return _STORED[cls]

    @classmethod
    def names(cls, flag: str) -> tuple[str, ...]:
        """The stored fields whose metadata sets ``flag`` (``table``, ``mlflow``)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(flag))  # type: ignore[arg-type]

    @classmethod
    def problem(cls, data: dict, known_only: bool = False) -> str | None:
        """What makes ``data`` unfit for this type (a field of the wrong type, an unknown field unless
        ``known_only``), in words; None when it fits."""
        kinds = cls._stored()
        for key, value in data.items():
            if key not in kinds:
                if known_only:
                    continue
                return f"{key} is not a field of a {cls.what}"
            wanted = kinds[key]
            if value is None:
                continue
            fits = isinstance(value, wanted) and (wanted is bool or not isinstance(value, bool))
            if wanted is float:
                fits = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not fits:
                return f"{key} is {json.dumps(value, default=repr)[:40]}, not {KINDS[wanted][1]}"
        return None

    @classmethod
    def from_json(cls: type[Self], data: dict, known_only: bool = True) -> Self:
        """The typed value of JSON ``data`` (unknown keys ignored when ``known_only``); a field of the wrong type
        raises one line naming it."""
        problem = cls.problem(data, known_only)
        if problem is not None:
            raise SynthmedError(f"not a valid {cls.what}: {problem}")
        kinds = cls._stored()
        return cls(**{k: v for k, v in data.items() if k in kinds})

    def to_json(self) -> dict:
        """The JSON shape the store and exports hold (None fields marked ``omit_none`` left out); a field of the
        wrong type raises, so a record that would not read back is never written."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("stored", True) and not (value is None and f.metadata.get("omit_none")):
                out[f.name] = value
        problem = self.problem(out)
        if problem is not None:
            raise SynthmedError(f"not a valid {self.what}: {problem}")
        return out


@dataclass
class RunRecord(_Typed):
    """One finished run: what the store holds as a row and an export as a JSON line. Declared in the run table's
    column order; ``config``, ``metrics`` and ``versions`` are JSON mappings (``metrics["synthetic"]`` is a
    ``SyntheticAudit``'s JSON)."""

    run_id: str = field(default="", metadata={"table": True})
    dataset: str | None = _field(table=True)
    protocol: str | None = _field(table=True)
    classifier: str | None = _field(table=True)
    recipe: str | None = _field(table=True)
    method: str | None = _field(table=True)
    seed: int | None = _field(table=True)
    val_auc: float | None = _field(table=True, mlflow=True)
    val_acc: float | None = _field(table=True, mlflow=True)
    test_auc: float | None = _field(table=True, mlflow=True)
    test_acc: float | None = _field(table=True, mlflow=True)
    test_selected_auc: float | None = _field(table=True)
    test_selected_acc: float | None = _field(table=True)
    best_epoch: int | None = _field(table=True, mlflow=True)
    epochs_run: int | None = _field(table=True, mlflow=True)
    n_train: int | None = _field(table=True, mlflow=True)
    n_val: int | None = _field(table=True)
    n_test: int | None = _field(table=True)
    n_synthetic: int | None = _field(table=True, mlflow=True)
    train_time: float | None = _field(table=True, mlflow=True)
    total_time: float | None = _field(table=True, mlflow=True)
    peak_rss_mb: float | None = _field(table=True, mlflow=True)
    device: str | None = _field(table=True)
    precision: str | None = _field(table=True)
    created: str | None = _field(table=True)
    config_hash: str | None = _field()
    config: dict | None = _field()
    metrics: dict | None = _field()
    versions: dict | None = _field()

    what = "run record"

    @classmethod
    def problem(cls, data: dict, known_only: bool = False) -> str | None:
        if not isinstance(data.get("run_id"), str) or not data["run_id"]:
            return "run_id is not a run id"
        return super().problem(data, known_only)

    @classmethod
    def columns(cls) -> dict[str, str]:
        """The store's SQL columns, from the field types (mappings are JSON text)."""
        kinds = {name: KINDS[kind][0] for name, kind in cls._stored().items()}
        return {"run_id": "TEXT PRIMARY KEY", **{k: v for k, v in kinds.items() if k != "run_id"}}

    @classmethod
    def json_columns(cls) -> tuple[str, ...]:
        """The columns the store keeps as JSON text."""
        return tuple(name for name, kind in cls._stored().items() if kind in (dict, list))

    @property
    def synthetic(self) -> SyntheticAudit | None:
        """The audit of the run's synthetic set, None for a method that adds none."""
        data = (self.metrics or {}).get("synthetic")
        return SyntheticAudit.from_json(data) if data else None


@dataclass
class SyntheticAudit(_Typed):
    """The audit of one synthetic set: the figures a run record keeps (``metrics["synthetic"]``, declared in the
    run table's column order), and, not stored in a record, the full audit (``details``, written to audit.json)
    and the in-domain features behind FID (the t-SNE figure)."""

    n: int | None = _field(table=True)
    fidelity: float | None = _field(table=True, mlflow=True)
    reference_test_acc: float | None = _field(table=True)
    reference_val_recall: float | None = _field(table=True)
    near_copy_share: float | None = _field(table=True, mlflow=True)
    held_out_near_copy_share: float | None = _field(table=True)
    min_diversity: float | None = _field(table=True, mlflow=True)
    kept_share: float | None = _field(table=True)
    fid: float | None = _field(table=True, mlflow=True)
    kid: float | None = _field(table=True, mlflow=True)
    precision: float | None = _field(table=True, mlflow=True)
    recall: float | None = _field(table=True, mlflow=True)
    coverage: float | None = _field(table=True, mlflow=True)
    flags: list | None = _field()
    fid_over_epochs: list | None = _field()
    counts: dict | None = _field()
    fidelity_candidates: float | None = _field()
    memorised_share: float | None = _field()
    held_out_memorised_share: float | None = _field()
    memorised_share_features: float | None = _field()
    held_out_memorised_share_features: float | None = _field()
    reconstructions_by_design: bool | None = _field()
    generator_cached: bool | None = _field()
    generator_seconds: float | None = _field()
    generator_key: str | None = _field(omit_none=True)
    generator_digest: str | None = _field(omit_none=True)
    reference_cached: bool | None = _field(omit_none=True)
    reference_seconds: float | None = _field(omit_none=True)
    tstr_auc: float | None = _field(omit_none=True)
    tstr_acc: float | None = _field(omit_none=True)
    tstr_val_auc: float | None = _field(omit_none=True)
    tstr_best_epoch: int | None = _field(omit_none=True)
    tstr_counts: dict | None = _field(omit_none=True)
    teacher: str | None = _field(omit_none=True)
    teacher_agreement: float | None = _field(omit_none=True)
    teacher_agreement_kept: float | None = _field(omit_none=True)
    teacher_kept_share: float | None = _field(omit_none=True)
    details: dict | None = _field(stored=False)
    real_features: np.ndarray | None = _field(stored=False)
    synthetic_features: np.ndarray | None = _field(stored=False)

    what = "synthetic-set audit"
