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


RECIPES = {
    # Chaptoukaev 2021: SGD, lr 1e-3, batch 128, 100 epochs. The paper gives no momentum; 0.9 is what the
    # MedMNIST v1 code it follows used (plain SGD at 1e-3 barely moves in 100 epochs).
    "chaptoukaev": Recipe("chaptoukaev", "sgd", 1e-3, 128, 100, momentum=0.9),
    # The official MedMNIST v2 recipe.
    "medmnist": Recipe("medmnist", "adam", 1e-3, 128, 100, milestones=(0.5, 0.75)),
    # Sharma et al. 2022: Adam 1e-3, batch 32, 30 epochs.
    "sharma": Recipe("sharma", "adam", 1e-3, 32, 30),
}


def get_recipe(name: str, epochs: int | None = None, **overrides) -> Recipe:
    if name not in RECIPES:
        raise SynthmedError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    if epochs is not None:
        if epochs < 1:
            raise SynthmedError(f"--epochs {epochs} must be at least 1")
        overrides["epochs"] = epochs
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
