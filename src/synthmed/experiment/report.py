"""Reports from the results store: Markdown, self-contained HTML (plots embedded) and JSON.

Per (dataset, protocol, classifier, recipe) and method: mean ± std over seeds, a 95 % t-interval for
test AUC and ACC, the difference to ``none`` paired by seed (with its interval; "within noise" when the
interval covers 0), the optimistic test-selected figure when runs used ``--paper-style``, and the
seed papers' published numbers beside ours.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from synthmed.data.medmnist import medmnist_class_names
from synthmed.errors import SynthmedError
from synthmed.experiment.files import atomic_write_bytes, atomic_write_text
from synthmed.experiment.papers import published
from synthmed.experiment.store import ResultStore


def load_records(out: str | Path) -> list[dict]:
    path = Path(out) / "results.sqlite"
    if not path.exists():
        raise SynthmedError(f"{path} does not exist; run `synthmed run ... --out {out}` first")
    with ResultStore(path) as store:
        return store.records()


def _with_history(records: list[dict], out: Path) -> list[dict]:
    """Attach each run's per-epoch history: from its record, else from runs/RUN_ID/history.json."""
    for r in records:
        history = (r.get("metrics") or {}).get("history")
        path = out / "runs" / r["run_id"] / "history.json"
        if history is None and path.exists():
            history = json.loads(path.read_text())
        r["history"] = history or []
    return records


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample std and the half-width of a 95 % t-interval (NaN half-width for one value)."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(arr) == 0:
        return math.nan, math.nan, math.nan
    if len(arr) == 1:
        return float(arr[0]), math.nan, math.nan
    std = float(arr.std(ddof=1))
    return float(arr.mean()), std, float(stats.t.ppf(0.975, len(arr) - 1) * std / math.sqrt(len(arr)))


def protocol_label(record: dict) -> str:
    """``lowdata``, ``lowdata 50/class``, ``fraction 0.05 stratified``, ``full`` (+ the image size if not 28)."""
    config = record["config"]
    label = record["protocol"]
    if label == "lowdata" and config.get("per_class"):
        label += f" {config['per_class']}/class"
    if label == "fraction":
        label += f" {config.get('fraction'):g}" + (" stratified" if config.get("stratified") else "")
    if config.get("size", 28) != 28:
        label += f" {config['size']}px"
    return label


def classifier_label(record: dict) -> str:
    """``resnet18``, or ``resnet18 dropout 0.2`` when the head had dropout (TSynD comparisons)."""
    dropout = record["config"].get("dropout") or 0
    return record["classifier"] + (f" dropout {dropout:g}" if dropout else "")


#: Lever fields of a run's config and how the method label shows a non-default value.
LEVERS = (("synthetic_per_class", "{}/class"), ("synthetic_ratio", "ratio {:g}"), ("balance", "balance"),
          ("synthetic_weight", "weight {:g}"), ("min_confidence", "conf≥{:g}"), ("finetune_epochs", "ft {}"),
          ("generator_seed", "gseed {}"))
LEVER_DEFAULTS = {"synthetic_weight": 1.0, "finetune_epochs": 0, "balance": False}


def method_label(record: dict, params: bool = True) -> str:
    """``cvae``, or with its non-default levers and (unless ``params=False``) hyper-parameters:
    ``cvae weight 0.5 ft 5 epochs=100``."""
    config = record["config"]
    parts = [record["method"]]
    for key, fmt in LEVERS:
        value = config.get(key)
        if value is not None and value != LEVER_DEFAULTS.get(key):
            parts.append(fmt.format(value))
    if params:
        parts.append(params_label(config))
    return " ".join(part for part in parts if part)


def params_label(config: dict) -> str:
    """A run's generator hyper-parameters that differ from the preset: ``epochs=20 lr=0.0001`` (or "")."""
    return " ".join(f"{k}={v}" for k, v in sorted((config.get("method_params") or {}).items()))


