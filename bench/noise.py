"""The noise floor of a comparison, and which way of choosing and scoring the final weights lowers it.

Issue "ten seeds that decide": for each candidate protocol, ``none`` and ``oversample`` at seeds 100-109 (never the
study's seeds) on BreastMNIST and PneumoniaMNIST lowdata, the mean test AUC, its SD, the paired SD of
Δ(oversample − none), CPU seconds per run, the seeds an 80 %-power equivalence verdict at ±0.01 AUC would need, and
the CPU hours to that verdict.

Candidates that share a training trajectory are read out of the same run, so they cost no training of their own:
one trajectory (ResNet-18 (28), the medmnist recipe at 20 epochs, bf16, no early stop) is trained once per
(set, method, seed, ensemble member), and a ``Probe`` beside the trainer keeps

- the live weights, two EMAs of the weights (decay 0.9 and 0.98 per step) and SWA over the last half of the epochs;
- for each, the epoch each selection rule keeps (best validation AUC, lowest validation loss, the last), scored on
  validation with and without flip test-time averaging; today's protocol is the live weights, best validation AUC,
  early stop at patience 8 (read off the same validation scores, so its cost counts only the epochs it trains);
- the test probabilities of every candidate, so an ensemble of K members is the mean over K trajectories.

    .venv/bin/python bench/noise.py --workers 2 --time-budget 4800      # trains what is missing, then summarises
    .venv/bin/python bench/noise.py --summarise                          # bench/results/noise.json only

Each finished trajectory is written at once (``bench/results/noise/*.json`` + ``.probs.jsonl``), so a killed or
time-limited bench resumes where it stopped; the summary counts what is there. Trajectories run interleaved
(seed-major, both sets and both methods), so machine noise and an early stop hit every candidate alike.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import multiprocessing.pool
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT_DIR = ROOT / "results" / "noise"
SUMMARY = ROOT / "results" / "noise.json"
SETS = ("breastmnist", "pneumoniamnist")
METHODS = ("none", "oversample")
SEEDS = tuple(range(100, 110))
EPOCHS, PATIENCE = 20, 8
#: the largest ensemble summarised (members 0 .. MAX_MEMBERS - 1 where trained), and of how many candidates
MAX_MEMBERS, ENSEMBLED = 3, 3
EMA_DECAYS = (0.9, 0.98)
SWA_FRACTION = 0.5
MARGIN, ALPHA, POWER = 0.01, 0.05, 0.8
#: today's protocol (the committed study's): medmnist recipe, 20 epochs, patience 8, best validation AUC
TODAY = "live auc patience8"


@dataclass
class Candidate:
    """One way to pick the final weights from a trajectory: which weights, which selection rule, early stop."""

    weights: str  # live | ema0.9 | ema0.98 | swa0.5
    rule: str  # auc | loss | last
    patience: int | None = None
    best: tuple[float, float] | None = None
    epoch: int = 0
    stale: int = 0
    stopped_at: int | None = None

    @property
    def name(self) -> str:
        return f"{self.weights} {self.rule}" + (f" patience{self.patience}" if self.patience else "")


@dataclass
class NoiseProbe:
    """Keeps EMAs and the SWA average beside the live weights, scores each on validation every epoch (with and
    without flip TTA) and snapshots the weights each candidate would keep. Counts its own CPU time apart."""

    x_val: object
    y_val: np.ndarray
    task: str
    precision: str
    flips: tuple[str, ...]
    candidates: dict[tuple[str, bool], list[Candidate]] = field(default_factory=dict)
    snapshots: dict[tuple[str, int], dict] = field(default_factory=dict)
    probe_cpu: float = 0.0
    epoch_cpu: list[float] = field(default_factory=list)
    val_cpu_per_readout: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.emas: dict = {}
        self.swa: Any = None  # a WeightSWA once training starts
        self._last = time.process_time()
        for tta in (False, True):
            cands = [Candidate("live", rule) for rule in ("auc", "loss", "last")]
            if not tta:
                cands.append(Candidate("live", "auc", PATIENCE))
            for decay in EMA_DECAYS:
                cands += [Candidate(f"ema{decay:g}", rule) for rule in ("auc", "loss", "last")]
            self.candidates[("all", tta)] = cands

    def start(self, model) -> None:
        from synthmed.train.averaging import WeightEMA, WeightSWA

        self.emas = {f"ema{d:g}": WeightEMA(model, d) for d in EMA_DECAYS}
        self.swa = WeightSWA(model, SWA_FRACTION, EPOCHS)

    def step(self, model) -> None:
        t = time.process_time()
        if self.swa is None:  # the averages start from the network after its first step
            self.start(model)
        for ema in self.emas.values():
            ema.step(model)
        self.probe_cpu += time.process_time() - t

    def epoch(self, model, epoch: int) -> None:
        from synthmed.train.trainer import improves

        t0 = time.process_time()
        self.epoch_cpu.append(t0 - self._last)  # the epoch's training steps (and EMA updates, counted apart)
        assert self.swa is not None
        self.swa.epoch_end(model, epoch)
        networks = {"live": model, **{name: ema.network() for name, ema in self.emas.items()}}
        scores: dict[tuple[str, bool], dict] = {}
        for name, network in networks.items():  # each network's val probabilities once, with and without TTA
            t = time.process_time()
            plain, flipped = views(network, self.x_val, self.task, self.precision, self.flips)
            scores[(name, False)] = _probs_scored(self.y_val, plain, self.task)
            scores[(name, True)] = _probs_scored(self.y_val, flipped, self.task)
            self.val_cpu_per_readout.append(time.process_time() - t)
        for (_, tta), cands in self.candidates.items():
            for cand in cands:
                if cand.stopped_at is not None:
                    continue
                m = scores[(cand.weights, tta)]
                key = (m["auc"], m["loss"])
                if improves(cand.rule, key, cand.best):
                    cand.best, cand.epoch, cand.stale = key, epoch, 0
                    snap = (cand.weights, epoch)
                    if snap not in self.snapshots:
                        self.snapshots[snap] = copy.deepcopy(networks[cand.weights].state_dict())
                else:
                    cand.stale += 1
                if cand.patience is not None and cand.stale >= cand.patience:
                    cand.stopped_at = epoch
        self._drop_unused()
        model.train()
        t1 = time.process_time()
        self.probe_cpu += t1 - t0
        self._last = t1

    def _f(self, tta: bool) -> tuple[str, ...]:
        return self.flips if tta else ()

    def _drop_unused(self) -> None:
        used = {(c.weights, c.epoch) for cands in self.candidates.values() for c in cands}
        for snap in list(self.snapshots):
            if snap not in used:
                del self.snapshots[snap]


def views(network, x, task: str, precision: str, flips: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of ``network`` on ``x`` as is, and averaged over ``x`` and its flips (TTA), from one forward
    pass per view (so TTA costs one pass per flip on top)."""
    from synthmed.data.flips import flip
    from synthmed.nets.classifiers import predict

    plain = predict(network, x, task, precision)[0].numpy()
    flipped = [predict(network, flip(x, f), task, precision)[0].numpy() for f in flips]
    return plain, np.mean([plain, *flipped], axis=0)


