"""The one description of a run: ``RunSpec``, with its synthetic-set levers nested in ``SyntheticLevers`` (the
field ``RunSpec.synthesis``, a name kept because records and run ids carry it).

Every other place that needs to know a run's settings derives them from these fields and their metadata (a
``Setting``): the ``synthmed run`` options and their help, the YAML keys and their validation, the run id, the
method, protocol and classifier labels of the report, and which settings only methods that add a synthetic set
use (the fields of ``SyntheticLevers``). Adding a lever is adding one field here.

Names: a field's YAML key is its name, its command-line flag the name with dashes (``synthetic_weight`` ->
``--synthetic-weight``) unless ``Setting.flag`` says otherwise; old spellings are kept as deprecated ``aliases``.
This module imports nothing heavy, so ``synthmed --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from synthmed.errors import SynthmedError

#: The sections of an experiment file, in the order runs are expanded (see ``synthmed.experiment.config``).
SECTIONS = ("datasets", "protocols", "methods", "classifiers", "recipes", "seeds", "options")
SIZES = (28, 64, 128, 224)
PRECISIONS = ("auto", "fp32", "bf16")
PROTOCOLS = ("lowdata", "fraction", "full")
#: ``--robustness medmnistc``: the MedMNIST-C corruption benchmark besides the own suite and attacks.
MEDMNISTC = "medmnistc"


@dataclass(frozen=True)
class Setting:
    """How one run field appears outside this module."""

    help: str
    section: str  # which experiment-file section holds it (SECTIONS)
    flag: str | None = None  # the command-line flag; default ``--`` + the name with dashes
    short: str | None = None  # a one-letter flag (``-d``)
    aliases: tuple[str, ...] = ()  # deprecated flags / YAML keys, accepted with a warning
    sweep: bool = False  # a comma list on the command line (a YAML list) runs every value
    choices: tuple[Any, ...] | None = None
    low: float | None = None  # inclusive bounds unless *_open
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    label: str | None = None  # how a method label shows a non-default value (``weight {:g}``)
    internal: bool = False  # set by the grid (e.g. the real-image curve), not an option of its own
    words: tuple[str, ...] = ()  # words a numeric field also takes (``all``), kept as written in lower case


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A dataclass field carrying its ``Setting``."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"setting": Setting(**meta)})
    return field(default=default, metadata={"setting": Setting(**meta)})


@dataclass(frozen=True)
class SyntheticLevers:
    """Levers of methods that add a synthetic set before training (generators, count-matched copies): how many
    images, how they are weighted, vetted and audited. Every field is recorded with the run."""

    synthetic_per_class: int | None = setting(
        None,
        section="methods",
        sweep=True,
        low=1,
        label="{}/class",
        help="New images per class (default 150, as Chaptoukaev 2021); a comma list sweeps.",
    )
    synthetic_ratio: float | None = setting(
        None,
        section="methods",
        sweep=True,
        low=0,
        low_open=True,
        label="ratio {:g}",
        help="... or this multiple of each class's real count (e.g. 0.5); a comma list sweeps.",
    )
    balance: bool = setting(
        False,
        section="methods",
        label="balance",
        help="... or fill every class up to the majority count (Sharma et al. 2022).",
    )
    synthetic_weight: float = setting(
        1.0,
        section="methods",
        sweep=True,
        low=0,
        low_open=True,
        label="weight {:g}",
        help="Loss weight of a synthetic image relative to a real one; a comma list sweeps.",
    )
    min_confidence: float | None = setting(
        None,
        section="methods",
        sweep=True,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        label="conf≥{:g}",
        help="Keep only synthetic images to which the reference classifier gives at least this probability of "
        "their intended class (drawn from 4x as many candidates); a comma list sweeps.",
    )
    finetune_epochs: int = setting(
        0,
        section="methods",
        sweep=True,
        low=0,
        label="ft {}",
        help="After training on real + synthetic, fine-tune on real images only for this many epochs at lr/10, "
        "kept only if better on validation; a comma list sweeps.",
    )
    generator_seed: int | None = setting(
        None,
        section="methods",
        label="gseed {}",
        help="One generator seed for every run seed, so a subset shared by all seeds (BreastMNIST lowdata) "
        "trains one generator.",
    )
    fidelity: bool = setting(
        True,
        section="methods",
        help="Measure class fidelity and in-domain FID / KID of the synthetic set (trains a cached reference "
        "classifier per dataset, subset and seed).",
    )
    fidelity_epochs: int = setting(
        30,
        section="methods",
        low=1,
        help="Epochs of the reference classifier (class fidelity, confidence filter) and of the teacher.",
    )
    track_fid_every: int | None = setting(
        None,
        section="methods",
        low=1,
        help="Record the generator's in-domain FID and KID every K epochs of its training.",
    )
    generator_seeds: int | None = setting(
        None,
        section="methods",
        low=1,
        label="{} gseeds",
        help="Cycle this many generator seeds over the classifier seeds (generator seed = seed mod K), so generator "
        "variance is in the intervals while each generator serves several classifier seeds.",
    )
    select_generator: str | None = setting(
        None,
        section="methods",
        choices=("fid",),
        label="select {}",
        help="fid: keep the generator checkpoint with the lowest in-domain FID against the real validation split "
        "(never test) among those --track-fid-every scored, instead of the last.",
    )
    tstr: bool = setting(
        False,
        section="methods",
        label="tstr",
        help="Also train the classifier on the synthetic images alone (train on synthetic, test on real: TSTR, "
        "Esteban et al. 2017), selected on the real validation split; records tstr_auc and tstr_acc. With "
        "--balance, every class is drawn at the majority count for it; with --teacher, on the teacher's labels.",
    )
    pretrain_on_synthetic: bool = setting(
        False,
        section="methods",
        label="pretrain",
        help="Train on the synthetic set alone first, then continue on the real training images with the recipe "
        "(both phases selected on validation) instead of mixing the two.",
    )

    teacher: str | None = setting(
        None,
        section="methods",
        choices=("hard", "soft"),
        label="teacher {}",
        help="Relabel the added images with a teacher classifier trained on the run's labelled real images "
        "(selected on validation, cached per subset and seed): hard (its class) or soft (its probabilities). "
        "Generators and pseudo-label take it; oversample keeps its real labels.",
    )
    teacher_threshold: float | None = setting(
        None,
        section="methods",
        sweep=True,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        label="teacher≥{:g}",
        help="With --teacher: add only images whose top teacher probability reaches this; a generator draws its "
        "count per teacher class from twice as many candidates, so it adds what its pseudo-label control adds; a "
        "comma list sweeps.",
    )

    @property
    def needs_reference(self) -> bool:
        """Whether a generative run trains (or loads) a reference classifier: its fidelity audit, confidence filter
        and FID tracking read one."""
        return bool(self.fidelity or self.min_confidence is not None or self.track_fid_every)

    def check(self) -> None:
        """Refuse two count policies or two generator-seed rules at once (bounds are checked when a value is
        read)."""
        if self.generator_seed is not None and self.generator_seeds is not None:
            raise SynthmedError("give only one of --generator-seed, --generator-seeds")
        if (self.tstr or self.pretrain_on_synthetic) and self.balance and self.min_confidence is not None:
            raise SynthmedError(
                "--tstr and --pretrain-on-synthetic with --balance draw every class afresh, unfiltered; "
                "drop --min-confidence or use --synthetic-per-class"
            )
        if (self.tstr or self.pretrain_on_synthetic) and self.balance and self.teacher is not None:
            raise SynthmedError(
                "--tstr and --pretrain-on-synthetic with --balance draw every class afresh, without teacher labels; "
                "drop --teacher or use --synthetic-per-class"
            )
        if self.select_generator is not None and self.track_fid_every is None:
            raise SynthmedError(
                "--select-generator fid needs --track-fid-every K: it chooses among the checkpoints "
                "scored every K epochs"
            )
        if self.teacher_threshold is not None and self.teacher is None:
            raise SynthmedError(
                "--teacher-threshold drops images the teacher is unsure of: give --teacher hard or soft"
            )
        chosen = [
            flag_of(name) for name in ("synthetic_per_class", "synthetic_ratio") if getattr(self, name) is not None
        ] + (["--balance"] if self.balance else [])
        if len(chosen) > 1:
            raise SynthmedError(f"give only one of {', '.join(chosen)}")


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result; its non-default fields and the data file's MD5 hash into
    the run id."""

    dataset: str = setting(
        section="datasets",
        flag="--dataset",
        short="-d",
        sweep=True,
        help="A MedMNIST flag (breastmnist), npz:PATH (any MedMNIST-layout npz) or folder:PATH; a comma list "
        "runs each.",
    )
    protocol: str = setting(
        "lowdata",
        section="protocols",
        choices=PROTOCOLS,
        sweep=True,
        help="lowdata (about 150 real images per class, Chaptoukaev 2021) | fraction (Sharma et al. 2022) | full.",
    )
    real_per_class: int | None = setting(
        None,
        section="protocols",
        low=1,
        aliases=("per_class",),
        help="lowdata: real training images per class (default 150; BreastMNIST keeps its official split).",
    )
    fraction: float | None = setting(
        None,
        section="protocols",
        flag="--fraction",
        aliases=("fractions",),
        sweep=True,
        low=0,
        high=1,
        low_open=True,
        help="fraction: share of the official training split (e.g. 0.05); a comma list sweeps.",
    )
    stratified: bool = setting(False, section="protocols", help="fraction: draw the same share of every class.")
    size: int = setting(
        28,
        section="protocols",
        choices=SIZES,
        help="Image size: 28, or 64 / 128 / 224 where that MedMNIST file is present.",
    )
    method: str = setting(
        "none",
        section="methods",
        flag="--methods",
        short="-m",
        sweep=True,
        help="Comma-separated methods (see `synthmed list`).",
    )
    method_params: dict = setting(
        factory=dict,
        section="methods",
        help="Hyper-parameters of the method (KEY=VALUE; see its preset in `synthmed list --presets`).",
    )
    synthesis: SyntheticLevers = setting(factory=SyntheticLevers, section="methods", help="Synthetic-set levers.")
    classifier: str = setting(
        "resnet18",
        section="classifiers",
        sweep=True,
        help="resnet18 | densenet121 (both with a 28-px stem); a comma list runs each.",
    )
    recipe: str = setting(
        "medmnist",
        section="recipes",
        sweep=True,
        help="Training recipe: chaptoukaev | medmnist | sharma | study (see docs/usage.md); a comma list runs each.",
    )
    epochs: int | None = setting(None, section="recipes", low=1, help="Override the recipe's number of epochs.")
    patience: int | None = setting(
        None, section="recipes", low=1, help="Stop after this many epochs without a better validation score."
    )
    ema: float | None = setting(
        None,
        section="recipes",
        low=0,
        high=1,
        high_open=True,
        label="ema {:g}",
        help="Score, select and test an exponential moving average of the classifier's weights (and BatchNorm "
        "statistics) with this decay per step, e.g. 0.9 (default: the recipe's).",
    )
    swa: float | None = setting(
        None,
        section="recipes",
        low=0,
        high=1,
        low_open=True,
        label="swa {:g}",
        help="Average the weights over this last fraction of the epochs (SWA; BatchNorm statistics recomputed) "
        "and test the average (implies --select last; default: the recipe's).",
    )
    select: str | None = setting(
        None,
        section="recipes",
        choices=("auc", "loss", "last"),
        label="select {}",
        help="Which epoch's weights are kept: auc (best validation AUC, ties by loss) | loss (lowest validation "
        "loss) | last (default: the recipe's, auc for the papers' recipes).",
    )
    tta: str | None = setting(
        None,
        section="recipes",
        choices=("flips",),
        label="tta {}",
        help="flips: average validation and test predictions over the flips the dataset declares "
        "label-preserving (see docs/usage.md; default: the recipe's).",
    )
    ensemble: int | None = setting(
        None,
        section="recipes",
        low=1,
        label="ensemble {}",
        help="Train K classifiers per run (seeds derived from the run's seed: other initialisation and batch "
        "order, same data and synthetic set) and average their probabilities (default: the recipe's, 1).",
    )
    seed: int = setting(
        0,
        section="seeds",
        flag="--seeds",
        sweep=True,
        low=0,
        help="Comma-separated seeds (the subset draw, initialisation and order).",
    )
    dropout: float = setting(
        0.0,
        section="options",
        low=0,
        high=1,
        high_open=True,
        help="Dropout before the classifier head (MC dropout for tsynd; a grid holding tsynd uses its rate for "
        "every method unless given).",
    )
    precision: str = setting(
        "auto", section="options", choices=PRECISIONS, help="auto (bf16 where the hardware runs it fast) | fp32 | bf16."
    )
    report_test_selected: bool = setting(
        False,
        section="options",
        aliases=("paper_style",),
        help="Also score the test split every epoch, to show the optimistic test-selected figure (the protocol "
        "of Chaptoukaev 2021's Table 2) beside the validation-selected one.",
    )
    class_weight: str | None = setting(
        None,
        section="options",
        choices=("balanced",),
        label="class-weight {}",
        help="balanced: weight each class's loss by the inverse of its frequency in the training set "
        "(scikit-learn's 'balanced' formula), for any method.",
    )
    unlabelled: int | str | None = setting(
        None,
        section="protocols",
        low=1,
        words=("all",),
        label="+{} unlabelled",
        help="N or all: also draw, per seed, this many images of the training split outside the labelled subset "
        "as unlabelled images (their labels hidden from training, kept only to audit their class balance), for the "
        "methods that read them (pseudo-label, a generator with -p use_unlabelled=true); the others run as without.",
    )
    curve_per_class: int | None = setting(
        None,
        section="protocols",
        low=1,
        internal=True,
        help="A point of the real-image curve: train on this many real images per class, nested within the run's "
        "real pool (set by --real-curve).",
    )
    robustness: bool | str = setting(
        False,
        section="options",
        words=(MEDMNISTC,),
        help="Also score the test split under perturbations and FGSM / PGD, and save GradCAM / EigenGradCAM maps; "
        "--robustness medmnistc adds the MedMNIST-C corruptions (every corruption and severity of the dataset).",
    )
    attack_eps: float | None = setting(
        None,
        section="options",
        low=0,
        low_open=True,
        high=255,
        help="With --robustness: attack (FGSM and PGD) at this one L-inf epsilon, in grey levels of 255 (2 = 2/255), "
        "instead of the curve at 1, 2, 4 and 8/255; attacks are over half of a run's robustness scoring, and one "
        "epsilon costs a quarter of them.",
    )

    def key(self, dataset_md5: str | None) -> tuple[str, dict]:
        """The run id and the full config recorded with the run. The id hashes only fields that differ from their
        defaults (plus the data file's MD5), so a field added later with a default leaves every id unchanged."""
        config = dataclasses.asdict(self) | {"dataset_md5": dataset_md5}
        hashed = non_default(self) | {"dataset_md5": dataset_md5}
        digest = hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]
        return digest, config