def summarise(records: list[dict]) -> list[dict]:
    """One row per (dataset, protocol with its parameters, classifier, recipe, method with its levers)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], protocol_label(r), classifier_label(r), r["recipe"], method_label(r))].append(r)
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: (kv[0][:4], kv[0][4] != "none", kv[0][4])):
        dataset, protocol, classifier, recipe, method = key
        row = {"dataset": dataset, "protocol": protocol, "classifier": classifier,
               "recipe": recipe, "method": method, "lever_label": method_label(runs[0], params=False),
               "params": params_label(runs[0]["config"]),
               "n": len(runs), "seeds": sorted(r["seed"] for r in runs),
               "epochs": sorted({r["epochs_run"] for r in runs}), "time": sum(r["total_time"] for r in runs)}
        for metric in ("test_auc", "test_acc", "val_auc", "paper_test_auc", "paper_test_acc"):
            row[metric] = interval([r[metric] for r in runs])
        base = {r["seed"]: r for r in groups.get((*key[:4], "none"), [])}
        if method != "none" and base:
            for metric in ("test_auc", "test_acc"):
                diffs = [r[metric] - base[r["seed"]][metric] for r in runs if r["seed"] in base]
                row[f"diff_{metric}"] = (*interval(diffs), len(diffs))
        plain = method == runs[0]["method"]  # no lever changed: the paper's setting
        row["published"] = published(dataset, protocol, method) if classifier == "resnet18" and plain else None
        row["synthetic"] = _synthetic_summary(runs)
        row["grid"] = _first_grid(runs)
        rows.append(row)
    return rows


def _synthetic_summary(runs: list[dict]) -> dict | None:
    """Mean audit figures of the runs' synthetic sets (None for methods that generate nothing)."""
    parts = [(r.get("metrics") or {}).get("synthetic") for r in runs]
    parts = [p for p in parts if p]
    if not parts:
        return None

    def values(key: str) -> list[float]:
        return [p[key] for p in parts if p.get(key) is not None]

    fit_seconds = [p["generator_seconds"] for p in parts if not p.get("generator_cached")]

    flags: dict[str, int] = defaultdict(int)
    for p in parts:
        for flag in p["flags"]:
            flags[flag] += 1
    return {"n": len(parts), "per_run": parts[0]["n"], "fidelity": interval(values("fidelity")),
            "reference_acc": interval(values("reference_test_acc")),
            "near_copy": interval(values("near_copy_share")), "held_out": interval(values("held_out_near_copy_share")),
            "diversity": interval(values("min_diversity")), "kept": interval(values("kept_share")),
            "candidates": interval(values("fidelity_candidates")),
            "fid": interval(values("fid")), "kid": interval(values("kid")), "precision": interval(values("precision")),
            "recall": interval(values("recall")), "coverage": interval(values("coverage")),
            "fid_over_epochs": [p["fid_over_epochs"] for p in parts if p.get("fid_over_epochs")],
            "generator_s": interval(fit_seconds), "flags": dict(flags),
            "reconstructions": any(p["reconstructions_by_design"] for p in parts)}


def _first_grid(runs: list[dict]) -> str | None:
    """Relative path of the image grid of the lowest seed's run, if it has one."""
    for r in sorted(runs, key=lambda r: r["seed"]):
        if (r.get("metrics") or {}).get("synthetic"):
            return f"runs/{r['run_id']}/synthetic_grid.png"
    return None


FIGURE_CAPTIONS = {"grid": "image grid, top row real", "tsne": "t-SNE of in-domain features, real vs synthetic",
                   "fid": "FID / KID over generator training"}


def _figures(out: Path, row: dict) -> list[tuple[str, str]]:
    """(kind, relative path) of the lowest seed's figures that exist: grid, t-SNE, FID over epochs."""
    if not row.get("grid"):
        return []
    found = [(kind, row["grid"].replace("_grid.png", f"_{kind}.png")) for kind in FIGURE_CAPTIONS]
    return [(kind, path) for kind, path in found if (out / path).exists()]


