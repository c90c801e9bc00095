"""Paired statistics for reports: a verdict per method instead of "within noise".

A report compares each method's per-seed metric (e.g. test AUC) with a reference method's on the same seeds.
The seeds pair the runs (same split, same initialisation stream), so the unit of analysis is the per-seed
difference ``method - reference``. From those differences ``compare`` gives:

- the two-sided ``(1 - alpha)`` t-interval of the mean difference and a paired percentile bootstrap interval at the
  same level (a check on the normality behind the t-interval; the two are flagged when they disagree about 0);
- the ``(1 - 2 alpha)`` t-interval used for equivalence by two one-sided tests (TOST) against a margin;
- the two-sided paired t-test p-value and the TOST p-value;
- the minimum detectable effect at 80 % power, so that "undecided" says how large a difference the seeds could see;
- a verdict: better, worse, equivalent, the "by less than the margin" forms, or undecided.

Verdicts are decided on Holm-adjusted intervals only: ``adjust`` takes the family of comparisons a report makes
and gives each its Bonferroni-Holm step-down level, at which its t-interval (difference) and TOST interval
(equivalence) are recomputed; the unadjusted interval is kept for display and never decides. A comparison with
fewer than ``MIN_PAIRS`` units (seeds, or generator fits where several seeds share one) is never decided, and
neither is one whose pairs ``compare`` is told are not comparable (``blocked``, e.g. mixed precision); neither
enters the family.

``look_alpha`` and ``planned_looks`` give the rule for adding seeds until decided: every planned look tests at
``alpha / looks`` (a Bonferroni split), which keeps the overall error rate at most ``alpha``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

from synthmed.errors import SynthmedError

NAN = float("nan")

BETTER = "better"
WORSE = "worse"
EQUIVALENT = "equivalent"
BETTER_WITHIN = "better, by less than the margin"
WORSE_WITHIN = "worse, by less than the margin"
UNDECIDED = "undecided"
#: Fewest paired units (seeds, or generator fits) before any verdict is decided: below it a t-interval is too
#: fragile to be worth a claim, however far from 0 it lies.
MIN_PAIRS = 5
UNDECIDED_FEW = f"undecided (n < {MIN_PAIRS})"
DECIDED = (BETTER, WORSE, EQUIVALENT, BETTER_WITHIN, WORSE_WITHIN)
VERDICTS = (*DECIDED, UNDECIDED, UNDECIDED_FEW)

# Bootstrap resamples are drawn in blocks of at most this many indices, so memory stays bounded for large n.
_BOOT_BLOCK = 1 << 20


def _clean(values: Iterable[float | None]) -> np.ndarray:
    """The finite-or-infinite values as float64, with None and NaN dropped (missing seeds)."""
    arr = np.array([NAN if v is None else float(v) for v in values], dtype=float)
    return arr[~np.isnan(arr)]


def _mean_std(arr: np.ndarray) -> tuple[float, float]:
    """Mean and sample std; identical values give exactly (value, 0.0) instead of rounding noise."""
    if arr.size and np.all(arr == arr[0]):
        return float(arr[0]), 0.0 if arr.size > 1 else NAN
    mean = float(arr.mean()) if arr.size else NAN
    std = float(arr.std(ddof=1)) if arr.size > 1 else NAN
    return mean, std


def _t_half(std: float, n: int, level: float) -> float:
    """Half-width of the two-sided t-interval at ``level`` for a mean of n values with sample std ``std``."""
    if n < 2 or not math.isfinite(std):
        return NAN
    if std == 0:
        return 0.0
    return float(sps.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def interval(values: Iterable[float | None], level: float = 0.95) -> tuple[float, float, float]:
    """Mean, sample std (ddof=1) and two-sided t-interval half-width of the values, ignoring None / NaN.

    Empty gives (nan, nan, nan); a single value gives (value, nan, nan), since one seed says nothing about spread.
    """
    if not 0 < level < 1:
        raise SynthmedError(f"interval level must be in (0, 1), got {level}; pass e.g. level=0.95")
    arr = _clean(values)
    mean, std = _mean_std(arr)
    return mean, std, _t_half(std, int(arr.size), level)


def _paired_power(ncp: float, df: int, crit: float) -> float:
    """Power of the two-sided t-test with critical value ``crit``: both tails of the noncentral t.

    The lower tail P(T < -crit | ncp) is taken as P(T > crit | -ncp) (the same by symmetry): SciPy's
    ``nct.cdf`` far in the lower tail can return NaN for small df, its ``sf`` there underflows cleanly to 0.
    """
    return float(sps.nct.sf(crit, df, ncp) + sps.nct.sf(crit, df, -ncp))


def units_for_equivalence(sd: float, margin: float, alpha: float = 0.05, power: float = 0.8, cap: int = 10_000) -> int:
    """Pairs an equivalence test (TOST at ``margin``) needs for ``power`` when the true difference is 0 and the
    paired differences have SD ``sd``: the smallest n with t_{1-α, n-1} + t_{1-β/2, n-1} <= margin √n / sd (the
    usual normal-approximation rule with t quantiles). What "undecided" costs to turn into an answer, and what the
    noise bench ranks protocols by."""
    if not margin > 0:
        raise SynthmedError(f"margin must be > 0 for an equivalence test, got {margin}")
    if sd <= 0:
        return 2
    for n in range(2, cap):
        df = n - 1
        if sps.t.ppf(1 - alpha, df) + sps.t.ppf(1 - (1 - power) / 2, df) <= margin * math.sqrt(n) / sd:
            return n
    return cap


def minimum_detectable_effect(std: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean paired difference a two-sided paired t-test at ``alpha`` detects with ``power``.

    Solved exactly with the noncentral t distribution (df = n - 1, both rejection tails counted): find the
    noncentrality whose power is ``power``, then effect = ncp * std / sqrt(n). This is what tells an undecided
    comparison whether the seeds could have seen a difference of interest at all.
    """
    if not 0 < alpha < 1:
        raise SynthmedError(f"alpha must be in (0, 1), got {alpha}; pass e.g. alpha=0.05")
    if not 0 < power < 1:
        raise SynthmedError(f"power must be in (0, 1), got {power}; pass e.g. power=0.8")
    if n < 2 or not math.isfinite(std):
        return NAN
    if std == 0:
        return 0.0
    std = abs(float(std))
    if power <= alpha:  # no effect at all already rejects with probability alpha
        return 0.0
    df = n - 1
    crit = float(sps.t.ppf(1 - alpha / 2, df))

    def gap(ncp: float) -> float:
        return _paired_power(ncp, df, crit) - power

    hi = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) + 1.0
    while gap(hi) <= 0:
        hi *= 2
        if hi > 1e9:  # pragma: no cover - unreachable for alpha, power in (0, 1)
            return math.inf
    ncp = optimize.brentq(gap, 0.0, hi, xtol=1e-12, rtol=1e-14, maxiter=500)
    return float(ncp * std / math.sqrt(n))