def non_default(spec: RunSpec) -> dict:
    """The fields of ``spec`` (and of its ``SyntheticLevers``) that differ from their defaults."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(RunSpec):
        value = getattr(spec, f.name)
        if f.name == "synthesis":
            levers = {
                g.name: getattr(value, g.name)
                for g in dataclasses.fields(SyntheticLevers)
                if getattr(value, g.name) != _default(g)
            }
            if levers:
                out["synthesis"] = levers
        elif value != _default(f):
            out[f.name] = value
    return out


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


# ------------------------------------------------------------------------------------------------ field catalogue


@functools.cache
def fields() -> dict[str, dataclasses.Field]:
    """Every settable field by name: RunSpec's (except the nested ``synthesis``) and SyntheticLevers'."""
    out = {f.name: f for f in dataclasses.fields(RunSpec) if f.name != "synthesis"}
    out.update({f.name: f for f in dataclasses.fields(SyntheticLevers)})
    return out


SYNTHESIS_FIELDS = tuple(f.name for f in dataclasses.fields(SyntheticLevers))
#: the levers of teacher labels, which only a set whose labels are not known takes (not ``oversample``'s copies)
TEACHER_FIELDS = ("teacher", "teacher_threshold")


def meta(name: str) -> Setting:
    return fields()[name].metadata["setting"]


def flag_of(name: str) -> str:
    return meta(name).flag or "--" + name.replace("_", "-")


def default_of(name: str) -> Any:
    return _default(fields()[name])


@functools.cache
def aliases() -> dict[str, str]:
    """Deprecated YAML keys / flag names -> the field they mean."""
    return {alias: name for name in fields() for alias in meta(name).aliases}


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(RunSpec) | typing.get_type_hints(SyntheticLevers)


def value_type(name: str) -> tuple[type, bool]:
    """(the field's scalar type, whether None is allowed); the ``str`` of ``int | str`` or ``bool | str`` is the
    field's ``words``, not its type."""
    hint = _hints()[name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in args if a is not type(None)), type(None) in args
    return hint, False


def coerce(name: str, value: Any, where: str = "") -> Any:
    """``value`` as field ``name``'s type, within its bounds and choices, or a one-line error. Strings are parsed
    (command-line values, and numbers YAML 1.1 leaves as text such as ``1e-4``)."""
    kind, optional = value_type(name)
    shown = where or flag_of(name)
    if value is None:
        if optional:
            return None
        raise SynthmedError(f"{shown} needs a value")
    m = meta(name)
    if isinstance(value, str) and value.strip().lower() in m.words:
        return value.strip().lower()
    try:
        value = _convert(value, kind)
    except ValueError:
        expected = _kind_name(kind) + "".join(f" or {word!r}" for word in m.words)
        raise SynthmedError(f"{shown} should be {expected}, got {value!r}") from None
    if m.choices is not None and value not in m.choices:
        raise SynthmedError(f"{shown} {value!r}: choose one of {', '.join(map(str, m.choices))}")
    if kind in (int, float):
        low_bad = m.low is not None and (value <= m.low if m.low_open else value < m.low)
        high_bad = m.high is not None and (value >= m.high if m.high_open else value > m.high)
        if low_bad or high_bad or (kind is float and not math.isfinite(value)):
            raise SynthmedError(f"{shown} {value!r} must be {_range_text(m)}")
    return value


def _convert(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            return value.strip().lower() in ("true", "yes")
        raise ValueError
    if isinstance(value, bool):
        raise ValueError  # YAML's `true` is not a number
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ValueError
    if kind is float:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value)
        raise ValueError
    if kind is str:
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise ValueError
    if kind is dict:
        if isinstance(value, dict):
            return value
        raise ValueError
    raise ValueError


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a name", dict: "a mapping"}.get(
        kind, kind.__name__
    )