def _table(caption: str, header: list[str], cells: list[list[str]]) -> tuple[list[str], str]:
    """One table as Markdown lines and as HTML, under a one-line caption."""
    md = [caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
          *["| " + " | ".join(c) + " |" for c in cells], ""]
    page = (f"<p>{html.escape(caption)}</p><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
            + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                                for row in cells) + "</table>")
    return md, page


def _fid_over_epochs(rows: list[dict]) -> tuple[list[str], str]:
    """Markdown and HTML tables of mean FID / KID per tracked epoch and method (seed 002's Table 4)."""
    series = {}
    for row in rows:
        by_epoch: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for tracked in row["synthetic"]["fid_over_epochs"]:
            for point in tracked:
                by_epoch[point["epoch"]].append((point["fid"], point["kid"]))
        if by_epoch:
            series[row["method"]] = {e: (np.mean([f for f, _ in v]), np.mean([k for _, k in v]))
                                     for e, v in sorted(by_epoch.items())}
    if not series:
        return [], ""
    epochs = sorted({e for s in series.values() for e in s})
    header = ["method", *[f"epoch {e}" for e in epochs]]
    cells = [[m, *[f"{s[e][0]:.2f} / {s[e][1]:.4f}" if e in s else "" for e in epochs]] for m, s in series.items()]
    return _table("FID / KID (in-domain features, mean over seeds) during generator training:", header, cells)


def fraction_tables(rows: list[dict]) -> tuple[list[str], str]:
    """Seed 002's Table 1 layout: test AUC (mean ± std over seeds) with one row per training fraction and one
    column per method and levers, for every (dataset, classifier, recipe) run at two or more fractions; a cell
    names the hyper-parameters that differ from the preset (e.g. fewer generator epochs at a larger fraction),
    and several settings of one cell are listed one after another. A gain over ``none`` whose paired 95 %
    interval excludes 0 is marked with ``*``."""
    md: list[str] = []
    page = ""
    by_setting: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["protocol"].startswith("fraction"):
            by_setting[(row["dataset"], row["classifier"], row["recipe"])].append(row)
    for (dataset, classifier, recipe), group in sorted(by_setting.items()):
        protocols = sorted({r["protocol"] for r in group}, key=lambda p: float(p.split()[1]))
        if len(protocols) < 2:
            continue
        methods = list(dict.fromkeys(r["lever_label"] for r in group))
        cell: dict[tuple, list[dict]] = defaultdict(list)
        for r in group:
            cell[(r["protocol"], r["lever_label"])].append(r)

        def text(row: dict) -> str:
            mean, std, _ = row["test_auc"]
            diff = row.get("diff_test_auc")
            sure = diff is not None and not math.isnan(diff[2]) and diff[0] - diff[2] > 0
            return (f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}") + ("*" if sure else "")
                    + f" (n={row['n']}" + (f", {row['params']}" if row["params"] else "") + ")")

        cells = [[protocol, *["; ".join(text(r) for r in cell[(protocol, m)]) for m in methods]]
                 for protocol in protocols]
        caption = (f"{dataset} · {classifier} · recipe {recipe}: test AUC by training fraction (seed 002's "
                   "Table 1 layout; * = paired gain over none whose 95 % interval excludes 0)")
        table_md, table_html = _table(caption, ["training share", *methods], cells)
        md += table_md
        page += table_html
    return md, page


def _fmt(mean_std_ci: tuple[float, float, float]) -> str:
    """``mean ± std [interval]``, the interval clipped to the metric's range [0, 1]."""
    mean, std, ci = mean_std_ci
    if math.isnan(mean):
        return "–"
    if math.isnan(std):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f} [{max(0.0, mean - ci):.3f}, {min(1.0, mean + ci):.3f}]"


def _fmt_diff(diff: tuple | None) -> str:
    if not diff:
        return ""
    mean, std, ci, n = diff
    if math.isnan(ci):
        return f"{mean:+.3f} (n={n})"
    verdict = "within noise" if mean - ci <= 0 <= mean + ci else ("better" if mean > 0 else "worse")
    return f"{mean:+.3f} [{max(-1.0, mean - ci):+.3f}, {min(1.0, mean + ci):+.3f}] {verdict}"