def holm(pvalues: Sequence[float | None]) -> list[float]:
    """Holm-Bonferroni adjusted p-values in the input order (step-down, monotone, capped at 1).

    Several methods are compared with one reference, so each raw p-value is adjusted for the others of its group;
    NaN (or None) entries, e.g. methods with too few seeds, stay NaN and do not count as tests.
    """
    raw = [NAN if p is None else float(p) for p in pvalues]
    for p in raw:
        if not math.isnan(p) and not 0 <= p <= 1:
            raise SynthmedError(f"p-values must be in [0, 1], got {p}; pass raw test p-values")
    order = sorted((i for i, p in enumerate(raw) if not math.isnan(p)), key=lambda i: raw[i])
    m = len(order)
    out = [NAN] * len(raw)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * raw[i]))
        out[i] = running
    return out


def holm_levels(pvalues: Sequence[float | None], alpha: float) -> list[float]:
    """Each test's Bonferroni-Holm step-down level: the k-th smallest p (k = 0, 1, ...) is tested at
    alpha / (m - k) while every smaller one was rejected; from the first acceptance on, every remaining test keeps
    the level of that step. An interval at level ``1 - level`` excludes its null exactly when Holm rejects it.
    NaN (or None) p-values are outside the family and get NaN."""
    raw = [NAN if p is None else float(p) for p in pvalues]
    order = sorted((i for i, p in enumerate(raw) if not math.isnan(p)), key=lambda i: raw[i])
    m = len(order)
    out = [NAN] * len(raw)
    stopped: float | None = None
    for rank, i in enumerate(order):
        level = alpha / (m - rank) if stopped is None else stopped
        if stopped is None and raw[i] > level:
            stopped = level
        out[i] = level
    return out