def _probs_scored(labels: np.ndarray, probs: np.ndarray, task: str) -> dict:
    from synthmed.train.trainer import _scored

    return _scored(labels, probs, task)


def _member_seed(seed: int, k: int) -> int:
    from synthmed.train.trainer import member_seed

    return member_seed(seed, k)


def trajectory(dataset: str, method: str, seed: int, member: int, data_root: str, out_dir: Path | None = None) -> dict:
    """Train one trajectory and read every candidate out of it; returns the record and writes the probabilities."""
    import torch

    from synthmed.augment import create_augmenter
    from synthmed.data import load_dataset, make_subset
    from synthmed.data.flips import label_preserving_flips
    from synthmed.experiment.synthetic_set import synthetic_counts
    from synthmed.metrics.classification import classification_metrics
    from synthmed.nets.classifiers import build_classifier
    from synthmed.tensors import to_tensor
    from synthmed.train.averaging import batches
    from synthmed.train.recipes import get_recipe
    from synthmed.train.trainer import TrainConfig, train_classifier

    torch.set_num_threads(1)
    started_cpu, started = time.process_time(), time.perf_counter()
    data = load_dataset(dataset, data_root=data_root)
    subset = make_subset(data, "lowdata", seed=seed)
    synthetic = None
    if method == "oversample":
        counts = synthetic_counts(subset.train.labels, data.n_classes)
        copies = create_augmenter("oversample").fit(subset.train.images, subset.train.labels, seed=seed)
        synthetic = copies.sample(counts, seed=seed)
    flips = label_preserving_flips(data.name)
    x_val, x_test = to_tensor(subset.val.images), to_tensor(subset.test.images)
    probe = NoiseProbe(x_val, subset.val.labels, data.task, "bf16", flips)
    recipe = get_recipe("medmnist", EPOCHS)
    config = TrainConfig(recipe, "resnet18", None, False, "cpu", "bf16")
    run_seed = _member_seed(seed, member)

    fit = train_classifier(
        subset.train,
        subset.val,
        subset.test,
        data.n_classes,
        data.task,
        config,
        seed=run_seed,
        synthetic=synthetic,
        probe=probe,
    )
    # SWA: the average of the last half of the epochs, BatchNorm statistics from the training images
    t = time.process_time()
    x_train = torch.cat([to_tensor(subset.train.images)] + ([to_tensor(synthetic[0])] if synthetic else []))
    assert probe.swa is not None
    swa_net = probe.swa.finish(batches(x_train, 128), torch.device("cpu"))
    swa_bn_cpu = time.process_time() - t
    net = build_classifier("resnet18", x_val.shape[1], data.n_classes, data.size)
    net = net.to(memory_format=torch.channels_last)

    def test_views(state_or_net) -> tuple[np.ndarray, np.ndarray]:
        model = state_or_net
        if isinstance(state_or_net, dict):
            net.load_state_dict(state_or_net)
            model = net
        return views(model, x_test, data.task, "bf16", flips)

    readouts: dict[str, dict] = {}
    arrays: dict[str, np.ndarray] = {}
    cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    t = time.process_time()
    for (_, tta), cands in probe.candidates.items():
        for cand in cands:
            key = (cand.weights, cand.epoch)
            if key not in cache:
                cache[key] = test_views(probe.snapshots[key])
            name = cand.name + (" +tta" if tta else "")
            arrays[name] = cache[key][int(tta)]
            readouts[name] = _scores(subset.test.labels, arrays[name], data.task, classification_metrics)
            assert cand.best is not None  # every candidate is scored from the first epoch on
            readouts[name].update(epoch=cand.epoch, epochs_trained=cand.stopped_at or EPOCHS, val_auc=cand.best[0])
    swa_val = views(swa_net, x_val, data.task, "bf16", flips)
    swa_test = test_views(swa_net)
    for tta in (False, True):
        name = f"swa{SWA_FRACTION:g} last" + (" +tta" if tta else "")
        arrays[name] = swa_test[int(tta)]
        readouts[name] = _scores(subset.test.labels, arrays[name], data.task, classification_metrics)
        readouts[name].update(
            epoch=EPOCHS,
            epochs_trained=EPOCHS,
            val_auc=classification_metrics(subset.val.labels, swa_val[int(tta)], data.task)["auc"],
        )
    test_cpu = time.process_time() - t
    n_val_evals = len(probe.val_cpu_per_readout)
    record = {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "member": member,
        "run_seed": run_seed,
        "task": data.task,
        "n_train": len(subset.train),
        "n_synthetic": 0 if synthetic is None else len(synthetic[1]),
        "n_val": len(subset.val),
        "n_test": len(subset.test),
        "precision": fit.precision,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "epoch_train_cpu": probe.epoch_cpu,
        # one network's validation score, one forward per view (plain + each flip)
        "val_eval_cpu_mean": float(np.mean(probe.val_cpu_per_readout)) / (1 + len(flips)) if n_val_evals else 0.0,
        "n_views": 1 + len(flips),
        "ema_update_cpu": probe.probe_cpu - sum(probe.val_cpu_per_readout),
        "swa_bn_cpu": swa_bn_cpu,
        "test_cpu_per_readout": test_cpu / (len(cache) + 1) / (1 + len(flips)),  # one forward of the test split
        "total_cpu": time.process_time() - started_cpu,
        "wall": time.perf_counter() - started,
        "readouts": readouts,
    }
    name = f"{dataset}-{method}-s{seed}-m{member}"
    from synthmed.io import atomic_write_json

    out_dir = out_dir or OUT_DIR
    save_probs(out_dir / f"{name}.probs.jsonl", subset.test.labels, arrays)
    atomic_write_json(out_dir / f"{name}.json", record)  # last: a record means both files are whole
    return record