HEADER = ["method", "seeds", "val AUC (selects levers)", "test AUC (mean ± std [95 % CI])", "test ACC",
          "Δ AUC vs none (paired)", "Δ ACC vs none (paired)", "test-selected AUC / ACC (optimistic)",
          "published AUC / ACC", "epochs"]


def _cells(row: dict) -> list[str]:
    paper = row["published"]
    optimistic = ""
    if not math.isnan(row["paper_test_auc"][0]):
        optimistic = f"{row['paper_test_auc'][0]:.3f} / {row['paper_test_acc'][0]:.3f}"
    val = "–" if math.isnan(row["val_auc"][0]) else f"{row['val_auc'][0]:.3f}"
    return [row["method"], ",".join(map(str, row["seeds"])), val, _fmt(row["test_auc"]), _fmt(row["test_acc"]),
            _fmt_diff(row.get("diff_test_auc")), _fmt_diff(row.get("diff_test_acc")), optimistic,
            f"{paper[1][0]:.3f} / {paper[1][1]:.3f} ({paper[0]})" if paper else "",
            "-".join(map(str, (min(row["epochs"]), max(row["epochs"])))) if len(row["epochs"]) > 1
            else str(row["epochs"][0])]


SYNTH_HEADER = ["method", "images / run", "class fidelity (mean ± std)", "reference test ACC", "FID (in-domain)",
                "KID", "precision / recall / coverage", "near-copies",
                "near-copies of real val images", "diversity (min class)", "kept by filter",
                "generator fit (s, uncached)", "flags"]


def _mean_std(values: tuple[float, float, float], percent: bool = False) -> str:
    mean, std, _ = values
    if math.isnan(mean):
        return "–"
    scale, unit = (100, " %") if percent else (1, "")
    text = f"{mean * scale:.1f}" if percent else f"{mean:.3f}"
    return text + ("" if math.isnan(std) else f" ± {std * scale:.1f}" if percent else f" ± {std:.3f}") + unit


def _synthetic_cells(row: dict) -> list[str]:
    syn = row["synthetic"]
    flags = ", ".join(f"{flag} ({n} of {syn['n']} runs)" for flag, n in syn["flags"].items()) or "none"
    near = _mean_std(syn["near_copy"], percent=True)
    if syn["reconstructions"]:
        near += " (reconstructions by design)"
    fidelity = _mean_std(syn["fidelity"])
    if not math.isnan(syn["candidates"][0]):
        fidelity += f" (before filter {syn['candidates'][0]:.3f})"
    prc = " / ".join("–" if math.isnan(syn[k][0]) else f"{syn[k][0]:.2f}" for k in ("precision", "recall", "coverage"))
    fid = "–" if math.isnan(syn["fid"][0]) else f"{syn['fid'][0]:.2f}" + (
        "" if math.isnan(syn["fid"][1]) else f" ± {syn['fid'][1]:.2f}")
    kid = "–" if math.isnan(syn["kid"][0]) else f"{syn['kid'][0]:.4f}"
    return [row["method"], str(syn["per_run"]), fidelity, _mean_std(syn["reference_acc"]), fid, kid, prc, near,
            _mean_std(syn["held_out"], percent=True), _mean_std(syn["diversity"]), _mean_std(syn["kept"], percent=True),
            f"{syn['generator_s'][0]:.0f}" if not math.isnan(syn["generator_s"][0]) else "–", flags]


def _group_title(row: dict) -> str:
    return f"{row['dataset']} · {row['protocol']} · {row['classifier']} · recipe {row['recipe']}"


