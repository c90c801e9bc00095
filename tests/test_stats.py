"""synthmed.report.stats: intervals, power, Holm, sequential looks and paired verdicts against hand computations."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from synthmed.errors import SynthmedError
from synthmed.report.stats import (
    BETTER,
    BETTER_WITHIN,
    EQUIVALENT,
    UNDECIDED,
    UNDECIDED_FEW,
    VERDICTS,
    WORSE,
    WORSE_WITHIN,
    adjust,
    cluster_means,
    compare,
    holm,
    holm_levels,
    interval,
    look_alpha,
    minimum_detectable_effect,
    planned_looks,
)


def _around(mean: float, sd: float, n: int, seed: int = 0) -> np.ndarray:
    """n values with exactly this sample mean and sample std (so verdicts do not hinge on a random draw)."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


def _power(ncp: float, n: int, alpha: float) -> float:
    df = n - 1
    crit = sps.t.ppf(1 - alpha / 2, df)
    # lower tail as 1 - sf: nct.cdf itself can return NaN far in the lower tail for small df
    return float(sps.nct.sf(crit, df, ncp) + (1 - sps.nct.sf(-crit, df, ncp)))


# --- interval ---------------------------------------------------------------------------------------------------------


def test_interval_matches_hand_computation_and_ignores_missing():
    values = [0.71, 0.74, None, 0.69, float("nan"), 0.73]
    kept = np.array([0.71, 0.74, 0.69, 0.73])
    mean, std, half = interval(values)
    assert mean == pytest.approx(kept.mean())
    assert std == pytest.approx(kept.std(ddof=1))
    assert half == pytest.approx(sps.t.ppf(0.975, 3) * kept.std(ddof=1) / 2)
    _, _, half90 = interval(values, level=0.9)
    assert half90 == pytest.approx(sps.t.ppf(0.95, 3) * kept.std(ddof=1) / 2)
    assert half90 < half


def test_interval_empty_and_single():
    assert all(math.isnan(x) for x in interval([]))
    assert all(math.isnan(x) for x in interval([None, float("nan")]))
    mean, std, half = interval([0.8])
    assert mean == 0.8 and math.isnan(std) and math.isnan(half)


def test_interval_identical_values_have_zero_width():
    assert interval([0.1, 0.1, 0.1]) == (0.1, 0.0, 0.0)


def test_interval_bad_level():
    with pytest.raises(SynthmedError, match="level"):
        interval([1.0, 2.0], level=95)


# --- minimum detectable effect ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_mde_has_the_requested_power(n, alpha):
    std = 0.012
    effect = minimum_detectable_effect(std, n, alpha, 0.8)
    ncp = effect * math.sqrt(n) / std
    assert _power(ncp, n, alpha) == pytest.approx(0.8, abs=1e-6)
    # a slightly smaller effect has less power: the root is the smallest one
    assert _power(0.99 * ncp, n, alpha) < 0.8


@pytest.mark.parametrize("n", [3, 10])
def test_mde_counts_both_tails(n):
    # at a power just above alpha the effect is small and the wrong-sign tail carries real probability
    effect = minimum_detectable_effect(0.01, n, 0.05, 0.1)
    assert _power(effect * math.sqrt(n) / 0.01, n, 0.05) == pytest.approx(0.1, abs=1e-6)
    assert minimum_detectable_effect(0.01, n, 0.05, 0.04) == 0.0  # alpha alone already has that power


def test_mde_approaches_the_normal_formula_for_large_n():
    std, n = 0.02, 5000
    normal = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * std / math.sqrt(n)
    effect = minimum_detectable_effect(std, n)
    assert effect == pytest.approx(normal, rel=1e-3)
    assert effect > normal  # the t-test needs a little more than the z-test


def test_mde_shrinks_with_more_seeds_and_scales_with_std():
    assert (
        minimum_detectable_effect(0.01, 5) > minimum_detectable_effect(0.01, 10) > minimum_detectable_effect(0.01, 40)
    )
    assert minimum_detectable_effect(0.02, 7) == pytest.approx(2 * minimum_detectable_effect(0.01, 7))


def test_mde_edge_cases():
    assert math.isnan(minimum_detectable_effect(0.01, 1))
    assert math.isnan(minimum_detectable_effect(float("nan"), 10))
    assert math.isnan(minimum_detectable_effect(float("inf"), 10))
    assert minimum_detectable_effect(0.0, 10) == 0.0
    with pytest.raises(SynthmedError, match="power"):
        minimum_detectable_effect(0.01, 10, power=1.0)
    with pytest.raises(SynthmedError, match="alpha"):
        minimum_detectable_effect(0.01, 10, alpha=0.0)


