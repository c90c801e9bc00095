"""Reference outputs of the ``medmnistc`` package for tests/test_corruptions.py, computed once.

Run with a Python where ``medmnistc`` is importable (a throwaway venv: it pins old medmnist / scikit-image and
needs OpenCV and ImageMagick's Wand); Wand is stubbed when ImageMagick is missing, so the motion blur (the only
corruption that calls it) is left out. Writes tests/fixtures/medmnistc_reference.json: the input images and each
corruption's output, each a 28 x 28 uint8 image as a hex string (row-major).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
from PIL import Image

#: (the package's class, its parameter, our kind): deterministic corruptions only (the noises use numpy's global RNG).
CASES = [
    ("Pixelate", 0.8, "pixelate"),
    ("Pixelate", 0.3, "pixelate"),
    ("Pixelate", 0.1, "pixelate"),
    ("JPEGCompression", 50, "jpeg_compression"),
    ("JPEGCompression", 7, "jpeg_compression"),
    ("Brightness", 1.5, "brightness"),
    ("Brightness", 0.45, "brightness"),
    ("Contrast", 1.6, "contrast"),
    ("Contrast", 0.4, "contrast"),
    ("GammaCorrection", 1.6, "gamma_correction"),
    ("GammaCorrection", 0.4, "gamma_correction"),
    ("GaussianBlur", 3, "gaussian_blur"),
    ("GaussianBlur", 7, "gaussian_blur"),
    ("DefocusBlur", (3, 0.1), "defocus_blur"),
]


def images() -> np.ndarray:
    """Two fixed 28-px grey images: a blob over stripes (edges, flats) and noise (texture)."""
    yy, xx = np.mgrid[:28, :28]
    blob = 200 * np.exp(-((yy - 12) ** 2 + (xx - 15) ** 2) / 60) + 2 * xx + 30 * (yy % 6 < 3)
    noise = np.random.default_rng(0).integers(0, 256, (28, 28))
    return np.clip(np.stack([blob, noise]), 0, 255).astype(np.uint8)


def main() -> None:
    try:
        import wand.image  # noqa: F401
    except ImportError:
        stub = types.ModuleType("wand.image")
        stub.Image = object  # type: ignore[attr-defined]
        api = types.ModuleType("wand.api")
        api.library = None  # type: ignore[attr-defined]
        sys.modules.update({"wand": types.ModuleType("wand"), "wand.image": stub, "wand.api": api})
    import medmnistc.corruptions.registry as registry

    inputs = images()
    cases = []
    for cls, param, kind in CASES:
        corruption = getattr(registry, cls)(severity_params=[param])
        rgb = kind == "defocus_blur"  # the package's defocus blur loops over three channels
        outs = []
        for image in inputs:
            pil = Image.fromarray(np.stack([image] * 3, -1) if rgb else image)
            out = np.asarray(corruption.apply(pil, severity=0))
            outs.append(np.ascontiguousarray(out[..., 0] if rgb else out).astype(np.uint8).tobytes().hex())
        cases.append({"kind": kind, "param": param, "outputs": outs})
    path = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "medmnistc_reference.json"
    path.write_text(json.dumps({"inputs": [i.tobytes().hex() for i in inputs], "cases": cases}, indent=1))
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