def save_probs(path: Path, labels: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
    """Each candidate's test probabilities as text (what its ensembles average): a line with the labels, then one
    line per candidate with P(class 1) to 4 decimals (binary sets: the other column is its complement)."""
    from synthmed.io import atomic_write_text

    lines = [json.dumps({"labels": labels.reshape(-1).tolist()})]
    lines += [
        json.dumps({"readout": k, "p1": np.round(v[:, -1].astype(np.float64), 4).tolist()}) for k, v in arrays.items()
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


def load_probs(path: Path) -> dict[str, np.ndarray]:
    """``save_probs``'s file as {"labels": (n,), readout: (n, 2) probabilities}."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    out = {"labels": np.array(rows[0]["labels"])}
    for row in rows[1:]:
        p1 = np.array(row["p1"], dtype=np.float64)
        out[row["readout"]] = np.stack([1 - p1, p1], axis=1)
    return out


def _scores(labels: np.ndarray, probs: np.ndarray, task: str, metrics) -> dict:
    m = metrics(labels, probs, task)
    return {"test_auc": m["auc"], "test_acc": m["acc"]}


# ------------------------------------------------------------------------------------------------------ summary


def seeds_needed(sd: float, margin: float = MARGIN, alpha: float = ALPHA, power: float = POWER) -> int:
    """Pairs an equivalence verdict at ``margin`` needs at this paired SD (the report's own rule)."""
    from synthmed.report.stats import units_for_equivalence

    return units_for_equivalence(sd, margin, alpha, power)


def candidate_cost(record: dict, name: str) -> float:
    """CPU seconds a run of this candidate costs on its own: the training epochs it needs, its EMA updates, one
    validation score per epoch (two forwards with TTA, since a flip doubles the images), the SWA BatchNorm pass,
    and one test score."""
    readout = record["readouts"][name]
    epochs = readout["epochs_trained"]
    ema_share = len(EMA_DECAYS)
    cost = sum(record["epoch_train_cpu"][:epochs])
    tta = name.endswith("+tta")
    if name.startswith("ema"):
        cost += record["ema_update_cpu"] / ema_share * epochs / EPOCHS
    if name.startswith("swa"):
        cost += record["swa_bn_cpu"]
    cost += epochs * record["val_eval_cpu_mean"]
    cost += record["test_cpu_per_readout"] * (2 if tta else 1)
    return cost


def summarise() -> dict:
    from synthmed.metrics.classification import classification_metrics

    records = [json.loads(p.read_text()) for p in sorted(OUT_DIR.glob("*.json"))]
    by_key = {(r["dataset"], r["method"], r["seed"], r["member"]): r for r in records}
    names = sorted({n for r in records for n in r["readouts"]})
    out: dict = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "protocol": {
            "trajectory": f"resnet18 (28), medmnist recipe, {EPOCHS} epochs, bf16, one thread per run",
            "today": TODAY,
            "seeds": list(SEEDS),
            "margin": MARGIN,
            "alpha": ALPHA,
            "power": POWER,
        },
        "sets": {},
    }
    for dataset in SETS:
        table: dict = {}
        for name in names:
            row = _candidate_row(by_key, dataset, name, 1, classification_metrics)
            if row is not None:
                table[name] = row
        out["sets"][dataset] = table
    # ensembles of the best single-model candidates by the rule (the three cheapest to a verdict among those
    # within 0.005 of today's mean AUC, whose order the noise of 10 seeds may swap) and of today's: K members
    # averaged, K x the cost per run
    singles = _both(out["sets"])
    eligible = [n for n, v in singles.items() if v["none_mean_auc_drop_vs_today"] <= 0.005]
    best = sorted(eligible, key=lambda n: singles[n]["cpu_hours_to_verdict"])[:ENSEMBLED]
    for dataset in SETS:
        for name in sorted({*best, TODAY}):
            for k in range(2, MAX_MEMBERS + 1):
                row = _candidate_row(by_key, dataset, name, k, classification_metrics)
                if row is not None and row["n_pairs"] >= 2:
                    out["sets"][dataset][f"{name} ensemble{k}"] = row
            split = _noise_split(by_key, dataset, name, classification_metrics)
            if split is not None:
                out.setdefault("noise_split", {}).setdefault(dataset, {})[name] = split
    out["both"] = _both(out["sets"])
    out["chosen"] = _choose(out)
    return out


def _noise_split(by_key: dict, dataset: str, name: str, metrics) -> dict | None:
    """What an ensemble can and cannot remove from the paired spread, measured on the seeds with two members:
    Var(Δ, K members) = rest + training / K, where *training* is the variance one trajectory's initialisation and
    batch order add (what averaging members removes) and *rest* what the seed's data (its subset, its copies)
    adds beyond it. From K = 1 and K = 2 on the same seeds: training = 2 (V1 − V2), rest = 2 V2 − V1; the predicted
    paired SD, seeds and CPU hours of K = 3 (cost 3 x a member) follow. Beside it, the spread another test set of
    the same size would add (the bootstrap), which no seed count removes from a study's figures."""
    one = _candidate_row(by_key, dataset, name, 1, metrics, members_present=2)
    two = _candidate_row(by_key, dataset, name, 2, metrics)
    if one is None or two is None or not one.get("paired_sd_oversample") or not two.get("paired_sd_oversample"):
        return None
    v1, v2 = one["paired_sd_oversample"] ** 2, two["paired_sd_oversample"] ** 2
    training, rest = max(0.0, 2 * (v1 - v2)), max(0.0, 2 * v2 - v1)
    sd3 = math.sqrt(rest + training / 3)
    n3 = seeds_needed(sd3) if sd3 > 0 else None
    per_member = one["cpu_s_per_run"]
    return {
        "pairs": two["n_pairs"],
        "paired_sd_k1": one["paired_sd_oversample"],
        "paired_sd_k2": two["paired_sd_oversample"],
        "training_share_of_variance_k1": training / v1 if v1 else None,
        "sd_training": math.sqrt(training),
        "sd_rest": math.sqrt(rest),
        "test_sampling_sd_of_diff": one.get("test_sampling_sd_of_diff"),
        "predicted_paired_sd_k3": sd3,
        "predicted_seeds_needed_k3": n3,
        "predicted_cpu_hours_to_verdict_k3": None if n3 is None else n3 * 3 * per_member * 2 / 3600,
        "seeds_needed_k1_same_seeds": one.get("seeds_needed"),
        "cpu_hours_to_verdict_k1_same_seeds": one.get("cpu_hours_to_verdict"),
    }


def _candidate_row(
    by_key: dict, dataset: str, name: str, k: int, metrics, members_present: int | None = None
) -> dict | None:
    """The figures of ``name`` with ``k`` members per run, over the seeds where they exist (``members_present``:
    only over the seeds that have that many members, so K = 1 and K = 2 compare on the same seeds)."""
    aucs: dict[str, dict[int, float]] = {m: {} for m in METHODS}
    costs: list[float] = []
    for method in METHODS:
        for seed in SEEDS:
            found = [by_key.get((dataset, method, seed, j)) for j in range(max(k, members_present or 0))]
            if any(m is None or name not in m["readouts"] for m in found):
                continue
            members: list[dict] = [m for m in found[:k] if m is not None]
            if k == 1:
                aucs[method][seed] = members[0]["readouts"][name]["test_auc"]
            else:
                probs = [load_probs(OUT_DIR / f"{dataset}-{method}-s{seed}-m{j}.probs.jsonl") for j in range(k)]
                mean = np.mean([p[name] for p in probs], axis=0)
                aucs[method][seed] = metrics(probs[0]["labels"], mean, members[0]["task"])["auc"]
            costs += [float(sum(candidate_cost(m, name) for m in members))]
    none = aucs["none"]
    if len(none) < 2:
        return None
    images = [
        by_key[(dataset, method, seed, 0)]["n_train"] + by_key[(dataset, method, seed, 0)]["n_synthetic"]
        for method in METHODS
        for seed in aucs[method]
    ]
    paired = sorted(set(none) & set(aucs["oversample"]))
    diffs = np.array([aucs["oversample"][s] - none[s] for s in paired])
    values = np.array(list(none.values()))
    row = {
        "members": k,
        "n_none": len(none),
        "n_pairs": len(paired),
        "none_mean_auc": float(values.mean()),
        "none_sd": float(values.std(ddof=1)),
        "oversample_mean_auc": float(np.mean(list(aucs["oversample"].values()))) if aucs["oversample"] else None,
        "paired_sd_oversample": float(diffs.std(ddof=1)) if len(diffs) >= 2 else None,
        "mean_diff_oversample": float(diffs.mean()) if len(diffs) else None,
        "cpu_s_per_run": float(np.mean(costs)),
        # training images per CPU second over the whole run (evaluation and averaging included)
        "train_images_per_cpu_s": float(np.mean(images))
        * _epochs_trained(by_key, dataset, name)
        * k
        / float(np.mean(costs)),
    }
    if k == 1 and len(paired) >= 2:
        row["test_sampling_sd_of_diff"] = _test_sampling_sd(dataset, name, paired)
    if row["paired_sd_oversample"]:
        n = seeds_needed(row["paired_sd_oversample"])
        row["seeds_needed"] = n
        row["cpu_hours_to_verdict"] = n * float(np.mean(costs)) * 2 / 3600
    return row


def _epochs_trained(by_key: dict, dataset: str, name: str) -> float:
    runs = [r for (d, _, _, j), r in by_key.items() if d == dataset and j == 0 and name in r["readouts"]]
    return float(np.mean([r["readouts"][name]["epochs_trained"] for r in runs]))


def _test_sampling_sd(dataset: str, name: str, seeds: list[int], n_boot: int = 200) -> float:
    """The SD of Δ(oversample − none) that drawing another test set of the same size would add, by a paired
    bootstrap of the test images (mean over seeds). The seeds share one official test split, so this part is not
    in the seed-to-seed spread; it says how far the study's figures could move on other patients."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    sds = []
    for seed in seeds:
        a = load_probs(OUT_DIR / f"{dataset}-oversample-s{seed}-m0.probs.jsonl")
        b = load_probs(OUT_DIR / f"{dataset}-none-s{seed}-m0.probs.jsonl")
        labels, pa, pb = a["labels"].reshape(-1), a[name][:, -1], b[name][:, -1]
        diffs = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(labels), len(labels))
            if len(np.unique(labels[idx])) == 2:
                diffs.append(roc_auc_score(labels[idx], pa[idx]) - roc_auc_score(labels[idx], pb[idx]))
        sds.append(float(np.std(diffs, ddof=1)))
    return float(np.mean(sds))


def _both(sets: dict) -> dict:
    """CPU hours to a verdict on both sets together, per candidate present in both."""
    common = set.intersection(*(set(t) for t in sets.values())) if sets else set()
    out = {}
    for name in sorted(common):
        rows = [sets[d][name] for d in sets]
        if all("cpu_hours_to_verdict" in r for r in rows):
            out[name] = {
                "cpu_hours_to_verdict": sum(r["cpu_hours_to_verdict"] for r in rows),
                "none_mean_auc_drop_vs_today": max(
                    sets[d].get(TODAY, {}).get("none_mean_auc", math.nan) - sets[d][name]["none_mean_auc"] for d in sets
                ),
            }
    return out


def _choose(summary: dict) -> dict | None:
    """The rule of the issue: fewest CPU hours to a verdict on both sets, among candidates whose mean ``none`` test
    AUC is no more than 0.005 below today's on either set."""
    both = summary["both"]
    eligible = {n: v for n, v in both.items() if v["none_mean_auc_drop_vs_today"] <= 0.005}
    if not eligible or TODAY not in both:
        return None
    best = min(eligible, key=lambda n: eligible[n]["cpu_hours_to_verdict"])
    return {
        "candidate": best,
        "cpu_hours_to_verdict": eligible[best]["cpu_hours_to_verdict"],
        "today_cpu_hours_to_verdict": both[TODAY]["cpu_hours_to_verdict"],
        "fraction_of_today": eligible[best]["cpu_hours_to_verdict"] / both[TODAY]["cpu_hours_to_verdict"],
    }


# ------------------------------------------------------------------------------------------------------ markdown

MARK_START, MARK_END = "<!-- noise table -->", "<!-- /noise table -->"


def markdown(summary: dict) -> str:
    """The docs table: per candidate and set, the mean ``none`` test AUC (SD), the paired SD of Δ(oversample −
    none), the seeds an equivalence verdict needs, CPU seconds per run, and the CPU hours to a verdict on both."""
    sets = summary["sets"]
    names = sorted(
        {n for t in sets.values() for n in t},
        key=lambda n: summary["both"].get(n, {}).get("cpu_hours_to_verdict", math.inf),
    )
    head = (
        "| candidate | "
        + " | ".join(f"{d}: none AUC (SD), n | paired SD Δ, pairs | seeds needed | CPU s / run" for d in SETS)
        + " | CPU h to a verdict, both sets |"
    )
    lines = [head, "|---" * (1 + 4 * len(SETS) + 1) + "|"]
    for name in names:
        cells = [f"`{name}`" + (" (today)" if name == TODAY else "")]
        for d in SETS:
            r = sets.get(d, {}).get(name)
            if r is None:
                cells += ["", "", "", ""]
                continue
            sd = r.get("paired_sd_oversample")
            cells += [
                f"{r['none_mean_auc']:.3f} ({r['none_sd']:.3f}), {r['n_none']}",
                f"{sd:.3f}, {r['n_pairs']}" if sd is not None else "",
                str(r.get("seeds_needed", "")),
                f"{r['cpu_s_per_run']:.0f}",
            ]
        both = summary["both"].get(name, {}).get("cpu_hours_to_verdict")
        cells.append(f"{both:.1f}" if both is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _split_table(summary.get("noise_split") or {}))


def _split_table(split: dict) -> list[str]:
    """Where the paired spread comes from (``_noise_split``): one trajectory's training noise, the rest, and the
    test set's sampling, with what an ensemble of 3 is predicted to cost."""
    if not split:
        return []
    lines = [
        "",
        "| set, candidate | pairs | paired SD, K = 1 / K = 2 | SD from training (init, batch order) | SD of the rest "
        "| test-set sampling SD | K = 3 predicted: paired SD, seeds, CPU h | K = 1 on these seeds: seeds, CPU h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset, by_name in split.items():
        for name, r in by_name.items():
            n3, h3 = r["predicted_seeds_needed_k3"], r["predicted_cpu_hours_to_verdict_k3"]
            test_sd = r["test_sampling_sd_of_diff"]
            lines.append(
                f"| {dataset}, `{name}` | {r['pairs']} | {r['paired_sd_k1']:.4f} / {r['paired_sd_k2']:.4f} "
                f"| {r['sd_training']:.4f} | {r['sd_rest']:.4f} | {'' if test_sd is None else f'{test_sd:.4f}'} "
                f"| {r['predicted_paired_sd_k3']:.4f}, {n3}, {'' if h3 is None else f'{h3:.1f}'} "
                f"| {r['seeds_needed_k1_same_seeds']}, {r['cpu_hours_to_verdict_k1_same_seeds']:.1f} |"
            )
    return lines


def update_docs(path: Path, summary: dict) -> None:
    """Put the table between the markers of ``path`` (docs/benchmarks.md)."""
    text = path.read_text()
    start, end = text.index(MARK_START) + len(MARK_START), text.index(MARK_END)
    path.write_text(text[:start] + "\n" + markdown(summary) + "\n" + text[end:])


# ------------------------------------------------------------------------------------------------------- driver


def _worker(job: tuple) -> str:
    dataset, method, seed, member, root, out_dir = job
    record = trajectory(dataset, method, seed, member, root, out_dir)
    return f"{dataset} {method} seed {seed} member {member}: {record['total_cpu']:.0f} CPU s"


def jobs(members: int, root: str) -> list[tuple]:
    """Missing trajectories: every seed's first member first (the single-model candidates), then the other members
    seed by seed (so ensembles cover whole seeds as early as possible); both sets and methods interleaved."""
    order = [(seed, 0) for seed in SEEDS] + [(seed, k) for seed in SEEDS for k in range(1, members)]
    out = []
    for seed, member in order:
        for dataset in SETS:
            for method in METHODS:
                if not (OUT_DIR / f"{dataset}-{method}-s{seed}-m{member}.json").exists():
                    out.append((dataset, method, seed, member, root, OUT_DIR))
    return out


def run_jobs(todo: list[tuple], workers: int, deadline: float | None) -> None:
    """Keep ``workers`` trajectories running; start one only if the longest seen so far would end by the deadline
    (a trajectory in flight at the deadline is left to finish; ``timeout`` outside is the hard stop)."""
    ctx = multiprocessing.get_context("spawn")
    longest = 0.0
    with ctx.Pool(workers, maxtasksperchild=1) as pool:
        running: list[tuple[float, multiprocessing.pool.AsyncResult]] = []
        queue = list(todo)
        while queue or running:
            while queue and len(running) < workers:
                if deadline is not None and time.monotonic() + longest > deadline:
                    print(f"time budget: {len(queue)} trajectories left for the next invocation", flush=True)
                    queue.clear()
                    break
                running.append((time.monotonic(), pool.apply_async(_worker, (queue.pop(0),))))
            time.sleep(1.0)
            for item in [r for r in running if r[1].ready()]:
                running.remove(item)
                longest = max(longest, time.monotonic() - item[0])
                print(item[1].get(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--members", type=int, default=3, help="ensemble members per (set, method, seed)")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds; no trajectory starts after it")
    parser.add_argument("--summarise", action="store_true", help="only write the summary")
    parser.add_argument("--docs", type=Path, default=None, help="also put the table into this page's markers")
    parser.add_argument("--out", type=Path, default=None, help="folder of the per-trajectory files")
    parser.add_argument("--data-root", default=os.environ.get("SYNTHMED_DATA", "/work/shared/data/medmnist"))
    args = parser.parse_args()
    global OUT_DIR
    OUT_DIR = (args.out or OUT_DIR).resolve()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if not args.summarise:
        todo = jobs(args.members, args.data_root)
        deadline = None if args.time_budget is None else time.monotonic() + args.time_budget
        print(f"{len(todo)} trajectories to train", flush=True)
        run_jobs(todo, args.workers, deadline)
    from synthmed.io import atomic_write_json

    summary = summarise()
    atomic_write_json(SUMMARY, summary)
    if args.docs is not None:
        update_docs(args.docs, summary)
    print(json.dumps(summary["both"], indent=1), json.dumps(summary["chosen"], indent=1), sep="\n")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT.parent / "src"))
    main()