def _range_text(m: Setting) -> str:
    parts = []
    if m.low is not None:
        parts.append(f"{'>' if m.low_open else '>='} {m.low:g}")
    if m.high is not None:
        parts.append(f"{'<' if m.high_open else '<='} {m.high:g}")
    return " and ".join(parts) if parts else "finite"


def split_values(name: str, text: Any, where: str = "") -> list[Any]:
    """A sweep value (a comma-separated string, a list or one value) -> the list of coerced values."""
    items = text if isinstance(text, list) else str(text).split(",") if isinstance(text, str) else [text]
    values = [
        coerce(name, v.strip() if isinstance(v, str) else v, where)
        for v in items
        if not (isinstance(v, str) and not v.strip())
    ]
    if not values:
        raise SynthmedError(f"{where or flag_of(name)} is empty; give at least one value")
    return values


# --------------------------------------------------------------------------------------------------- report labels


def lever_parts(config: dict) -> list[str]:
    """The method label's parts for levers that differ from their defaults (``weight 0.5``, ``ft 5``,
    ``class-weight balanced``)."""
    levers = config.get("synthesis") or {}
    parts = []
    whole_pool = adds_whole_pool(config)
    for name in fields():
        if meta(name).section == "recipes":  # how the classifier is trained: ``recipe_label``, not the method's
            continue
        if whole_pool and name in COUNT_FIELDS:  # no count policy applies: ``count=all`` says what it adds
            continue
        fmt = meta(name).label
        value = levers.get(name) if name in SYNTHESIS_FIELDS else config.get(name)
        if fmt and value is not None and value != default_of(name):
            parts.append(fmt.format(value))
    return parts