def look_alpha(alpha: float, looks: int) -> float:
    """The level of each look when ``alpha`` is split evenly (Bonferroni) over ``looks`` planned looks.

    Testing every look at alpha / looks keeps the chance of any false verdict at most alpha, however many of the
    planned looks actually happen before the comparison is decided.
    """
    if not 0 < alpha < 1:
        raise SynthmedError(f"alpha must be in (0, 1), got {alpha}; pass e.g. alpha=0.05")
    if int(looks) != looks or looks < 1:
        raise SynthmedError(f"looks must be a whole number >= 1, got {looks}; use planned_looks(...) to count them")
    return alpha / int(looks)


def planned_looks(start: int, max_seeds: int, step: int) -> int:
    """How many looks "add seeds until decided" plans: one after ``start`` seeds, then one per round of ``step``.

    Rounds of ``step`` seeds (one per worker) run until ``max_seeds``; a last partial round still gets a look, so
    the count is 1 + ceil((max_seeds - start) / step).
    """
    if start < 2:
        raise SynthmedError(f"start must be at least 2 seeds (a paired t-interval needs 2), got {start}")
    if step < 1:
        raise SynthmedError(f"step must be at least 1 seed per round, got {step}")
    if max_seeds < start:
        raise SynthmedError(f"max_seeds ({max_seeds}) must be at least start ({start}); raise max_seeds")
    if max_seeds == start:
        return 1
    return 1 + math.ceil((max_seeds - start) / step)


def _level_text(alpha: float) -> str:
    """The confidence level of a (1 - alpha) interval as short text: 95 for 0.05, 98.3 for 0.05 / 3."""
    level = 100 * (1 - alpha)
    text = ""
    for digits in range(1, 8):
        text = f"{level:.{digits}f}".rstrip("0").rstrip(".")
        if float(text) < 100:
            break
    return text


def _num(value: float) -> str:
    return f"{value:+.3f}"


#: How the undecided sentence names the level its detectable difference and seeds for equivalence are priced at.
PRICED_AT = {"holm": " at its Holm level", "bonferroni": " at the family's Bonferroni level"}


