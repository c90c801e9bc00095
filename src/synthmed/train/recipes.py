"""Named training recipes (presets); every field can be overridden."""

from __future__ import annotations

from dataclasses import dataclass, replace

from synthmed.errors import SynthmedError


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str  # "sgd" | "adam"
    lr: float
    batch_size: int
    epochs: int
    momentum: float = 0.0
    weight_decay: float = 0.0
    milestones: tuple[float, ...] = ()  # fractions of the epochs at which the lr is multiplied by gamma
    gamma: float = 0.1
    # How the final weights are chosen and scored (issue "noise floor"): see docs/usage.md.
    ema: float | None = None  # decay of an EMA of the weights (per optimizer step), scored and selected instead
    swa: float | None = None  # SWA over this last fraction of the epochs, BatchNorm recomputed; the result
    select: str = "auc"  # auc (best val AUC, ties by loss) | loss (lowest val loss) | last (no selection)
    tta: str | None = None  # "flips": average predictions over the dataset's label-preserving flips
    ensemble: int = 1  # members per run (seeds derived from the run's), probabilities averaged


RECIPES = {
    # Chaptoukaev 2021: SGD, lr 1e-3, batch 128, 100 epochs. The paper gives no momentum; 0.9 is what the
    # MedMNIST v1 code it follows used (plain SGD at 1e-3 barely moves in 100 epochs).
    "chaptoukaev": Recipe("chaptoukaev", "sgd", 1e-3, 128, 100, momentum=0.9),
    # The official MedMNIST v2 recipe.
    "medmnist": Recipe("medmnist", "adam", 1e-3, 128, 100, milestones=(0.5, 0.75)),
    # Sharma et al. 2022: Adam 1e-3, batch 32, 30 epochs.
    "sharma": Recipe("sharma", "adam", 1e-3, 32, 30),
    # The study's protocol from now on (bench/noise.py, docs/benchmarks.md): the medmnist optimiser and schedule at
    # 20 epochs, keeping the last epoch's weights instead of the best validation AUC (34 validation images on
    # PneumoniaMNIST lowdata make that pick noisy). At seeds 100-108 the paired SD of Δ(oversample − none) went
    # from 0.040 to 0.010 on PneumoniaMNIST (0.012 to 0.014 on BreastMNIST), the CPU hours to an equivalence
    # verdict at ±0.01 on both sets from 10.4 to 3.0, and mean `none` test AUC rose (0.909 to 0.935; 0.891 to 0.893);
    # with seed 109, 13.9 to 2.95 (21 %).
    "study": Recipe("study", "adam", 1e-3, 128, 20, milestones=(0.5, 0.75), select="last"),
}


SELECT_RULES = ("auc", "loss", "last")


def get_recipe(name: str, epochs: int | None = None, patience: int | None = None, **overrides) -> Recipe:
    """The preset ``name`` with ``epochs`` and every override that is not None in its place (``--swa`` without a
    ``--select`` selects ``last``: the average is the result); ``patience`` is only checked against it."""
    if name not in RECIPES:
        raise SynthmedError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    if epochs is not None:
        if epochs < 1:
            raise SynthmedError(f"--epochs {epochs} must be at least 1")
        overrides["epochs"] = epochs
    if overrides.get("swa") is not None and overrides.get("select") is None:
        overrides["select"] = "last"
    recipe = replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    check_recipe(recipe, patience)
    return recipe


def check_recipe(recipe: Recipe, patience: int | None = None) -> None:
    """One-line errors for a recipe whose averaging, selection and ensemble settings cannot work together."""
    if recipe.ema is not None and not 0 <= recipe.ema < 1:
        raise SynthmedError(f"--ema {recipe.ema:g} must be >= 0 and < 1 (e.g. 0.9: the EMA decay per step)")
    if recipe.swa is not None and not 0 < recipe.swa <= 1:
        raise SynthmedError(f"--swa {recipe.swa:g} must be > 0 and <= 1 (the last fraction of the epochs averaged)")
    if recipe.select not in SELECT_RULES:
        raise SynthmedError(f"--select {recipe.select!r}: choose one of {', '.join(SELECT_RULES)}")
    if recipe.ensemble < 1:
        raise SynthmedError(f"--ensemble {recipe.ensemble} must be at least 1")
    if recipe.ema is not None and recipe.swa is not None:
        raise SynthmedError("give only one of --ema, --swa (each is a way to average the weights)")
    if recipe.swa is not None and recipe.select != "last":
        raise SynthmedError("--swa keeps the average of the last epochs, so no epoch is selected: use --select last")
    if recipe.swa is not None and patience is not None:
        raise SynthmedError("--swa averages the schedule's last epochs; --patience would stop before them: drop it")