#: the levers that set how many images a synthetic set adds per class
COUNT_FIELDS = ("synthetic_per_class", "synthetic_ratio", "balance")


def adds_whole_pool(config: dict) -> bool:
    """Whether the run is ``pseudo-label -p count=all``, which adds every unlabelled image its teacher kept, so
    that no count policy applies to it (nor belongs in its label)."""
    return config.get("method") == "pseudo-label" and (config.get("method_params") or {}).get("count") == "all"


#: the levers that decide what a synthetic set adds to training (how many images of which class, at what weight,
#: under which loss weights): a generative run and its count-matched ``oversample`` control share these, while
#: levers about the generator itself (checkpoint selection, TSTR, fidelity) do not enter the control
POLICY_FIELDS = ("synthetic_per_class", "synthetic_ratio", "balance", "synthetic_weight", "class_weight")


def policy_parts(config: dict, names: tuple[str, ...] = POLICY_FIELDS) -> list[str]:
    """``lever_parts`` of the sampling policy only (``POLICY_FIELDS``), or of the other levers ``names``."""
    levers = {k: v for k, v in (config.get("synthesis") or {}).items() if k in names}
    return lever_parts({k: config.get(k) for k in names} | {"synthesis": levers})


def params_label(config: dict) -> str:
    """A run's method hyper-parameters that differ from the preset: ``epochs=20 lr=0.0001`` (or "")."""
    return " ".join(f"{k}={v}" for k, v in sorted((config.get("method_params") or {}).items()))


