"""How much a synthetic set is worth, in real images: the real-image curve and each method's equivalent.

``--real-curve N1,N2,...`` trains ``none`` on N real images per class, nested within each seed's real pool. Per
seed, test AUC against log(N) is made monotone (isotonic regression: more real images of the same pool never
hurt in expectation) and read as a piecewise-linear curve in log(N). A method's mean test AUC is placed on the
seeds' mean curve: the N at which ``none`` would reach it is the method's *equivalent real images per class*, and
its worth is that minus the equivalent of the group's own ``none`` run (so ``none`` is worth 0, a method that hurts
is worth less than 0). Above the curve's last point the worth is "beyond the curve"; below its first point,
"below the curve". The interval is a bootstrap over seeds (the curve and the method resampled together).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.isotonic import IsotonicRegression

#: Bootstrap draws for the interval of a worth.
N_BOOT = 2000


def monotone(sizes: np.ndarray, aucs: np.ndarray) -> np.ndarray:
    """The isotonic (non-decreasing in size) fit of one seed's curve."""
    return IsotonicRegression(increasing=True).fit_transform(np.log(sizes), aucs)


def invert(sizes: np.ndarray, curve: np.ndarray, target: float) -> float:
    """The real images per class at which a non-decreasing ``curve`` over ``sizes`` reaches ``target``: linear in
    log(size) between points; +inf above the last point, -inf below the first."""
    if target > curve[-1] + 1e-12:
        return math.inf
    if target < curve[0] - 1e-12:
        return -math.inf
    k = int(np.argmax(curve >= target - 1e-12))
    if k == 0 or curve[k] == curve[k - 1]:
        return float(sizes[k])
    t = (target - curve[k - 1]) / (curve[k] - curve[k - 1])
    return float(np.exp(np.log(sizes[k - 1]) + t * (np.log(sizes[k]) - np.log(sizes[k - 1]))))


def _worth(sizes: np.ndarray, curve: np.ndarray, method: float, none: float) -> tuple[float, float, float]:
    n_method, n_none = invert(sizes, curve, method), invert(sizes, curve, none)
    if math.isinf(n_none):  # the baseline itself lies off the curve: no worth can be read
        return math.nan, n_method, n_none
    return (n_method if math.isinf(n_method) else n_method - n_none), n_method, n_none


def real_equivalent(
    curve: dict[int, dict[int, float]],
    method: dict[int, float],
    none: dict[int, float],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict | None:
    """The worth of a method in real images per class: ``curve`` is seed -> {size: test AUC}; ``method`` and
    ``none`` are seed -> test AUC. Returns point, low, high (95 % bootstrap over seeds), the equivalents and a
    sentence; None without at least two curve sizes on a seed the three share."""
    seeds = sorted(set(curve) & set(method) & set(none))
    if not seeds:
        return None
    sizes = np.array(sorted(set.intersection(*(set(curve[s]) for s in seeds))), dtype=float)
    if len(sizes) < 2:
        return None
    fitted = np.stack([monotone(sizes, np.array([curve[s][int(n)] for n in sizes])) for s in seeds])
    m = np.array([method[s] for s in seeds])
    b = np.array([none[s] for s in seeds])
    point, n_method, n_none = _worth(sizes, fitted.mean(0), float(m.mean()), float(b.mean()))
    draws = np.random.default_rng(seed).integers(0, len(seeds), (n_boot, len(seeds)))
    boot = np.array([_worth(sizes, fitted[i].mean(0), float(m[i].mean()), float(b[i].mean()))[0] for i in draws])
    boot = boot[~np.isnan(boot)]
    low, high = (
        (float(np.quantile(boot, q, method="inverted_cdf")) for q in (0.025, 0.975))
        if len(seeds) > 1 and len(boot)
        else (math.nan, math.nan)
    )
    return {
        "point": point,
        "low": low,
        "high": high,
        "real_per_class": n_method,
        "none_per_class": n_none,
        "sizes": sizes.astype(int).tolist(),
        "seeds": len(seeds),
        "text": worth_text(point, low, high, sizes),
    }


def _signed(value: float) -> str:
    return f"{value:+.0f}" if math.isfinite(value) else ("beyond" if value > 0 else "below")


def worth_text(point: float, low: float, high: float, sizes: np.ndarray) -> str:
    """``+32 real images per class [-15, +80]``, or where the curve ends: ``beyond the curve (> 600 per class)``."""
    if math.isnan(point):
        return "the curve does not reach the baseline's own AUC"
    if math.isinf(point):
        where = f"> {int(sizes[-1])}" if point > 0 else f"< {int(sizes[0])}"
        return f"{'beyond' if point > 0 else 'below'} the curve ({where} per class)"
    interval = "" if math.isnan(low) else f" [{_signed(low)}, {_signed(high)}]"
    return f"{point:+.0f} real images per class{interval}"