def _by_group(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[_group_title(row)].append(row)
    return groups


def _plot(records: list[dict], title: str) -> bytes:
    """Per-seed test AUC and ACC by method (dots on the mean bar) and the validation AUC over epochs (one
    line per run, a ring on the selected epoch), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [{**r, "method": method_label(r)} for r in records]
    methods = list(dict.fromkeys(r["method"] for r in sorted(records, key=lambda r: r["method"] != "none")))
    colours = dict(zip(methods, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 5 + 1.6 * len(methods)), 3.4), constrained_layout=True,
                             gridspec_kw={"width_ratios": [1, 1, 1.6]})
    for ax, metric in zip(axes[:2], ("test_auc", "test_acc")):
        for i, method in enumerate(methods):
            values = [r[metric] for r in records if r["method"] == method]
            ax.bar(i, np.mean(values), color=colours[method], alpha=0.35, width=0.6)
            ax.scatter(np.full(len(values), i) + np.linspace(-0.12, 0.12, len(values)), values,
                       color=colours[method], s=14, zorder=3)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_ylim(max(0.0, min(r[metric] for r in records) - 0.05), 1.0)
        ax.set_title(metric.replace("_", " "))
        ax.grid(axis="y", alpha=0.3)
    curves = axes[2]
    for r in records:
        history = r.get("history") or []
        if history:
            epochs = [h["epoch"] for h in history]
            curves.plot(epochs, [h["val_auc"] for h in history], color=colours[r["method"]], lw=0.8, alpha=0.7)
            best = history[r["best_epoch"] - 1]
            curves.scatter([best["epoch"]], [best["val_auc"]], facecolors="none", edgecolors=colours[r["method"]])
    for method in methods:
        curves.plot([], [], color=colours[method], label=method)
    curves.set_title("validation AUC per epoch (ring: selected)")
    curves.set_xlabel("epoch")
    curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


HARDWARE_KEYS = ("cpu", "cpus", "gpu", "machine", "processor", "torch_threads")


def _header(records: list[dict]) -> list[str]:
    """Runs, compute time, devices, hardware and library versions (of the newest run; older runs' versions are
    in their records)."""
    versions = max(records, key=lambda r: r.get("created") or "")["versions"]
    total = sum(r["total_time"] or 0 for r in records)
    devices = sorted({f"{r['device']} ({r['precision']})" for r in records})
    hardware = {k: versions[k] for k in HARDWARE_KEYS if k in versions}
    cpu = hardware.get("cpu") or hardware.get("processor", "unknown")
    cpus = f"{hardware['cpus']} × {cpu}" if "cpus" in hardware else cpu  # older records lack the count and GPU
    gpu = f", GPU {hardware['gpu']}" if "gpu" in hardware else ""
    return [f"{len(records)} runs · total compute {total / 3600:.2f} h ({total / 60:.1f} min) · "
            f"device {', '.join(devices)}",
            f"hardware: CPU {cpus}{gpu}, {hardware.get('torch_threads', '?')} torch threads per run",
            "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in HARDWARE_KEYS)]


NOTES = [
    "Test figures are of the epoch selected on validation only (highest validation AUC; ties broken by the "
    "lowest validation loss); the test split is scored once per run.",
    "Δ columns pair each run with the `none` run of the same seed; 'within noise' means the 95 % interval "
    "of the paired difference covers 0.",
    "The test-selected column (only for --paper-style runs) is the maximum test score over epochs, the "
    "protocol of seed 000's Table 2: it selects on the test set and is optimistic.",
    "Class fidelity: accuracy of a reference ResNet-18 trained on the run's real training subset (medmnist "
    "recipe, selected on validation) on the synthetic images scored against their intended labels; compare it with "
    "the reference's own test ACC. Near-copies: share of synthetic images whose distance to the nearest training "
    "image is below 0.1 x the median nearest-neighbour distance inside the training set, beside the same share "
    "for real validation images. Diversity: median pairwise distance of a class's synthetic images over that of "
    "its real images (collapse below 0.1).",
    "FID, KID, precision / recall / coverage: synthetic vs the real training subset (only its images of the classes "
    "the synthetic set fills, e.g. the minority classes under --balance) in the feature space of the "
    "same reference classifier (its 512-d penultimate layer). In-domain numbers are not comparable with published "
    "ImageNet-Inception FIDs; KID's subset size adapts to small sets.",
    "Published numbers are shown only for a method at the paper's setting (no lever changed).",
]


def robustness_table(by_method: dict[str, list[dict]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows summarising robustness per method (mean ± std over its runs' reports): clean ACC, ACC
    averaged over the whole perturbation suite, and ACC under FGSM and PGD at every attack strength."""

    def cell(values: list[float]) -> str:
        mean, std, _ = interval(values)
        return f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")

    first = next(iter(by_method.values()))[0]["metrics"]["robustness"]
    attacks = [(name, point["eps_255"]) for name, points in first["attacks"].items() for point in points
               if point["eps"] > 0]
    header = ["method", "seeds", "clean ACC", "ACC, perturbation suite (mean)",
              *[f"{name.upper()} {eps:g}/255 ACC" for name, eps in attacks]]
    rows = []
    for method, runs in by_method.items():
        reports = [r["metrics"]["robustness"] for r in runs]
        suite = [np.mean([p["acc"] for points in rep["perturbations"].values() for p in points]) for rep in reports]
        attacked = [cell([next(p["acc"] for p in rep["attacks"][name] if p["eps_255"] == eps) for rep in reports])
                    for name, eps in attacks]
        rows.append([method, ",".join(str(r["seed"]) for r in runs), cell([rep["clean"]["acc"] for rep in reports]),
                     cell(suite), *attacked])
    return header, rows


def _robustness_sections(out: Path, records: list[dict], md: list[str], body: list[str],
                         written: list[Path]) -> tuple[list[str], list[str]]:
    """Per group with ``--robustness`` runs: accuracy curves under perturbations and attacks (mean and range over
    seeds, one line per method) and an EigenGradCAM panel (lowest seed of each method, same test images)."""
    from synthmed.metrics.explain import panel_from_maps
    from synthmed.metrics.robustness import robustness_plot

    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if (r.get("metrics") or {}).get("robustness"):
            groups[_group_title({**r, "protocol": protocol_label(r), "classifier": classifier_label(r)})].append(r)
    for index, (title, runs) in enumerate(groups.items()):
        by_method: dict[str, list[dict]] = defaultdict(list)
        for r in sorted(runs, key=lambda r: (r["method"] != "none", r["seed"])):
            by_method[method_label(r)].append(r)
        curves = robustness_plot({m: [r["metrics"]["robustness"] for r in rs] for m, rs in by_method.items()},
                                 f"robustness · {title}")
        figures = [("robustness", curves)]
        columns, images, names = [], None, medmnist_class_names(runs[0]["dataset"])
        for method, rs in by_method.items():
            path = out / "runs" / rs[0]["run_id"] / "cam.npz"
            if path.exists():
                with np.load(path, allow_pickle=False) as cam:
                    images, targets = cam["images"], cam["targets"]
                    names = cam["class_names"].tolist() if "class_names" in cam else names  # older runs: INFO's
                    columns.append((f"{method}\nseed {rs[0]['seed']}", "map", cam["eigengradcam"].astype(np.float32),
                                    cam["probs"]))
        if columns:
            figures.append(("eigengradcam", panel_from_maps(images, targets, names, columns,
                                                            f"EigenGradCAM of the true class · {title}")))
        settings = runs[0]["metrics"]["robustness"]
        n, attacked = settings["n"], settings["settings"].get("attack_images", settings["n"])
        pgd_steps = settings["settings"]["pgd"]["steps"]
        scope = (f"Perturbations on all {n} test images; FGSM and PGD ({pgd_steps} steps, no random start) on "
                 + (f"a fixed class-stratified subset of {attacked} of them." if attacked < n else "all of them."))
        table_md, table_html = _table("Accuracy (mean ± std over seeds):", *robustness_table(by_method))
        md += [f"## Robustness and explanations: {title}", "", scope, "", *table_md]
        body.append(f"<h2>Robustness and explanations: {html.escape(title)}</h2><p>{html.escape(scope)}</p>"
                    + table_html)
        for kind, png in figures:
            path = out / f"report_{kind}_{index}.png"
            atomic_write_bytes(path, png)
            written.append(path)
            md += [f"![{kind}]({path.name})", ""]
            body.append(f"<img alt='{kind}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    return md, body


def failed_runs(out: Path, finished: set[str]) -> list[dict]:
    """Runs that left ``error.json`` and have no record (a later success removes the file)."""
    failures = []
    for path in sorted((out / "runs").glob("*/error.json")):
        info = json.loads(path.read_text())
        if info["run_id"] in finished:
            continue
        c = info["config"]
        failures.append({"run_id": info["run_id"], "error": info["error"],
                         "what": f"{c['dataset']} {c['protocol']} {c['method']} seed {c['seed']}"})
    return failures


def write_report(out: str | Path) -> list[Path]:
    """Write report.md, report.html and one PNG per group into ``out``; return their paths."""
    out = Path(out)
    records = _with_history(load_records(out), out)
    if not records:
        raise SynthmedError(f"{out / 'results.sqlite'} holds no finished runs yet")
    rows = summarise(records)
    md = ["# synthmed report", "", *[f"- {line}" for line in _header(records)], ""]
    body = [f"<h1>synthmed report</h1><ul>{''.join(f'<li>{html.escape(x)}</li>' for x in _header(records))}</ul>"]
    written = []
    for index, (title, group) in enumerate(_by_group(rows).items()):
        runs = [r for r in records
                if _group_title({**r, "protocol": protocol_label(r), "classifier": classifier_label(r)}) == title]
        png = _plot(runs, title)
        png_path = out / f"report_{index}.png"
        atomic_write_bytes(png_path, png)
        written.append(png_path)
        sizes = f"n_train {runs[0]['n_train']} · n_val {runs[0]['n_val']} · n_test {runs[0]['n_test']}"
        md += [f"## {title}", "", sizes, "", "| " + " | ".join(HEADER) + " |",
               "|" + "---|" * len(HEADER)]
        md += ["| " + " | ".join(_cells(row)) + " |" for row in group]
        md += ["", f"![{title}]({png_path.name})", ""]
        synthetic_rows = [row for row in group if row["synthetic"]]
        if synthetic_rows:
            md += ["### Synthetic data: class fidelity, memorisation, collapse, FID", "",
                   "| " + " | ".join(SYNTH_HEADER) + " |", "|" + "---|" * len(SYNTH_HEADER)]
            md += ["| " + " | ".join(_synthetic_cells(row)) + " |" for row in synthetic_rows]
            fid_md, fid_html = _fid_over_epochs(synthetic_rows)
            md += ["", *fid_md]
            md += [f"![{row['method']} {kind}]({path})" for row in synthetic_rows for kind, path in _figures(out, row)]
            md += [""]
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
        table_rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(row)) + "</tr>"
                             for row in group)
        image = base64.b64encode(png).decode()
        body.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(sizes)}</p><table><tr>{cells}</tr>{table_rows}"
                    f"</table><img alt='test AUC and ACC per seed, validation curves' "
                    f"src='data:image/png;base64,{image}'>")
        if synthetic_rows:
            cells = "".join(f"<th>{html.escape(h)}</th>" for h in SYNTH_HEADER)
            table_rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _synthetic_cells(row))
                                 + "</tr>" for row in synthetic_rows)
            grids = "".join(f"<figure><figcaption>{html.escape(row['method'])}: {FIGURE_CAPTIONS[kind]} (lowest "
                            f"seed)</figcaption><img alt='{kind}' src='data:image/png;base64,"
                            f"{base64.b64encode((out / path).read_bytes()).decode()}'></figure>"
                            for row in synthetic_rows for kind, path in _figures(out, row))
            body.append(f"<h3>Synthetic data: class fidelity, memorisation, collapse, FID</h3><table><tr>{cells}</tr>"
                        f"{table_rows}</table>{fid_html}{grids}")
    pivot_md, pivot_html = fraction_tables(rows)
    if pivot_md:
        md += ["## By training fraction", "", *pivot_md]
        body.append(f"<h2>By training fraction</h2>{pivot_html}")
    failures = failed_runs(out, {r["run_id"] for r in records})
    md, body = _robustness_sections(out, records, md, body, written)
    if failures:
        md += ["## Failed runs (no record; the same command retries them)", "",
               *[f"- `{f['run_id']}` {f['what']}: {f['error']}" for f in failures], ""]
        body.append("<h2>Failed runs</h2><ul>" + "".join(
            f"<li><code>{html.escape(f['run_id'])}</code> {html.escape(f['what'])}: {html.escape(f['error'])}</li>"
            for f in failures) + "</ul>")
    md += ["## Notes", "", *[f"- {note}" for note in NOTES], ""]
    body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in NOTES) + "</ul>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px}"
             "th{background:#f0f4f8}img{max-width:100%;margin:1em 0}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>synthmed report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "report.html", page)
    atomic_write_text(out / "runs.csv", runs_csv(records))
    atomic_write_text(out / "summary.csv", summary_csv(rows))
    return [out / "report.md", out / "report.html", out / "runs.csv", out / "summary.csv", *written]