def method_label(config: dict, params: bool = True) -> str:
    """``cvae``, or with its non-default levers and (unless ``params=False``) hyper-parameters:
    ``cvae weight 0.5 ft 5 epochs=100``."""
    parts = [config["method"], *lever_parts(config), params_label(config) if params else ""]
    return " ".join(part for part in parts if part)


def protocol_label(config: dict) -> str:
    """``lowdata``, ``lowdata 50/class``, ``fraction 0.05 stratified``, ``full`` (and the image size if not 28).
    The labelled images and the evaluation only: unlabelled images are an input of the methods that read them, so
    their rows (``ddpm +all unlabelled``) pair with ``none`` of the same protocol."""
    label = config["protocol"]
    if label == "lowdata" and config.get("real_per_class"):
        label += f" {config['real_per_class']}/class"
    if label == "fraction":
        label += f" {config.get('fraction'):g}" + (" stratified" if config.get("stratified") else "")
    if config.get("size", 28) != 28:
        label += f" {config['size']}px"
    return label


def recipe_label(config: dict) -> str:
    """``medmnist``, or with the recipe settings a run overrides: ``medmnist ema 0.9 tta flips ensemble 3``. Runs
    trained under different recipes are different protocols, never rows of one table."""
    parts = [config.get("recipe") or "medmnist"]
    for name in fields():
        fmt, value = meta(name).label, config.get(name)
        if meta(name).section == "recipes" and fmt and value is not None and value != default_of(name):
            parts.append(fmt.format(value))
    return " ".join(parts)