# --- holm -------------------------------------------------------------------------------------------------------------


def test_holm_hand_computation():
    # sorted: 0.005 * 4 = 0.02; 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_keeps_nan_and_does_not_count_it():
    out = holm([0.01, float("nan"), 0.04, None])
    assert math.isnan(out[1]) and math.isnan(out[3])
    assert out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)


def test_holm_caps_at_one_and_handles_empty():
    assert holm([0.5, 0.6, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([]) == []
    assert holm([0.03]) == pytest.approx([0.03])
    with pytest.raises(SynthmedError, match="p-values"):
        holm([0.1, 1.5])


# --- sequential looks -------------------------------------------------------------------------------------------------


def test_planned_looks_values():
    assert planned_looks(3, 3, 2) == 1
    assert planned_looks(3, 5, 2) == 2
    assert planned_looks(3, 6, 2) == 3  # 3 -> 5 -> 6: a partial last round still gets a look
    assert planned_looks(5, 20, 5) == 4
    assert planned_looks(2, 10, 1) == 9


def test_look_alpha_values():
    assert look_alpha(0.05, 1) == 0.05
    assert look_alpha(0.05, 4) == pytest.approx(0.0125)
    assert look_alpha(0.05, planned_looks(5, 20, 5)) == pytest.approx(0.05 / 4)


@pytest.mark.parametrize(
    ("args", "word"),
    [((1, 10, 2), "start"), ((3, 10, 0), "step"), ((5, 4, 1), "max_seeds")],
)
def test_planned_looks_bad_input(args, word):
    with pytest.raises(SynthmedError, match=word):
        planned_looks(*args)


@pytest.mark.parametrize(("alpha", "looks", "word"), [(0.0, 2, "alpha"), (1.0, 2, "alpha"), (0.05, 0, "looks")])
def test_look_alpha_bad_input(alpha, looks, word):
    with pytest.raises(SynthmedError, match=word):
        look_alpha(alpha, looks)


# --- compare: verdicts ------------------------------------------------------------------------------------------------


def test_clearly_better():
    c = compare(_around(0.05, 0.005, 10), "flip", "none")
    assert c.verdict == BETTER and c.decided
    assert c.t_low > 0 and c.p_value < 1e-6
    assert c.n == 10 and c.mean == pytest.approx(0.05) and c.std == pytest.approx(0.005)


def test_clearly_worse():
    c = compare(_around(-0.05, 0.005, 10), "cvae", "none")
    assert c.verdict == WORSE and c.t_high < 0 and c.decided


def test_equivalent():
    c = compare(_around(0.0005, 0.001, 10), "dcgan", "none", margin=0.01)
    assert c.verdict == EQUIVALENT and c.decided
    assert -0.01 < c.tost_low < c.tost_high < 0.01
    # without a margin equivalence cannot be claimed
    assert compare(_around(0.0005, 0.001, 10), "dcgan", "none", margin=0.0).verdict == UNDECIDED


def test_better_and_worse_by_less_than_the_margin():
    assert compare(_around(0.004, 0.001, 20), "flip", "none").verdict == BETTER_WITHIN
    assert compare(_around(-0.004, 0.001, 20), "flip", "none").verdict == WORSE_WITHIN
    # the same differences against a margin they exceed are plainly better
    assert compare(_around(0.004, 0.001, 20), "flip", "none", margin=0.003).verdict == BETTER


def test_undecided_with_three_noisy_diffs():
    c = compare([0.03, -0.02, 0.01], "tsynd", "none")
    assert c.verdict == UNDECIDED_FEW and not c.decided
    assert c.t_low < 0 < c.t_high
    assert c.mde > 0 and math.isfinite(c.mde)
    assert c.mde == pytest.approx(minimum_detectable_effect(c.std, 3, 0.05, 0.8))


def test_one_and_zero_seeds_are_undecided():
    one = compare([0.02], "a", "none")
    assert one.verdict == UNDECIDED_FEW and one.n == 1 and one.mean == 0.02
    assert all(
        math.isnan(getattr(one, f)) for f in ("std", "t_low", "t_high", "boot_low", "tost_high", "p_value", "mde")
    )
    zero = compare([], "a", "none")
    assert zero.verdict == UNDECIDED_FEW and zero.n == 0 and math.isnan(zero.mean)


def test_identical_diffs_collapse_the_intervals():
    c = compare([0.02] * 5, "a", "none")
    assert (c.t_low, c.t_high, c.tost_low, c.tost_high, c.boot_low, c.boot_high) == (0.02,) * 6
    assert c.std == 0.0 and c.p_value == 0.0 and c.verdict == BETTER and c.mde == 0.0
    assert compare([0.005] * 5, "a", "none").verdict == BETTER_WITHIN
    zero = compare([0.0] * 5, "a", "none")
    assert zero.p_value == 1.0 and zero.verdict == EQUIVALENT
    assert compare([0.0] * 5, "a", "none", margin=0.0).verdict == UNDECIDED


# --- compare: intervals and p-value -----------------------------------------------------------------------------------


def test_t_and_tost_intervals_match_hand_computation():
    diffs = [0.012, -0.003, 0.020, 0.007, 0.015]
    arr = np.array(diffs)
    mean, sd, n = arr.mean(), arr.std(ddof=1), len(diffs)
    c = compare(diffs, "a", "none", alpha=0.05)
    h95 = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    h90 = sps.t.ppf(0.95, n - 1) * sd / math.sqrt(n)
    assert (c.t_low, c.t_high) == pytest.approx((mean - h95, mean + h95))
    assert (c.tost_low, c.tost_high) == pytest.approx((mean - h90, mean + h90))
    assert c.p_value == pytest.approx(sps.ttest_1samp(arr, 0.0).pvalue)
    c10 = compare(diffs, "a", "none", alpha=0.1)
    h80 = sps.t.ppf(0.9, n - 1) * sd / math.sqrt(n)
    assert (c10.tost_low, c10.tost_high) == pytest.approx((mean - h80, mean + h80))


def test_bootstrap_is_reproducible_for_a_seed():
    diffs = [0.012, -0.003, 0.020, 0.007, 0.015, 0.001]
    a = compare(diffs, "a", "none", seed=3)
    b = compare(diffs, "a", "none", seed=3)
    other = compare(diffs, "a", "none", seed=4)
    assert (a.boot_low, a.boot_high) == (b.boot_low, b.boot_high)
    assert (a.boot_low, a.boot_high) != (other.boot_low, other.boot_high)
    assert min(diffs) <= a.boot_low < np.mean(diffs) < a.boot_high <= max(diffs)


def test_bootstrap_is_close_to_the_t_interval_for_a_large_normal_sample():
    diffs = np.random.default_rng(7).normal(0.01, 0.02, size=400)
    c = compare(diffs, "a", "none", n_boot=4000)
    width = c.t_high - c.t_low
    assert abs(c.boot_low - c.t_low) < 0.1 * width
    assert abs(c.boot_high - c.t_high) < 0.1 * width
    assert not c.intervals_disagree


def test_intervals_disagree_on_three_seeds():
    # t-interval (df 2) is wide and holds 0; every bootstrap mean of 0.01 / 0.02 / 0.03 is >= 0.01
    c = compare([0.01, 0.02, 0.03], "a", "none")
    assert c.t_low < 0 < c.boot_low
    assert c.intervals_disagree
    assert not compare([0.03, -0.02, 0.01], "a", "none").intervals_disagree


def test_comparison_is_json_ready_and_frozen():
    c = compare(_around(0.05, 0.005, 10), "flip", "none")
    data = dataclasses.asdict(c)
    json.dumps(data)
    assert data["verdict"] in VERDICTS and type(data["intervals_disagree"]) is bool and type(data["n"]) is int
    assert all(type(data[k]) is float for k in ("mean", "std", "t_low", "boot_high", "p_value", "mde"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.verdict = "worse"  # type: ignore[misc]


def test_adjust_fills_holm_over_the_decidable_comparisons_only():
    comps = [compare(d, m, "none") for m, d in (("a", [0.03, -0.02, 0.01]), ("b", _around(0.05, 0.005, 10)))]
    assert comps[0].p_holm is None and comps[1].p_holm == pytest.approx(comps[1].p_value)  # a family of one
    c = _around(0.01, 0.02, 8)
    out = adjust([*comps, compare(c, "c", "none")])
    assert out[0].p_holm is None and out[0].family == 0 and out[0].verdict == UNDECIDED_FEW  # 3 seeds: outside
    assert [o.p_holm for o in out[1:]] == pytest.approx(holm([comps[1].p_value, compare(c, "c", "none").p_value]))
    assert [c.method for c in out] == ["a", "b", "c"] and out[1].family == 2


# --- compare: bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"margin": -0.01}, "margin"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 0.5}, "alpha"),
        ({"n_boot": 0}, "n_boot"),
    ],
)
def test_compare_bad_arguments(kwargs, word):
    with pytest.raises(SynthmedError, match=word) as info:
        compare([0.01, 0.02, 0.03], "a", "none", **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_compare_non_finite_diffs(bad):
    with pytest.raises(SynthmedError, match="finite"):
        compare([0.01, bad, 0.03], "a", "none")


# --- sentences --------------------------------------------------------------------------------------------------------


def test_sentences_for_each_verdict():
    cases = [
        (
            compare(_around(0.0005, 0.001, 10), "dcgan", "none"),
            EQUIVALENT,
            "dcgan is equivalent to none within ±0.01 AUC",
        ),
        (compare(_around(-0.021, 0.01, 5), "cvae", "none"), WORSE, "cvae is worse than none: -0.021 AUC [95 % CI"),
        (compare(_around(0.05, 0.005, 10), "gan", "none"), BETTER, "gan is better than none: +0.050 AUC [95 % CI"),
        (
            compare(_around(0.004, 0.001, 12), "flip", "none"),
            BETTER_WITHIN,
            "flip is better than none, by less than the margin of 0.01 AUC: +0.004",
        ),
        (
            compare(_around(-0.004, 0.001, 12), "flip", "none"),
            WORSE_WITHIN,
            "flip is worse than none, by less than the margin of 0.01 AUC: -0.004",
        ),
        (compare([0.03, -0.02, 0.01], "tsynd", "none"), UNDECIDED_FEW, "tsynd vs none is undecided (n < 5): +0.007"),
    ]
    for c, verdict, start in cases:
        assert c.verdict == verdict
        text = c.sentence()
        assert text.startswith(start), text
        assert f"({c.n} seeds)" in text
        assert "bootstrap" not in text
    undecided = cases[-1][0].sentence()
    assert f"could detect a difference of {cases[-1][0].mde:.3f} AUC with 80 % power" in undecided


def test_sentence_level_unit_bootstrap_and_few_seeds():
    c = compare([0.01, 0.02, 0.03], "tsynd", "none", alpha=0.05 / 3)
    text = c.sentence(unit="ACC")
    assert "[98.3 % CI" in text and "ACC" in text and "AUC" not in text
    assert f"the bootstrap interval [{c.boot_low:+.3f}, {c.boot_high:+.3f}] disagrees" in text
    assert "1 seed" in compare([0.02], "a", "none").sentence()
    assert "no paired seeds" in compare([], "a", "none").sentence()


# --- Holm decides, the minimum of seeds, generator fits -------------------------------------------------------------


def test_holm_decides_a_family_where_the_raw_interval_excludes_0_and_the_adjusted_one_does_not():
    edge = [0.010, 0.018, 0.0, 0.012, 0.016, 0.002]  # p = 0.023: the raw 95 % interval lies above 0
    noise = [0.01, -0.01, 0.02, -0.02, 0.0, 0.005]  # p = 0.89
    alone = compare(edge, "ddpm", "oversample")
    assert alone.t_low > 0 and alone.verdict == BETTER  # a family of one: Holm changes nothing
    family = adjust([alone] + [compare(noise, f"m{i}", "none") for i in range(4)])
    ddpm = family[0]
    assert ddpm.t_low > 0 and ddpm.p_value < 0.05 < ddpm.p_holm  # shown raw interval excludes 0 ...
    assert ddpm.holm_low < 0 < ddpm.holm_high and ddpm.verdict == UNDECIDED  # ... the adjusted one decides
    assert ddpm.level == pytest.approx(0.05 / 5) and ddpm.family == 5
    assert ddpm.p_holm == pytest.approx(5 * ddpm.p_value)


def test_holm_levels_step_down_and_match_the_adjusted_p_values():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    levels = holm_levels(p, 0.05)
    assert levels == pytest.approx([0.05 / 4, 0.05 / 3, 0.05 / 3, 0.05 / 5, 0.05 / 3])  # stops at 0.03
    assert [pi <= level for pi, level in zip(p, levels)] == [a <= 0.05 for a in holm(p)]
    assert math.isnan(holm_levels([0.01, None], 0.05)[1])


def test_equivalence_is_decided_on_holm_adjusted_tost():
    close = _around(0.0, 0.012, 6)  # equivalent at 90 % on its own, not at a level split 20 ways
    alone = compare(close, "a", "none")
    assert alone.verdict == EQUIVALENT
    crowd = adjust([alone] + [compare(_around(0.03, 0.05, 6), f"m{i}", "none") for i in range(19)])
    assert crowd[0].p_tost_holm > 0.05 and crowd[0].verdict == UNDECIDED


def test_fewer_than_five_units_or_a_blocked_pair_are_never_decided():
    assert compare([0.05, 0.051, 0.052, 0.053], "a", "none").verdict == UNDECIDED_FEW
    assert compare([0.05, 0.051, 0.052, 0.053, 0.054], "a", "none").verdict == BETTER
    blocked = compare([0.05, 0.051, 0.052, 0.053, 0.054], "a", "none", blocked="mixed precision")
    assert blocked.verdict == "undecided (mixed precision)" and not blocked.decided and blocked.p_holm is None
    assert "not decided: mixed precision" in blocked.sentence()


def test_seeds_sharing_a_generator_fit_are_one_unit():
    diffs = [0.02, 0.03, 0.01, 0.02, 0.04, 0.03, 0.02]  # 7 seeds over 5 generator fits (seed mod 5)
    fits = [s % 5 for s in range(7)]
    assert cluster_means(diffs, fits).tolist() == pytest.approx([0.025, 0.025, 0.01, 0.02, 0.04])
    c = compare(diffs, "conv-cvae", "none", clusters=fits)
    assert (c.n, c.pairs, c.unit) == (5, 7, "generator fits")
    assert c.mean == pytest.approx(0.024) and "5 generator fits of 7 seeds" in c.sentence()
    assert compare(diffs[:4], "a", "none", clusters=[0, 0, 1, 1]).verdict == UNDECIDED_FEW


def test_the_seeds_an_equivalence_verdict_needs_give_it_80_percent_power():
    """At the count the rule gives, TOST at the margin decides equivalence in about 80 % of simulated studies whose
    true difference is 0; at half that count, far fewer. The undecided sentence quotes the count."""
    from synthmed.report.stats import compare, units_for_equivalence

    sd, margin = 0.014, 0.01
    n = units_for_equivalence(sd, margin)
    assert n == 19 and units_for_equivalence(0.04, margin) > 100

    def power(k: int) -> float:
        rng = np.random.default_rng(0)
        diffs = rng.normal(0.0, sd, size=(4000, k))
        half = sps.t.ppf(0.95, k - 1) * diffs.std(axis=1, ddof=1) / np.sqrt(k)
        mean = diffs.mean(axis=1)
        return float(np.mean((mean - half > -margin) & (mean + half < margin)))

    assert 0.75 <= power(n) <= 0.9 and power(n // 2) < 0.5
    c = compare(list(np.random.default_rng(1).normal(0.0, sd, 6)), "flip", "none", margin=margin)
    assert not c.decided and c.units_for_equivalence and f"about {c.units_for_equivalence} seeds" in c.sentence()


def test_what_an_undecided_comparison_could_detect_is_priced_at_its_holm_level():
    """In a family, the detectable difference and the seeds for equivalence are those of the comparison's own Holm
    levels (what the rule can decide), never the unadjusted test's, which promises verdicts the family cannot give."""
    from synthmed.report.stats import units_for_equivalence

    rng = np.random.default_rng(3)
    few = compare(list(rng.normal(0.0, 0.02, 3)), "few", "none", margin=0.01)  # too few seeds to join the family
    family = adjust([compare(list(rng.normal(0.0, 0.02, 10)), f"m{i}", "none", margin=0.01) for i in range(8)] + [few])
    tost_levels = holm_levels([c.p_tost for c in family[:8]], 0.05)
    for c, tost_level in zip(family[:8], tost_levels):
        assert c.family == 8 and not c.decided
        assert c.mde == pytest.approx(minimum_detectable_effect(c.std, c.n, c.level, 0.8))
        assert c.mde > minimum_detectable_effect(c.std, c.n, c.alpha, 0.8)
        assert c.units_for_equivalence == units_for_equivalence(c.std, 0.01, tost_level)
        assert c.units_for_equivalence > units_for_equivalence(c.std, 0.01, c.alpha)
        assert "80 % power at its Holm level" in c.sentence()
    outside = family[8]  # priced at the strictest step of the family it would join: alpha / 9
    assert outside.family == 0 and outside.mde == pytest.approx(minimum_detectable_effect(outside.std, 3, 0.05 / 9))
    assert outside.units_for_equivalence == units_for_equivalence(outside.std, 0.01, 0.05 / 9)
    assert "at the family's Bonferroni level" in outside.sentence()
