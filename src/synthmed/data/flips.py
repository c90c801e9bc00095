"""Which flips keep a MedMNIST image's label: the table test-time augmentation (``--tta flips``) reads.

A flip is label-preserving when the class does not depend on the image's orientation. That holds for tissue
patches, cells and skin lesions (any flip), and left-right for ultrasound and chest X-rays (the finding stays the
finding; up-down would put the transducer or the diaphragm at the top, an image the classifier never sees). It
does not hold where a class names a side (OrganMNIST's left / right kidney and femur), so those declare none, and
``--tta flips`` is refused for them, as for any dataset not listed here (an npz or image folder).
"""

from __future__ import annotations

import torch

from synthmed.errors import SynthmedError

HORIZONTAL, VERTICAL = "horizontal", "vertical"

#: dataset -> the flips that keep its labels (the identity is always averaged in as well)
LABEL_PRESERVING_FLIPS: dict[str, tuple[str, ...]] = {
    "pathmnist": (HORIZONTAL, VERTICAL),  # tissue patches: no orientation
    "dermamnist": (HORIZONTAL, VERTICAL),  # dermatoscopy: no orientation
    "bloodmnist": (HORIZONTAL, VERTICAL),  # single cells
    "tissuemnist": (HORIZONTAL, VERTICAL),  # kidney cortex cells
    "breastmnist": (HORIZONTAL,),  # ultrasound: the transducer stays at the top
    "pneumoniamnist": (HORIZONTAL,),  # chest X-ray: pneumonia is pneumonia on either side
    "chestmnist": (HORIZONTAL,),
    "octmnist": (HORIZONTAL,),  # retinal OCT B-scans
    "retinamnist": (HORIZONTAL,),  # fundus: a left eye mirrored is a right eye of the same grade
    "organamnist": (),  # classes name a side (kidney-left, femur-right)
    "organcmnist": (),
    "organsmnist": (),
}


def label_preserving_flips(dataset: str) -> tuple[str, ...]:
    """The declared flips of ``dataset``, or a one-line error where none are declared."""
    flips = LABEL_PRESERVING_FLIPS.get(dataset, ())
    if not flips:
        known = ", ".join(name for name, f in LABEL_PRESERVING_FLIPS.items() if f)
        raise SynthmedError(
            f"--tta flips: no label-preserving flip is declared for {dataset!r} (declared for {known}); drop --tta"
        )
    return flips


def flip(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` (N, C, H, W) mirrored left-right (``horizontal``) or top-bottom (``vertical``)."""
    return torch.flip(x, dims=(-1,) if name == HORIZONTAL else (-2,))