def classifier_label(config: dict) -> str:
    """``resnet18``, or ``resnet18 dropout 0.2`` when the head had dropout (TSynD comparisons)."""
    dropout = config.get("dropout") or 0
    return config["classifier"] + (f" dropout {dropout:g}" if dropout else "")


#: Fields that never change a run's result: the seed (what pairs runs), what is only measured or shown besides the
#: result, and the curve point (its runs are not rows). ``result_config`` drops them.
NO_RESULT_FIELDS = ("seed", "report_test_selected", "robustness", "attack_eps", "fidelity", "tstr")


def result_config(config: dict) -> dict:
    """The part of a run's config that decides its result: the config minus ``NO_RESULT_FIELDS``, minus
    ``fidelity_epochs`` unless the classifier it trains filters, relabels images or selects a checkpoint, and minus
    ``track_fid_every`` unless it chooses the checkpoints ``--select-generator`` picks from. Runs of one report row
    share it; they differ only in their seed."""
    levers = dict(config.get("synthesis") or {})
    uses_reference = any(levers.get(name) is not None for name in ("min_confidence", "select_generator", "teacher"))
    if not uses_reference:
        levers.pop("fidelity_epochs", None)
    if levers.get("select_generator") is None:
        levers.pop("track_fid_every", None)
    for name in NO_RESULT_FIELDS:
        levers.pop(name, None)
    out = {k: v for k, v in config.items() if k not in NO_RESULT_FIELDS and k != "synthesis"}
    return set_only(out) | {"synthesis": set_only(levers)}


