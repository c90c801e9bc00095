"""How much a synthetic set is worth, in real images: the real-image curve and each method's equivalent.

``--real-curve N1,N2,...`` trains ``none`` on N real images per class, nested within each seed's real pool. The
worth of a method is anchored at the protocol's own count N0 (the real images per class ``none`` trained on, e.g.
150): with the paired differences d_s = method - none (the same differences the AUC verdict tests) and each seed's
curve slope k_s in log(N) over the curve segment next to N0 on the side the method moves (below N0 for a loss,
above it for a gain), the method is where ``none`` would be after moving theta = mean(d) / mean(k) along log(N):
worth = N0 (exp(theta) - 1) real images per class.

Its interval is Fieller's for the ratio of two means with t quantiles (exact for normal per-seed pairs (d_s, k_s),
whatever n): it carries the curve's uncertainty as well as the method's, is unbounded where the slope is not
distinguishable from flat, and excludes 0 exactly when the paired t-interval of the differences does. It is a
transform of the same differences as the AUC comparison, not an independent confirmation of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sps
from sklearn.isotonic import IsotonicRegression

from synthmed.report.stats import cluster_means


def monotone(sizes: np.ndarray, aucs: np.ndarray) -> np.ndarray:
    """The isotonic (non-decreasing in size) fit of one seed's curve (for figures)."""
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


def segment(sizes: Sequence[int], anchor: int, gain: bool) -> tuple[int, int] | None:
    """The two curve sizes around ``anchor`` on the side a method moves: above it for a gain, below for a loss
    (the anchor itself when it is a curve size); None where the curve does not reach that side."""
    below = [n for n in sizes if n <= anchor] if gain else [n for n in sizes if n < anchor]
    above = [n for n in sizes if n > anchor] if gain else [n for n in sizes if n >= anchor]
    if not below or not above:
        return None
    return max(below), min(above)


def fieller(d: np.ndarray, k: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Ratio mean(d) / mean(k) and its Fieller interval at ``level`` with t quantiles (df = n - 1); the interval is
    (-inf, inf) where the denominator's interval reaches 0 (the ratio is then unbounded)."""
    n = d.size
    ratio = float(d.mean() / k.mean()) if k.mean() != 0 else math.copysign(math.inf, d.mean())
    if n < 2:
        return ratio, math.nan, math.nan
    t2 = float(sps.t.ppf(0.5 + level / 2, n - 1)) ** 2
    cov = np.cov(np.stack([d, k]), ddof=1) / n
    a = k.mean() ** 2 - t2 * cov[1, 1]
    b = -2 * (d.mean() * k.mean() - t2 * cov[0, 1])
    c = d.mean() ** 2 - t2 * cov[0, 0]
    if a <= 0:
        return ratio, -math.inf, math.inf
    root = math.sqrt(max(0.0, b * b - 4 * a * c))
    return ratio, float((-b - root) / (2 * a)), float((-b + root) / (2 * a))


def worth_interval(d: np.ndarray, k: np.ndarray, anchor: float, level: float = 0.95) -> tuple[float, float, float]:
    """Worth in real images per class (point, low, high) of paired differences ``d`` on a curve of per-seed slopes
    ``k`` (AUC per unit of log N) at ``anchor`` per class. A flat or falling mean slope gives an infinite point."""
    if k.mean() <= 0:
        return math.copysign(math.inf, d.mean()), -math.inf, math.inf
    theta, low, high = fieller(d, k, level)

    def count(x: float) -> float:
        if math.isnan(x):
            return math.nan
        return anchor * math.expm1(x) if math.isfinite(x) else (math.inf if x > 0 else -anchor)

    return count(theta), count(low), count(high)


def real_equivalent(
    curve: dict[int, dict[int, float]],
    diffs: dict[int, float],
    anchor: int | None,
    clusters: dict[int, Any] | None = None,
    level: float = 0.95,
) -> dict | None:
    """The worth of a method in real images per class at ``anchor`` per class: ``curve`` is seed -> {size: test AUC}
    of ``none``; ``diffs`` is seed -> paired test AUC difference (method - none); ``clusters`` seed -> generator fit,
    where seeds share one (those seeds are averaged into one unit). None without an anchor, a curve segment on the
    side the method moves, or a seed the curve and the differences share. A seed whose curve still lacks points
    other seeds have (a step cut by its time budget ran only its first points) is left out while a seed with the
    whole curve is there: kept, it would shrink every seed's curve to the points it has."""
    seeds = sorted(set(curve) & set(diffs))
    if anchor is None or not seeds:
        return None
    every_size = set.union(*(set(curve[s]) for s in seeds))
    seeds = [s for s in seeds if set(curve[s]) == every_size] or seeds
    sizes = sorted(set.intersection(*(set(curve[s]) for s in seeds)))
    d = np.array([diffs[s] for s in seeds], dtype=float)
    side = segment(sizes, anchor, gain=bool(d.mean() >= 0))
    if side is None:
        return None
    lo, hi = side
    k = np.array([(curve[s][hi] - curve[s][lo]) / math.log(hi / lo) for s in seeds], dtype=float)
    labels = None if clusters is None else [clusters[s] for s in seeds]
    d_units, k_units = cluster_means(d, labels), cluster_means(k, labels)
    point, low, high = worth_interval(d_units, k_units, anchor, level)
    at_anchor = float(np.mean([_at(curve[s], sizes, anchor) for s in seeds]))
    return {
        "point": point,
        "low": low,
        "high": high,
        "anchor": anchor,
        "segment": [lo, hi],
        "real_per_class": anchor + point,
        "auc": at_anchor + float(d.mean()),
        "none_per_class": anchor,
        "sizes": sizes,
        "seeds": len(seeds),
        "units": int(d_units.size),
        "text": worth_text(point, low, high, sizes, anchor),
    }


def _at(points: dict[int, float], sizes: list[int], anchor: int) -> float:
    """One seed's curve at ``anchor``, linear in log N between its two nearest sizes."""
    xs = np.log(np.array(sizes, dtype=float))
    return float(np.interp(math.log(anchor), xs, [points[n] for n in sizes]))


def _signed(value: float) -> str:
    return f"{value:+.0f}" if math.isfinite(value) else "…"


def worth_text(point: float, low: float, high: float, sizes: Sequence[int], anchor: int) -> str:
    """``+32 real images per class [-15, +80]``; ``…`` for an end the curve's slope leaves unbounded; a count past
    the curve's last size is marked as read beyond the curve."""
    if math.isnan(point):
        return "no worth can be read off the curve"
    if math.isinf(point):
        return "the curve is flat here: no count of real images matches"
    beyond = " (beyond the curve)" if anchor + point > sizes[-1] else ""
    if math.isnan(low):
        return f"{point:+.0f} real images per class{beyond}"
    return f"{point:+.0f} real images per class [{_signed(low)}, {_signed(high)}]{beyond}"