RUN_COLUMNS = ("run_id", "dataset", "protocol", "classifier", "recipe", "method", "seed", "val_auc", "val_acc",
               "test_auc", "test_acc", "paper_test_auc", "paper_test_acc", "best_epoch", "epochs_run", "n_train",
               "n_val", "n_test", "n_synthetic", "train_time", "total_time", "peak_rss_mb", "device", "precision",
               "created")
#: audit figures of a run's synthetic set (FID, KID, precision / recall / coverage: in-domain features)
SYNTHETIC_COLUMNS = ("n", "fidelity", "reference_test_acc", "near_copy_share", "held_out_near_copy_share",
                     "min_diversity", "kept_share", "fid", "kid", "precision", "recall", "coverage")


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def runs_csv(records: list[dict]) -> str:
    """One row per run: its labels (protocol, classifier and method with their parameters, as in the tables),
    scores, audit figures of its synthetic set and flags; for pandas or a spreadsheet."""
    rows = [[*RUN_COLUMNS, *(f"synthetic_{c}" for c in SYNTHETIC_COLUMNS), "synthetic_flags"]]
    for r in records:
        labels = {"protocol": protocol_label(r), "classifier": classifier_label(r), "method": method_label(r)}
        synthetic = (r.get("metrics") or {}).get("synthetic") or {}
        rows.append([labels.get(c, r.get(c)) for c in RUN_COLUMNS]
                    + [synthetic.get(c) for c in SYNTHETIC_COLUMNS] + [";".join(synthetic.get("flags", []))])
    return _csv(rows)