def set_only(values: dict) -> dict:
    """``values`` without the fields at their default: a record written before a field existed and one written
    after, at its default, describe the same run (as the run id treats them)."""
    return {k: v for k, v in values.items() if k not in fields() or v != default_of(k)}


def result_key(config: dict) -> str:
    """``result_config`` as one sortable string: the key of a report row within its group."""
    return json.dumps(result_config(config), sort_keys=True, default=str)


def _flat(config: dict) -> dict[str, Any]:
    """``result_config`` with the synthesis levers and method hyper-parameters lifted to the top level."""
    result = result_config(config)
    flat = {k: v for k, v in result.items() if k not in ("synthesis", "method_params")}
    flat.update(result.get("synthesis") or {})
    flat.update({f"-p {k}": v for k, v in (result.get("method_params") or {}).items()})
    return flat


def distinguishing_parts(config: dict, others: list[dict]) -> list[str]:
    """Label parts (``epochs 100``, ``precision fp32``) for the result fields in which ``config`` differs from any
    of ``others``: what tells apart report rows that ``method_label`` alone would give the same name."""
    mine = _flat(config)
    theirs = [_flat(o) for o in others]
    parts = []
    for name, value in mine.items():
        if all(t.get(name) == value for t in theirs):
            continue
        fmt = meta(name).label if name in fields() else None
        shown = name.replace("_", "-")
        parts.append(fmt.format(value) if fmt and value is not None else f"{shown} {value}")
    return parts


def generator_fit(config: dict, seed: int) -> int | None:
    """Which generator fit a run's synthetic set came from, where seeds share fits (``--generator-seed`` or
    ``--generator-seeds``); None when every seed fits its own (the seeds are then independent units)."""
    levers = config.get("synthesis") or {}
    if levers.get("generator_seed") is not None:
        return int(levers["generator_seed"])
    if levers.get("generator_seeds") is not None:
        return int(seed) % int(levers["generator_seeds"])
    return None