@dataclass(frozen=True)
class Comparison:
    """One method against a reference on paired seeds; every field is a plain, JSON-ready value (nan if undefined).

    ``t_low`` / ``t_high`` and ``tost_low`` / ``tost_high`` are unadjusted (shown, never deciding); ``holm_*`` are
    the same intervals at the comparison's Holm level ``level`` within its family, and they decide the verdict.
    ``n`` counts the units the interval is over: seeds, or generator fits (``unit``) when seeds share a generator,
    of ``pairs`` paired seeds. ``blocked`` says why the pairs cannot decide anything (e.g. mixed precision)."""

    method: str
    reference: str
    metric: str
    n: int
    mean: float
    std: float
    margin: float
    alpha: float
    t_low: float
    t_high: float
    boot_low: float
    boot_high: float
    intervals_disagree: bool
    tost_low: float
    tost_high: float
    p_value: float
    p_holm: float | None
    mde: float
    verdict: str
    p_tost: float = NAN
    p_tost_holm: float | None = None
    level: float = NAN
    holm_low: float = NAN
    holm_high: float = NAN
    holm_tost_low: float = NAN
    holm_tost_high: float = NAN
    family: int = 0
    pairs: int = 0
    unit: str = "seeds"
    reference_mean: float = NAN
    blocked: str = ""
    #: seeds (units) an equivalence verdict at the margin would need at this spread if the true difference were 0
    units_for_equivalence: int | None = None
    #: how ``mde`` and ``units_for_equivalence`` are priced: "" (alpha), "holm" (the comparison's Holm levels) or
    #: "bonferroni" (alpha / m of a family it is not in yet: too few units or blocked)
    priced_at: str = ""
    #: the seeds of the ``--seeds auto`` look that decided it, where that look came before the last seed: a
    #: decision is kept once made, so every number here is that look's (None: decided, or not, on all the seeds)
    decided_at: int | None = None

    @property
    def decided(self) -> bool:
        """True once the seeds give any verdict other than undecided (the stopping rule for adding seeds)."""
        return self.verdict in DECIDED

    @property
    def eligible(self) -> bool:
        """Whether the comparison may be decided at all, and so belongs to its report's Holm family."""
        return self.n >= MIN_PAIRS and not self.blocked and math.isfinite(self.p_value)

    def sentence(self, unit: str = "AUC") -> str:
        """One plain sentence of the verdict, the mean difference, its interval and the seed count."""
        seeds = _units_text(self.n, self.unit, self.pairs)
        level = _level_text(self.alpha)
        ci = f"[{level} % CI {_num(self.t_low)}, {_num(self.t_high)}]"
        diff = f"{_num(self.mean)} {unit} {ci} ({seeds})"
        margin = f"{self.margin:g} {unit}"
        m, r = self.method, self.reference
        if self.verdict == EQUIVALENT:
            text = f"{m} is equivalent to {r} within ±{margin} ({seeds})"
        elif self.verdict == BETTER:
            text = f"{m} is better than {r}: {diff}"
        elif self.verdict == WORSE:
            text = f"{m} is worse than {r}: {diff}"
        elif self.verdict == BETTER_WITHIN:
            text = f"{m} is better than {r}, by less than the margin of {margin}: {diff}"
        elif self.verdict == WORSE_WITHIN:
            text = f"{m} is worse than {r}, by less than the margin of {margin}: {diff}"
        elif self.n == 0:
            return f"{m} vs {r} is {self.verdict}: no paired seeds" + (f" ({self.blocked})" if self.blocked else "")
        elif self.n == 1:
            one = _units_text(1, self.unit, self.pairs)
            return f"{m} vs {r} is {self.verdict}: {_num(self.mean)} {unit} from {one}, too few for an interval"
        else:
            text = f"{m} vs {r} is {self.verdict}: {diff}"
        if self.blocked:
            text += f"; not decided: {self.blocked}"
        elif self.n < MIN_PAIRS:
            text += f"; not decided below {MIN_PAIRS} {self.unit}"
        if self.decided_at is not None:
            text += f"; decided at the look after {self.decided_at} seeds and kept (later seeds do not re-decide it)"
        if self.intervals_disagree:
            text += f"; the bootstrap interval [{_num(self.boot_low)}, {_num(self.boot_high)}] disagrees"
        if not self.decided and math.isfinite(self.mde):
            at = PRICED_AT.get(self.priced_at, "")
            text += f"; the seeds could detect a difference of {self.mde:.3f} {unit} with 80 % power{at}"
            if self.units_for_equivalence and self.units_for_equivalence > self.n:
                text += (
                    f"; at this spread about {self.units_for_equivalence} {self.unit} would show equivalence "
                    f"within ±{self.margin:g} {unit}{at} if the true difference were 0"
                )
        return text


def _units_text(n: int, unit: str, pairs: int) -> str:
    """``5 seeds``, or ``5 generator fits of 10 seeds`` when seeds share generators."""
    if unit == "seeds":
        return f"{n} seed" if n == 1 else f"{n} seeds"
    return f"{n} {unit[:-1] if n == 1 else unit} of {pairs} seeds"