def summary_csv(rows: list[dict]) -> str:
    """One row per table row: mean, std and 95 % interval half-width of each score, paired differences."""
    header = ["dataset", "protocol", "classifier", "recipe", "method", "n", "seeds"]
    metrics = ("test_auc", "test_acc", "val_auc")
    header += [f"{m}_{part}" for m in metrics for part in ("mean", "std", "ci95")]
    header += [f"diff_{m}_{part}" for m in ("test_auc", "test_acc") for part in ("mean", "std", "ci95", "n")]
    out = [header]
    for row in rows:
        cells = [row[k] for k in header[:5]] + [row["n"], " ".join(map(str, row["seeds"]))]
        cells += [v for m in metrics for v in row[m]]
        cells += [v for m in ("test_auc", "test_acc") for v in row.get(f"diff_{m}", (None,) * 4)]
        out.append(cells)
    return _csv(out)


def print_table(out: str | Path, console) -> None:
    """The final table of ``synthmed run``: one rich table per group."""
    from rich.table import Table

    for title, group in _by_group(summarise(load_records(out))).items():
        table = Table(title=title)
        for name in ("method", "seeds", "test AUC", "test ACC", "Δ AUC vs none"):
            table.add_column(name)
        for row in group:
            cells = _cells(row)
            table.add_row(cells[0], cells[1], cells[3], cells[4], cells[5])
        console.print(table)
