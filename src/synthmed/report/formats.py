"""How the report writes a number, an interval, a comparison and a difference: one place, so every table and page
reads alike."""

from __future__ import annotations

import math

from synthmed.report.stats import Comparison


def fmt_interval(mean_std_ci: tuple[float, float, float]) -> str:
    """``mean ± std [interval]``, the interval clipped to the metric's range [0, 1]."""
    mean, std, ci = mean_std_ci
    if math.isnan(mean):
        return "–"
    if math.isnan(std):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f} [{max(0.0, mean - ci):.3f}, {min(1.0, mean + ci):.3f}]"


def fmt_comparison(c: Comparison | None) -> str:
    """``+0.012 [-0.004, +0.028] undecided (Holm p 0.41)``: the unadjusted t-interval at the report's level (shown,
    not deciding), the verdict of the Holm-adjusted one, its adjusted p, and the units where they are not seeds."""
    if c is None:
        return ""
    if c.n == 0:
        return c.verdict if c.blocked else ""
    if c.n < 2:
        return f"{c.mean:+.3f} (n={c.n}) {c.verdict}"
    holm = "Holm p" if c.family > 1 else "p"  # a family of one: its adjusted p is its p
    notes = [f"{holm} {c.p_holm:.2g}"] if c.p_holm is not None else []
    if c.unit != "seeds":
        notes.append(f"n = {c.n} {c.unit}")
    if c.decided_at is not None:
        notes.append(f"decided at {c.decided_at} seeds")
    text = f"{c.mean:+.3f} [{max(-1.0, c.t_low):+.3f}, {min(1.0, c.t_high):+.3f}] {c.verdict}"
    if notes and text.endswith(")"):  # "undecided (n < 5)": one parenthesis for both
        return f"{text[:-1]}; {'; '.join(notes)})"
    return text + (f" ({'; '.join(notes)})" if notes else "")


def fmt_diff(diff: tuple | None) -> str:
    """``+0.012 [-0.004, +0.028]`` for an (mean, std, half-width, n) paired difference."""
    if not diff:
        return ""
    mean, _, ci, n = diff
    if math.isnan(ci):
        return f"{mean:+.3f} (n={n})"
    return f"{mean:+.3f} [{max(-1.0, mean - ci):+.3f}, {min(1.0, mean + ci):+.3f}]"


def fmt_mean_std(values: tuple[float, float, float], percent: bool = False) -> str:
    mean, std, _ = values
    if math.isnan(mean):
        return "–"
    if percent:
        return f"{mean * 100:.1f}" + ("" if math.isnan(std) else f" ± {std * 100:.1f}") + " %"
    return f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")


def epochs_text(row: dict) -> str:
    low, high = min(row["epochs"]), max(row["epochs"])
    return f"{low}-{high}" if low != high else str(low)


# ---------------------------------------------------------------------------------------------------- tables


def level_text(alpha: float) -> str:
    """The interval level for an error rate: 95 for 0.05, 98.3 for 0.05 / 3."""
    return f"{100 * (1 - alpha):.4g}"


def pair_text(first: tuple, second: tuple) -> str:
    """``12.0 % / 3.5 %`` of two (mean, std, ci) shares, means only."""
    return " / ".join("–" if math.isnan(v[0]) else f"{100 * v[0]:.1f} %" for v in (first, second))


def detectable_text(c: Comparison | None) -> str:
    """The detectable difference at 80 % power, and for an undecided row the seeds equivalence would need at the
    observed spread (``0.031; ~25 seeds for ±0.01``): what more seeds could buy."""
    if c is None or not math.isfinite(c.mde):
        return ""
    text = f"{c.mde:.3f}"
    if not c.decided and c.units_for_equivalence and c.units_for_equivalence > c.n:
        text += f"; ~{c.units_for_equivalence} {c.unit} for ±{c.margin:g}"
    return text


def per_class_text(n: float) -> str:
    if math.isinf(n):
        return "more than the curve's last point" if n > 0 else "fewer than the curve's first point"
    return f"{n:.0f}"