def _bootstrap(diffs: np.ndarray, alpha: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Paired percentile bootstrap interval of the mean: resample the per-seed differences with replacement."""
    n = diffs.size
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_BLOCK // n)
    means = np.empty(n_boot)
    for lo in range(0, n_boot, rows):  # blocks of resamples, each block vectorised
        hi = min(n_boot, lo + rows)
        means[lo:hi] = diffs[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _verdict(t_low: float, t_high: float, tost_low: float, tost_high: float, margin: float) -> str:
    """The verdict of (Holm-adjusted) intervals: the difference interval against 0, the TOST one against the
    margin. NaN intervals (a comparison outside the family) decide nothing."""
    better = t_low > 0
    worse = t_high < 0
    equivalent = margin > 0 and -margin < tost_low and tost_high < margin
    if better:
        return BETTER_WITHIN if equivalent else BETTER
    if worse:
        return WORSE_WITHIN if equivalent else WORSE
    return EQUIVALENT if equivalent else UNDECIDED


def _tost_p(mean: float, std: float, n: int, margin: float) -> float:
    """p-value of two one-sided t-tests that the true difference lies inside (-margin, margin)."""
    if n < 2 or margin <= 0:
        return NAN if n < 2 else 1.0
    if std == 0:
        return 0.0 if abs(mean) < margin else 1.0
    se = std / math.sqrt(n)
    low = float(sps.t.sf((mean + margin) / se, n - 1))  # H0: difference <= -margin
    high = float(sps.t.cdf((mean - margin) / se, n - 1))  # H0: difference >= margin
    return max(low, high)


def cluster_means(diffs: Sequence[float] | np.ndarray, clusters: Sequence[Any] | None) -> np.ndarray:
    """The per-seed differences averaged within each cluster (a shared generator fit), in first-seen order; the
    units an interval is over when seeds are not independent. ``clusters=None``: every seed its own unit."""
    arr = np.asarray(list(diffs), dtype=float)
    if clusters is None:
        return arr
    if len(clusters) != arr.size:
        raise SynthmedError(f"{len(clusters)} cluster labels for {arr.size} differences; give one per seed")
    groups: dict[Any, list[float]] = {}
    for c, d in zip(clusters, arr):
        groups.setdefault(c, []).append(float(d))
    return np.array([np.mean(v) for v in groups.values()], dtype=float)


def compare(
    diffs: Iterable[float],
    method: str,
    reference: str,
    metric: str = "test_auc",
    margin: float = 0.01,
    alpha: float = 0.05,
    n_boot: int = 10000,
    seed: int = 0,
    clusters: Sequence[Any] | None = None,
    blocked: str = "",
) -> Comparison:
    """Verdict on paired per-seed differences ``method - reference`` (one per seed), as a family of one.

    better / worse when the (1 - alpha) t-interval excludes 0; equivalent when the (1 - 2 alpha) interval lies
    inside (-margin, margin) (two one-sided tests); both at once give the "by less than the margin" forms. Seeds
    that share a generator fit share a ``clusters`` label and are averaged into one unit first. Fewer than
    ``MIN_PAIRS`` units, or a ``blocked`` reason, leave it undecided. ``adjust`` re-decides it within a family.
    """
    if not math.isfinite(margin) or margin < 0:
        raise SynthmedError(f"margin must be a finite number >= 0, got {margin}; pass e.g. margin=0.01 (0 disables)")
    if not 0 < alpha < 0.5:
        raise SynthmedError(f"alpha must be in (0, 0.5), got {alpha}; pass e.g. alpha=0.05")
    if int(n_boot) != n_boot or n_boot < 1:
        raise SynthmedError(f"n_boot must be a whole number >= 1, got {n_boot}; pass e.g. n_boot=10000")
    raw = np.array([NAN if d is None else float(d) for d in diffs], dtype=float)
    if not np.all(np.isfinite(raw)):
        raise SynthmedError(
            f"{method} vs {reference}: paired differences must be finite numbers; "
            f"drop the seeds whose {metric} is missing"
        )
    arr = cluster_means(raw, clusters)
    n = int(arr.size)
    mean, std = _mean_std(arr)
    common: dict[str, Any] = dict(
        method=method,
        reference=reference,
        metric=metric,
        n=n,
        mean=mean,
        std=std,
        margin=float(margin),
        alpha=float(alpha),
        pairs=int(raw.size),
        unit="seeds" if clusters is None else "generator fits",
        blocked=blocked,
    )
    if n < 2:
        lone = Comparison(
            **common,
            t_low=NAN,
            t_high=NAN,
            boot_low=NAN,
            boot_high=NAN,
            intervals_disagree=False,
            tost_low=NAN,
            tost_high=NAN,
            p_value=NAN,
            p_holm=None,
            mde=NAN,
            verdict=UNDECIDED_FEW,
        )
        return adjust([lone])[0]
    half = _t_half(std, n, 1 - alpha)
    tost_half = _t_half(std, n, 1 - 2 * alpha)
    t_low, t_high = mean - half, mean + half
    tost_low, tost_high = mean - tost_half, mean + tost_half
    if std == 0:
        boot_low = boot_high = mean
        p_value = 0.0 if mean != 0 else 1.0
    else:
        boot_low, boot_high = _bootstrap(arr, alpha, int(n_boot), seed)
        t_stat = mean / (std / math.sqrt(n))
        p_value = float(min(1.0, 2 * sps.t.sf(abs(t_stat), n - 1)))
    t_excludes = t_low > 0 or t_high < 0
    boot_excludes = boot_low > 0 or boot_high < 0
    single = Comparison(
        **common,
        t_low=t_low,
        t_high=t_high,
        boot_low=boot_low,
        boot_high=boot_high,
        intervals_disagree=bool(t_excludes != boot_excludes),
        tost_low=tost_low,
        tost_high=tost_high,
        p_value=p_value,
        p_holm=None,
        mde=NAN,  # priced by adjust, at the level that decides the comparison
        verdict=UNDECIDED,
        p_tost=_tost_p(mean, std, n, float(margin)),
    )
    return adjust([single])[0]


def _at_level(c: Comparison, level: float, tost_level: float, p_holm: float, p_tost_holm: float, m: int) -> Comparison:
    """``c`` decided at its Holm levels: the t-interval at ``1 - level``, the TOST one at ``1 - 2 tost_level``. What
    the seeds could detect and the seeds an equivalence verdict needs are priced at the same levels: at the
    unadjusted level they would promise verdicts the family's rule cannot give."""
    half = _t_half(c.std, c.n, 1 - level)
    tost_half = _t_half(c.std, c.n, 1 - 2 * tost_level)
    low, high = c.mean - half, c.mean + half
    tost_low, tost_high = c.mean - tost_half, c.mean + tost_half
    return dataclasses.replace(
        c,
        level=level,
        holm_low=low,
        holm_high=high,
        holm_tost_low=tost_low,
        holm_tost_high=tost_high,
        p_holm=p_holm,
        p_tost_holm=p_tost_holm,
        family=m,
        verdict=_verdict(low, high, tost_low, tost_high, c.margin),
        **_priced(c, level, tost_level, "holm" if m > 1 else ""),
    )


def _priced(c: Comparison, level: float, tost_level: float, label: str) -> dict[str, Any]:
    """What ``c``'s seeds could detect at ``level`` and the seeds its TOST would need at ``tost_level``."""
    return {
        "mde": minimum_detectable_effect(c.std, c.n, level, 0.8),
        "units_for_equivalence": units_for_equivalence(c.std, c.margin, tost_level) if c.margin > 0 else None,
        "priced_at": label,
    }


def _outside(c: Comparison, m: int) -> Comparison:
    """A comparison outside the family: no adjusted interval, no adjusted p, never decided. What its seeds could
    detect and the seeds equivalence needs are priced at alpha / ``m`` (the family it would join, Bonferroni: the
    strictest Holm step), the advice for how many seeds to add."""
    priced = _priced(c, c.alpha / m, c.alpha / m, "bonferroni" if m > 1 else "") if c.n >= 2 else {}
    return dataclasses.replace(
        c,
        **priced,
        level=NAN,
        holm_low=NAN,
        holm_high=NAN,
        holm_tost_low=NAN,
        holm_tost_high=NAN,
        p_holm=None,
        p_tost_holm=None,
        family=0,
        verdict=f"undecided ({c.blocked})" if c.blocked else (UNDECIDED_FEW if c.n < MIN_PAIRS else UNDECIDED),
    )


def adjust(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons of one family (e.g. every comparison of a report), each re-decided at its Holm level.

    The family is the comparisons that may be decided (``eligible``: at least ``MIN_PAIRS`` units, not blocked);
    the others come back undecided with no adjusted p. Differences (better / worse) and equivalences are two
    families of hypotheses over the same comparisons, each stepped down over its own p-values, at the family's
    common ``alpha`` (that of the first comparison)."""
    inside = [i for i, c in enumerate(comparisons) if c.eligible]
    out = [c if c.eligible else _outside(c, len(inside) + 1) for c in comparisons]
    if not inside:
        return out
    alpha = comparisons[inside[0]].alpha
    family = [comparisons[i] for i in inside]
    p_diff, p_equiv = [c.p_value for c in family], [c.p_tost for c in family]
    levels, tost_levels = holm_levels(p_diff, alpha), holm_levels(p_equiv, alpha)
    adjusted, adjusted_tost = holm(p_diff), holm(p_equiv)
    for k, i in enumerate(inside):
        out[i] = _at_level(comparisons[i], levels[k], tost_levels[k], adjusted[k], adjusted_tost[k], len(inside))
    return out
