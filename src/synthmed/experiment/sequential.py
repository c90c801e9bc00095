"""Seeds until decided (``--seeds auto --max-seeds N``): run a grid's seeds in rounds until every verdict of the
report (each row against ``none``, the copies and any third ``--reference``, and TSynD's claims where
the grid holds their rows) is decided, or N seeds are done.

Rule (written to ``sequential.json`` and the report's notes): the first look comes after ``start`` seeds, each
later look after ``step`` more (one per worker); with ``looks`` planned looks up to N seeds, every look, and every
interval of the final report, uses alpha / looks (Bonferroni over the planned looks). Looking as often as planned
therefore keeps the chance of a wrong verdict at most alpha, however early the rule stops. Verdicts are those of
``synthmed.report.stats.compare`` at the margin. A comparison decided at one look stays decided (``carried``): the
study waits only for those no look has decided yet, and the report shows the numbers of the look that decided it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmed.errors import SynthmedError
from synthmed.experiment.grid import Grid, expand
from synthmed.experiment.runner import Runner
from synthmed.io import atomic_write_json
from synthmed.report import SEQUENTIAL_FILE
from synthmed.report.stats import MIN_PAIRS, look_alpha, planned_looks

#: Seeds of the first look: no verdict is decided on fewer (``MIN_PAIRS``), so an earlier look would only spend
#: a share of alpha.
MIN_START = MIN_PAIRS


@dataclass
class Plan:
    max_seeds: int
    step: int
    margin: float = 0.01
    alpha: float = 0.05
    start: int = MIN_START
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.max_seeds < 2:
            raise SynthmedError(f"--max-seeds {self.max_seeds} must be at least 2 (an interval needs two seeds)")
        if not self.margin >= 0:
            raise SynthmedError(f"--margin {self.margin} must be >= 0 (an AUC difference, e.g. 0.01)")
        self.start = min(max(self.start, 2), self.max_seeds)
        self.step = max(1, self.step)

    @property
    def looks(self) -> int:
        return planned_looks(self.start, self.max_seeds, self.step)

    @property
    def look_alpha(self) -> float:
        return look_alpha(self.alpha, self.looks)


@dataclass
class Look:
    seeds: int
    undecided: list[str] = field(default_factory=list)  # "group: method vs reference" still undecided
    decided: list[str] | None = None  # the grid's other comparisons (None: a look recorded before they were kept)


def verdicts(runner: Runner, grid: Grid, plan: Plan) -> tuple[list[str], list[str]]:
    """The comparisons of the grid's rows (against ``none``, the copies and any third reference) and of TSynD's claims
    where the grid holds their rows, at the look's alpha, as "group: method vs reference" and "group: claim (metric)":
    those still undecided, and those decided."""
    from synthmed.report.claims import claim_comparisons, present_claims
    from synthmed.report.records import load_records
    from synthmed.report.summary import Settings, by_group, comparison_names, group_title, summarise

    ids = {runner.run_id(spec) for spec in expand(copy.deepcopy(grid))}
    records = [r for r in load_records(runner.out) if r["run_id"] in ids]
    rows = summarise(records, Settings(margin=plan.margin, alpha=plan.look_alpha, reference=plan.reference))
    named = list(comparison_names(rows).items())
    for key, group in by_group(rows).items():
        by_method = {row["method"]: row["runs"] for row in group}
        claims = [claim for claim, _, _ in present_claims(by_method)]
        for metric, comparisons in claim_comparisons(by_method, plan.margin, plan.look_alpha).items():
            measured = [(c, cmp) for c, cmp in zip(claims, comparisons) if cmp.n]  # n 0: not measured
            named += [(f"{group_title(key)}: {c} ({metric})", cmp) for c, cmp in measured]
    return [name for name, c in named if not c.decided], [name for name, c in named if c.decided]


def carried(look: Look, earlier: list[Look]) -> Look:
    """``look`` with every comparison an earlier look decided kept decided: a decision is made once, at the first
    look whose interval crosses its boundary, and later seeds do not undo it (the report shows that look's numbers
    for it), so a verdict cannot come and go from one look to the next."""
    judged = [*look.undecided, *(look.decided or [])]
    before = [  # a look recorded before ``decided`` was: every comparison not on its undecided list was decided
        name
        for lk in earlier
        for name in (lk.decided if lk.decided is not None else [n for n in judged if n not in lk.undecided])
    ]
    decided = list(dict.fromkeys([*(look.decided or []), *before]))
    return Look(look.seeds, [name for name in look.undecided if name not in decided], decided)


def recorded_plan(requested: Plan, recorded: dict | None, given: frozenset[str] = frozenset({"max_seeds"})) -> Plan:
    """The plan a study goes on with: the recorded one, for every field the command left out (``given`` names those
    it set: ``start``, ``max_seeds``, ``margin``, ``reference``, ``step``), so a step that came from ``--workers``
    (a lane of one worker on a study planned on two) does not change the plan. Before the first look a set field
    replaces the recorded one; once a look is recorded, changing the plan would change the alpha of the looks
    already made (a plan's looks share alpha), so a set field that differs from the record is refused."""
    if recorded is None:
        return requested
    names = {"start": "--min-seeds", "max_seeds": "--max-seeds", "margin": "--margin", "reference": "--reference"}
    names |= {"step": "--seed-step"}
    kept = {k: recorded[k] for k in names if k not in given and k in recorded}
    if not recorded.get("looks"):
        return dataclasses.replace(requested, **kept)
    wanted = _plan_fields(requested)
    differ = [
        f"{flag} {wanted[k]} (recorded: {recorded.get(k)})"
        for k, flag in names.items()
        if k in given and recorded.get(k) != wanted[k]
    ]
    if differ:
        looks = ", ".join(str(lk["seeds"]) for lk in recorded["looks"])
        raise SynthmedError(
            f"this study's --seeds auto plan is recorded with looks at {looks} seeds; this command asks for "
            f"{'; '.join(differ)}: give the recorded options (a new plan needs a new output folder)"
        )
    return dataclasses.replace(requested, **kept)


def run_until_decided(
    runner: Runner,
    grid: Grid,
    plan: Plan,
    execute_round: Callable[[Grid], Any],
    on_look: Callable[[Look], None] | None = None,
    resume_from: Path | None = None,
) -> dict:
    """Run rounds of seeds with ``execute_round(grid)`` (which runs the grid's pending runs) until decided; write
    and return the stopping record (``sequential.json``).

    The record is written before the first round and after every look, marked in progress, so a report of a study
    whose step ended by its time budget (or was killed) decides at the looks' alpha as the rule does, and a resumed
    command of the same plan goes on from its last look (the store's record, else that of the export it resumes
    from) instead of looking again at the same seeds."""
    looks = _earlier_looks(runner, plan, resume_from)
    seeds = plan.start
    if looks:  # resumed: the look after the last one; where the last one stopped the study, it is made again
        last = looks[-1]
        if last.undecided and last.seeds < plan.max_seeds:
            seeds = min(last.seeds + plan.step, plan.max_seeds)
        else:
            seeds = looks.pop().seeds
    _write(runner, plan, seeds, looks, "in progress: seeds are still being added")
    while True:
        grid.seeds = list(range(seeds))
        execute_round(grid)
        look = carried(Look(seeds, *verdicts(runner, grid, plan)), looks)
        looks.append(look)
        if on_look:
            on_look(look)
        if not look.undecided:
            reason = f"every verdict (against none, the copies and any third reference) was decided by {seeds} seeds"
            break
        if seeds >= plan.max_seeds:
            reason = f"--max-seeds {plan.max_seeds} reached with {len(look.undecided)} verdict(s) still undecided"
            break
        _write(runner, plan, seeds, looks, "in progress: seeds are still being added")
        seeds = min(seeds + plan.step, plan.max_seeds)
    return _write(runner, plan, seeds, looks, reason)


def _plan_fields(plan: Plan) -> dict:
    return {
        "rule": "Bonferroni over planned looks",
        "alpha": plan.alpha,
        "planned_looks": plan.looks,
        "look_alpha": plan.look_alpha,
        "start": plan.start,
        "step": plan.step,
        "max_seeds": plan.max_seeds,
        "margin": plan.margin,
        "reference": plan.reference,
    }


def _earlier_looks(runner: Runner, plan: Plan, resume_from: Path | None) -> list[Look]:
    """The looks an earlier command of the same plan recorded (a step resumed after its budget, on this machine or
    from this study's export on another), else none."""
    from synthmed.experiment.export import study_plan

    earlier = study_plan(runner.out, resume_from)
    if earlier is None or {k: earlier.get(k) for k in _plan_fields(plan)} != _plan_fields(plan):
        return []
    return [Look(lk["seeds"], list(lk["undecided"]), lk.get("decided")) for lk in earlier.get("looks", [])]


def _write(runner: Runner, plan: Plan, seeds: int, looks: list[Look], reason: str) -> dict:
    stop = {
        **_plan_fields(plan),
        "seeds": seeds,
        "reason": reason,
        "looks": [
            {"seeds": lk.seeds, "undecided": lk.undecided, **({} if lk.decided is None else {"decided": lk.decided})}
            for lk in looks
        ],
    }
    runner.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(runner.out / SEQUENTIAL_FILE, stop)
    return stop


def progress_line(stop: dict, counted: str = "the file's own seeds") -> str:
    """A ``sequential.json`` record in one line (``experiment status``): the plan, the looks so far and where it
    stands; ``counted`` says what the status table above it counted."""
    from synthmed.report.summary import looks_decided

    first = dict(looks_decided(stop["looks"]))

    def undecided(look: dict) -> int:  # a decision is kept: a look recorded before that still counts it decided
        return sum(1 for name in look["undecided"] if first.get(name) is None or first[name] > look["seeds"])

    made = ", ".join(f"{lk['seeds']} ({undecided(lk)} undecided)" for lk in stop["looks"])
    looks = f"at seeds {made}" if made else "none yet"
    single = len({name.split(": ", 1)[0] for name in first}) == 1  # one group: its title left out
    decided = "; ".join(
        f"{name.split(': ', 1)[-1] if single else name} (at {seeds})" for name, seeds in first.items() if seeds
    )
    return (
        f"--seeds auto: {stop['planned_looks']} planned looks at alpha {stop['look_alpha']:.4g}, from "
        f"{stop['start']} to {stop['max_seeds']} seeds; looks so far: {looks}"
        + (f"; decided: {decided}" if decided else "")
        + f"; {stop['reason']} (the counts above are {counted})"
    )


def look_line(look: Look) -> str:
    """A look of ``--seeds auto`` for the log: how many comparisons are undecided (the first three named) and which
    are decided."""
    undecided = "; ".join(look.undecided[:3]) + ("..." if len(look.undecided) > 3 else "")
    line = f"look at {look.seeds} seeds: {len(look.undecided)} verdict(s) undecided" + (
        f" ({undecided})" if look.undecided else ""
    )
    if look.decided is not None:
        line += f", {len(look.decided)} decided" + (f" ({'; '.join(look.decided)})" if look.decided else "")
    return line
