"""MedMNIST-C corruptions (``--robustness medmnistc``): shape, dtype, determinism and monotone severity of every
corruption; agreement with outputs of the ``medmnistc`` package computed once; the benchmark's scores; its columns
through the record, the export and the report; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_report import record
from test_robustness import tiny_cnn, toy_images

from synthmed.errors import SynthmedError
from synthmed.metrics.corruptions import (
    GENERIC,
    KINDS,
    MEDMNISTC,
    REFERENCE_SIZE,
    SEVERITIES,
    corrupt,
    corruption_set,
)
from synthmed.metrics.robustness import medmnistc_report

FIXTURE = Path(__file__).parent / "fixtures" / "medmnistc_reference.json"
#: (corruption, a dataset whose set has it), once per distinct parameter list
SETS = sorted(
    {
        (name, params): (name, ds) for ds in [GENERIC, *MEDMNISTC] for name, params in corruption_set(ds)[1].items()
    }.values()
)


def scans(n: int, size: int, rgb: bool = False, seed: int = 0) -> np.ndarray:
    """Smooth blobs over a textured background: edges, flats and mid-greys for every corruption to act on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        blob = 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        out.append(60 + blob + 25 * np.sin(12 * xx) + rng.normal(0, 8, (size, size)))
    images = np.clip(np.stack(out), 0, 255).astype(np.uint8)
    return np.repeat(images[..., None], 3, -1) if rgb else images


@pytest.mark.parametrize("rgb", [False, True])
def test_every_corruption_keeps_shape_and_dtype_and_leaves_its_input_alone(rgb):
    images = scans(3, 28, rgb)
    before = images.copy()
    for name, dataset in SETS:
        out = corrupt(images, name, 5, dataset)
        assert out.shape == images.shape and out.dtype == np.uint8, name
    assert np.array_equal(images, before)


@pytest.mark.parametrize("name,dataset", SETS)
def test_a_higher_severity_changes_the_image_more(name, dataset):
    """At the published resolution (224 px), where the severities were calibrated."""
    images = scans(2, REFERENCE_SIZE)
    change = [np.abs(corrupt(images, name, s, dataset).astype(int) - images).mean() for s in SEVERITIES]
    assert all(b >= a * 0.98 for a, b in zip(change, change[1:])), (name, dataset, change)
    assert change[-1] > change[0] > 0, (name, dataset, change)


def test_corruptions_are_deterministic_for_a_seed_and_differ_between_seeds():
    images = scans(4, 28)
    for name in ("gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise", "motion_blur"):
        dataset = "breastmnist" if name == "motion_blur" else "pneumoniamnist"
        a, b = corrupt(images, name, 5, dataset, seed=3), corrupt(images, name, 5, dataset, seed=3)
        assert np.array_equal(a, b), name
        if name != "motion_blur":  # at 28 px the motion blur's angle barely matters
            assert not np.array_equal(a, corrupt(images, name, 5, dataset, seed=4)), name


def test_spatial_parameters_scale_with_the_image_size():
    big, small = scans(1, REFERENCE_SIZE), scans(1, 28)
    blurred_big = np.abs(corrupt(big, "gaussian_blur", 5, "pneumoniamnist").astype(int) - big).mean()
    blurred_small = np.abs(corrupt(small, "gaussian_blur", 5, "pneumoniamnist").astype(int) - small).mean()
    assert blurred_big > 1 and blurred_small < blurred_big  # sigma 2 px at 224 px is sigma 0.25 px at 28 px


def test_our_corruptions_match_the_package_on_28px_images():
    """Outputs of ``medmnistc`` 0.1 (scripts/medmnistc_reference.py) on two 28-px images, at the package's own
    pixel scale; at most one grey level apart (rounding of the box resampler and OpenCV's filter)."""
    data = json.loads(FIXTURE.read_text())

    def image(text: str) -> np.ndarray:
        return np.frombuffer(bytes.fromhex(text), np.uint8).reshape(28, 28)

    inputs = np.stack([image(t) for t in data["inputs"]])
    assert len(data["cases"]) >= 10
    for case in data["cases"]:
        param = tuple(case["param"]) if isinstance(case["param"], list) else case["param"]
        ours = KINDS[case["kind"]](inputs, param, np.random.default_rng(0), 1.0).astype(int)
        expected = np.stack([image(t) for t in case["outputs"]]).astype(int)
        assert np.abs(ours - expected).max() <= 1, case["kind"]


@pytest.mark.parametrize("name", ["gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise"])
def test_noise_on_a_grey_image_is_drawn_per_rgb_channel_and_greyed_as_the_package_does(name):
    """The package corrupts grey images as RGB and converts back with PIL's luma (dataset_manager.py): three
    independent draws per pixel, so about 0.6 of one draw's spread (measured against its code on 100
    PneumoniaMNIST test images: gaussian 10.8 / 10.8 grey levels of mean change at severity 5, speckle 14.9 / 14.9,
    shot 11.2 / 11.1)."""
    from PIL import Image

    grey = scans(4, 28)
    ours = corrupt(grey, name, 5, "pneumoniamnist", seed=3)
    rgb = corrupt(np.repeat(grey[..., None], 3, -1), name, 5, "pneumoniamnist", seed=3)
    assert np.array_equal(ours, np.stack([np.array(Image.fromarray(im).convert("L")) for im in rgb]))
    one_draw = KINDS[name](grey, MEDMNISTC["pneumoniamnist"][name][4], np.random.default_rng(3), 1.0)
    if name == "impulse_noise":  # more pixels changed, each partly (a third of them flipped per channel)
        assert (ours != grey).mean() > 2 * (one_draw != grey).mean()
    else:
        assert np.abs(ours.astype(int) - grey).mean() < 0.85 * np.abs(one_draw.astype(int) - grey).mean()


def test_the_sets_follow_the_published_table():
    name, breast = corruption_set("BreastMNIST")
    assert name == "breastmnist" and "speckle_noise" in breast and "gaussian_noise" not in breast
    assert breast["motion_blur"][4] == (17, 12) and corruption_set("pneumoniamnist")[1]["shot_noise"][0] == 300
    assert corruption_set("pathmnist")[0] == GENERIC and corruption_set("my_folder")[0] == GENERIC
    assert all(len(params) == 5 for table in MEDMNISTC.values() for params in table.values())


@pytest.mark.parametrize(
    "args,phrase",
    [
        (("bubble", 1, "breastmnist"), "unknown corruption 'bubble' for the breastmnist set"),
        (("gaussian_noise", 1, "breastmnist"), "choose one of pixelate"),
        (("pixelate", 0, "breastmnist"), "severity 0 is not one of 1..5"),
        (("pixelate", 6, GENERIC), "severity 6"),
    ],
)
def test_an_unknown_corruption_or_severity_is_one_line_error(args, phrase):
    with pytest.raises(SynthmedError, match=phrase):
        corrupt(scans(1, 28), *args)
    with pytest.raises(SynthmedError, match="uint8 images"):
        corrupt(scans(1, 28).astype(np.float32), "pixelate", 1)


def test_the_benchmark_scores_every_corruption_and_never_changes_model_or_labels():
    torch.manual_seed(0)
    model = tiny_cnn()  # untrained: only the bookkeeping is tested
    images, labels = toy_images(64, seed=7)
    labels_before, state = labels.copy(), {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    report = medmnistc_report(model, images, labels, "binary-class", "breastmnist", seed=0)
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert np.array_equal(labels, labels_before)
    assert report["set"] == "breastmnist" and list(report["corruptions"]) == list(MEDMNISTC["breastmnist"])
    points = [p for curve in report["corruptions"].values() for p in curve]
    assert len(points) == 5 * len(MEDMNISTC["breastmnist"]) and [p["severity"] for p in points[:5]] == [1, 2, 3, 4, 5]
    effective = {n: c for n, c in report["corruptions"].items() if n not in report["no_effect"]}
    assert report["mean"]["auc"] == pytest.approx(
        np.mean([p["auc"] for c in effective.values() for p in c if p["changed"]])
    )
    worst = report["worst"]
    assert worst["auc"] == pytest.approx(min(np.mean([p["auc"] for p in c]) for c in effective.values()))
    clean = report["clean"]["auc"]
    assert report["drop"]["auc"] == pytest.approx((clean - report["mean"]["auc"]) / clean)
    assert report == medmnistc_report(model, images, labels, "binary-class", "breastmnist", seed=0)  # reproducible


def test_a_corruption_that_changes_no_image_at_this_size_is_listed_not_averaged(monkeypatch):
    """A blur scaled from 224 px to 28 px can round to nothing: its clean scores must not pass for corrupted ones."""
    from synthmed.metrics import corruptions, robustness

    torch.manual_seed(0)
    model = tiny_cnn()
    images, labels = toy_images(64, seed=7)
    real = corruptions.corrupt
    vacuous = list(MEDMNISTC["breastmnist"])[0]
    monkeypatch.setattr(corruptions, "corrupt", lambda x, name, *a: x.copy() if name == vacuous else real(x, name, *a))
    scored = []  # the image sets the model scored
    real_score = robustness._score
    monkeypatch.setattr(robustness, "_score", lambda m, x, *a: scored.append(x) or real_score(m, x, *a))
    report = medmnistc_report(model, images, labels, "binary-class", "breastmnist", seed=0)
    assert report["no_effect"] == [vacuous] and not any(p["changed"] for p in report["corruptions"][vacuous])
    # unchanged images are not scored again: they reuse the clean score, which they equal
    changed = [p for c in report["corruptions"].values() for p in c if p["changed"]]
    assert len(scored) == 1 + len(changed) and np.array_equal(scored[0], images)
    clean = report["clean"]
    assert all({k: p[k] for k in clean} == clean for p in report["corruptions"][vacuous])
    others = [p for n, c in report["corruptions"].items() if n != vacuous for p in c if p["changed"]]
    assert report["mean"]["auc"] == pytest.approx(np.mean([p["auc"] for p in others]))
    assert report["worst"]["corruption"] != vacuous


def fake_robustness(shift: float, seed: int) -> dict:
    """A ``metrics.robustness`` of a ``--robustness medmnistc`` run whose scores are ``shift`` above a base."""
    auc = 0.8 + shift + 0.01 * seed
    curves = {
        name: [{"severity": s, "auc": auc - 0.02 * s - 0.01 * i, "acc": 0.7 - 0.02 * s} for s in SEVERITIES]
        for i, name in enumerate(MEDMNISTC["breastmnist"])
    }
    points = [p for c in curves.values() for p in c]
    mean = {m: float(np.mean([p[m] for p in points])) for m in ("auc", "acc")}
    return {
        "n": 156,
        "task": "binary-class",
        "clean": {"auc": auc, "acc": 0.75},
        "perturbations": {"noise": [{"strength": 0.1, "auc": auc - 0.05, "acc": 0.7}]},
        "attacks": {
            "pgd": [
                {"eps": 0.0, "eps_255": 0.0, "auc": auc, "acc": 0.75},
                {"eps": 2 / 255, "eps_255": 2.0, "auc": 0.4 + shift, "acc": 0.3 + shift + 0.01 * seed},
            ]
        },
        "settings": {"pgd": {"steps": 10}, "attack_images": 156},
        "medmnistc": {
            "set": "breastmnist",
            "n": 156,
            "clean": {"auc": auc, "acc": 0.75},
            "corruptions": curves,
            "mean": mean,
            "worst": {"corruption": "contrast_down", "auc": auc - 0.12, "acc": 0.64},
            "drop": {m: (v - mean[m]) / v for m, v in (("auc", auc), ("acc", 0.75))},
            "settings": {"seed": seed, "precision": "fp32", "reference_size": 224, "implementation": "synthmed"},
        },
    }


def test_the_robustness_columns_round_trip_through_record_export_and_report(tmp_path):
    from synthmed.experiment.export import export_runs
    from synthmed.report import write_report
    from synthmed.report.medmnistc import medmnistc_columns, robustness_rows
    from synthmed.report.records import load_records
    from synthmed.store import ResultStore

    records = []
    for method, shift in (("none", 0.0), ("oversample", 0.01), ("flip", 0.03)):
        for seed in range(5):
            r = record(method, seed, 0.85 + shift, 0.8)
            r["metrics"]["robustness"] = fake_robustness(shift, seed)
            records.append(r)
    out = tmp_path / "out"
    out.mkdir()
    with ResultStore(out / "results.sqlite") as store:
        for r in records:
            store.add(r)
    export_runs(out, tmp_path / "exp")
    loaded = load_records(tmp_path / "exp")
    (columns_out, rows_out), (columns_in, rows_in) = robustness_rows(loaded), robustness_rows(records)
    assert columns_out == columns_in and sorted(rows_out) == sorted(rows_in) and len(rows_in) == 15
    columns = medmnistc_columns(loaded[0]["metrics"]["robustness"])
    assert columns["set"] == "breastmnist" and columns["pgd_acc"] is not None and columns["worst_corruption"]
    written = write_report(tmp_path / "exp")
    assert tmp_path / "exp" / "robustness.csv" in written
    text = (tmp_path / "exp" / "report.md").read_text()
    assert "MedMNIST-C AUC (mean)" in text and "the breastmnist set (brightness_down, brightness_up" in text
    flip_row = next(line for line in text.splitlines() if line.startswith("| flip |") and "better" in line)
    assert "+0.030 [+0.030, +0.030] better" in flip_row  # paired Δ MedMNIST-C AUC vs none
    assert (tmp_path / "exp" / "report_medmnistc_0.png").exists()


def test_robustness_takes_medmnistc_keeps_true_for_the_plain_flag_and_stays_measured_only():
    from synthmed.spec import RunSpec, coerce, result_key

    assert coerce("robustness", "true") is True and coerce("robustness", "medmnistc") == "medmnistc"
    with pytest.raises(SynthmedError, match="--robustness should be true or false or 'medmnistc', got 'mnistc'"):
        coerce("robustness", "mnistc")
    plain, bench = (RunSpec(dataset="breastmnist", robustness=value) for value in (True, "medmnistc"))
    assert result_key(plain.key("x")[1]) == result_key(bench.key("x")[1])  # the same report row


def test_attack_eps_is_measured_only_and_needs_robustness():
    """``--attack-eps`` changes what is scored, never the result, so its runs share the report row; alone it would
    set nothing and is refused before anything runs; outside (0, 255] it is a one-line error."""
    from synthmed.experiment.grid import Grid, expand, override
    from synthmed.spec import RunSpec, coerce, result_key

    curve, one = (RunSpec(dataset="breastmnist", robustness="medmnistc", attack_eps=e) for e in (None, 2.0))
    assert result_key(curve.key("x")[1]) == result_key(one.key("x")[1])
    specs = expand(override(Grid(datasets=["breastmnist"], seeds=[0]), {"robustness": "medmnistc", "attack_eps": 2}))
    assert [s.attack_eps for s in specs] == [2.0]
    with pytest.raises(SynthmedError) as err:
        expand(override(Grid(datasets=["breastmnist"], seeds=[0]), {"attack_eps": 2}))
    assert str(err.value) == "--attack-eps sets the attacks of --robustness: add --robustness or drop --attack-eps"
    with pytest.raises(SynthmedError, match="--attack-eps 0"):
        coerce("attack_eps", "0")


def test_the_command_line_rejects_an_unknown_robustness(cli, tmp_path):
    result = cli("run", "-d", "breastmnist", "--robustness", "mnistc", "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "should be true or false or 'medmnistc'" in result.stderr


@pytest.mark.parametrize("args,value", [(("--robustness",), True), (("--robustness", "medmnistc"), "medmnistc")])
def test_the_bare_flag_still_means_true_and_it_takes_medmnistc(cli, tmp_path, monkeypatch, args, value):
    import synthmed.cli.run as run_cli

    seen = {}
    monkeypatch.setattr(run_cli, "_run_and_show", lambda grid, out, execution: seen.update(grid.options))
    result = cli("run", "-d", "breastmnist", *args, "--seeds", "0", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert seen["robustness"] == value and type(seen["robustness"]) is type(value)


def test_the_report_answers_tsynds_claims_one_by_one_on_clean_corrupted_and_attacked_data(tmp_path):
    """Mutual information ahead of entropy on every metric, entropy equal to random latent moves, TSynD ahead of
    none but behind the copies: each claim gets its reading per metric, Holm within the metric's family."""
    from synthmed.report.claims import claim_comparisons, claims_blocks

    noise = [0.001, -0.002, 0.0, 0.002, -0.001, 0.001, 0.0, -0.001]
    shifts = {"none": 0.0, "oversample": 0.05, "random-latent": 0.02, "tsynd uncertainty=entropy": 0.02, "tsynd": 0.03}
    by_method: dict[str, list[dict]] = {}
    for label, shift in shifts.items():
        method, params = (label.split()[0], {"uncertainty": "entropy"}) if "=" in label else (label, {})
        for seed, jitter in enumerate(noise):
            own = jitter if label == "tsynd" else 0.0  # paired differences need a spread
            r = record(method, seed, 0.85 + shift + own, 0.8, method_params=params)
            r["metrics"]["robustness"] = fake_robustness(shift + own, seed)
            by_method.setdefault(label, []).append(r)
    comparisons = claim_comparisons(by_method)
    assert list(comparisons) == ["clean test AUC", "MedMNIST-C AUC (mean)", "PGD 2/255 ACC"]
    for title, (mi_entropy, entropy_random, vs_none, vs_copies) in comparisons.items():
        assert mi_entropy.verdict == "better" and entropy_random.verdict == "equivalent", title
        assert vs_none.verdict == "better" and vs_copies.verdict == "worse" and mi_entropy.family == 4, title
    table = claims_blocks(by_method)[0]
    assert [row[0].split(" (")[0] for row in table.rows] == [
        "mutual information > entropy",
        "entropy > random latent moves",
        "TSynD > no augmentation",
        "TSynD > copies of the real images",
    ]
    assert "holds, n=8" in table.rows[0][1] and "contradicted, n=8" in table.rows[3][2]
    assert "no difference (equivalent), n=8" in table.rows[1][3]
    assert claims_blocks({"none": by_method["none"], "flip": by_method["none"]}) == []
    mixed = {k: [dict(r) for r in v] for k, v in by_method.items()}
    mixed["tsynd"][0]["precision"] = "bf16"  # one seed of TSynD on another precision: no claim with it is decided
    blocked = claim_comparisons(mixed)["clean test AUC"]
    assert blocked[0].verdict == "undecided (mixed precision)" and blocked[1].verdict == "equivalent"
    from synthmed.report import summary_json
    from synthmed.store import ResultStore

    (tmp_path / "out").mkdir()
    with ResultStore(tmp_path / "out" / "results.sqlite") as store:
        for runs in by_method.values():
            for r in runs:
                store.add(r)
    [group] = summary_json(tmp_path / "out")["groups"]
    claims = group["tsynd_claims"]
    assert [c["claim"] for c in claims] == [row[0].split(" (")[0] for row in table.rows]
    assert claims[0]["metrics"]["clean test AUC"]["reading"] == "holds"
    assert claims[3]["metrics"]["PGD 2/255 ACC"]["reading"] == "contradicted"
    from synthmed.report.pages import update_pages

    (tmp_path / "pyproject.toml").write_text("")
    page = tmp_path / "claim.md"
    page.write_text("# MI\n<!-- study_table out --no-setting --claims --methods=mutual.* -->\n<!-- /study_table -->\n")
    update_pages([page])
    lines = page.read_text().splitlines()
    assert lines[2].startswith("| claim | clean test AUC | MedMNIST-C AUC (mean) | PGD 2/255 ACC |")
    assert lines[4].startswith("| mutual information > entropy (`tsynd` − `tsynd uncertainty=entropy`) | +0.010")
    assert "holds, n=8" in lines[4] and len(lines) == 6
    # the robustness table on a page: the report's rows, from the same data (summary_json's "robustness")
    assert sorted(row["method"] for row in group["robustness"]) == sorted(by_method)
    page.write_text("# R\n<!-- study_table out --no-setting --robustness --methods=tsynd -->\n<!-- /study_table -->\n")
    update_pages([page])
    lines = page.read_text().splitlines()
    assert lines[2].startswith("| method | seeds | clean AUC | MedMNIST-C AUC (mean) | worst corruption (AUC) |")
    from synthmed.report.medmnistc import medmnistc_table

    report_row = next(row for row in medmnistc_table(by_method).rows if row[0] == "tsynd")
    assert lines[4] == "| " + " | ".join(["`tsynd`", "8", *report_row[2:]]) + " |" and len(lines) == 6
    from synthmed.report.medmnistc import medmnistc_cells

    # read back from `synthmed report --format json`, where a missing figure (one seed's std, no PGD) is null
    one = {"method": "x", "seeds": [0], "worst_corruption": "blur", "deltas": {}}
    one |= {k: {"mean": 0.5, "std": None} for k in ("clean_auc", "corrupted_auc", "worst_auc", "drop_auc")}
    assert medmnistc_cells(one | {"pgd_acc": {"mean": None, "std": None}})[:5] == ["0.500", "0.500", "blur (0.500)",
                                                                                   "0.500", ""]  # fmt: skip
    from synthmed.report.pages import NOT_YET

    page.write_text("# none yet\n<!-- study_table out --claims --methods=nothing.* -->\n<!-- /study_table -->\n")
    update_pages([page])
    assert page.read_text().splitlines()[2] == NOT_YET.strip()  # a claim no setting ran: said, not a bare header


def test_the_report_names_the_corruptions_without_effect_that_its_mean_leaves_out():
    from synthmed.report.medmnistc import medmnistc_blocks

    r = record("none", 0, 0.85, 0.8)
    r["metrics"]["robustness"] = fake_robustness(0.0, 0)
    r["metrics"]["robustness"]["medmnistc"]["no_effect"] = ["motion_blur"]
    text = medmnistc_blocks({"none": [r]}, "t", 0)[0].text
    assert "No effect at this size, so left out of the corrupted mean: motion_blur" in text
    del r["metrics"]["robustness"]["medmnistc"]["no_effect"]
    assert "No effect" not in medmnistc_blocks({"none": [r]}, "t", 0)[0].text


def test_a_group_attacked_at_different_strengths_says_no_attack_is_shown(tmp_path):
    """Runs at --attack-eps 2 beside runs at 4 (measured-only, so one group): no attack column and the scope line
    says why, instead of a table of attacks only some runs made."""
    from synthmed.report import write_report
    from synthmed.store import ResultStore

    out = tmp_path / "out"
    out.mkdir()
    with ResultStore(out / "results.sqlite") as store:
        for method, seed in (("none", 0), ("none", 1), ("flip", 0), ("flip", 1)):
            r = record(method, seed, 0.85, 0.8)
            r["metrics"]["robustness"] = fake_robustness(0.0, seed)
            if seed == 1:
                r["metrics"]["robustness"]["attacks"]["pgd"][1]["eps_255"] = 4.0
            store.add(r)
    write_report(out)
    text = (out / "report.md").read_text()
    assert "none common: no attack is shown." in text and "PGD 2/255 ACC |" not in text.split("MedMNIST-C")[0]


def test_a_claim_decided_at_an_earlier_look_keeps_that_looks_comparison():
    """Mutual information is ahead of entropy on seeds 0-4 and far behind on 5-7: on all eight seeds the claim is
    undecided, but a look at 5 seeds decided it, so the report keeps the 5-seed comparison, marked."""
    from synthmed.report.claims import claim_comparisons, claims_blocks

    noise = [0.001, -0.002, 0.0, 0.002, -0.001, 0.001, 0.0, -0.001]
    by_method: dict[str, list[dict]] = {"tsynd": [], "tsynd uncertainty=entropy": []}
    for seed, jitter in enumerate(noise):
        ahead = 0.03 + jitter if seed < 5 else -0.06 + jitter
        by_method["tsynd"].append(record("tsynd", seed, 0.85 + ahead, 0.8))
        entropy = record("tsynd", seed, 0.85, 0.8, method_params={"uncertainty": "entropy"})
        by_method["tsynd uncertainty=entropy"].append(entropy)
    afresh = claim_comparisons(by_method)["clean test AUC"][0]
    assert afresh.n == 8 and afresh.verdict == "undecided" and afresh.decided_at is None
    decided = {"mutual information > entropy (clean test AUC)": 5}
    kept = claim_comparisons(by_method, decided=decided)["clean test AUC"][0]
    assert (kept.n, kept.verdict, kept.decided_at) == (5, "better", 5)
    assert "holds, n=5 (decided at 5 seeds)" in claims_blocks(by_method, decided=decided)[0].rows[0][1]
    assert "could detect" not in claims_blocks(by_method, decided=decided)[0].rows[0][1]
    # undecided on all eight seeds: the cell says how large a difference those seeds could have seen
    cell = claims_blocks(by_method)[0].rows[0][1]
    assert cell.endswith(f"undecided, n=8; could detect {afresh.mde:.3f}") and 0 < afresh.mde < 1, cell
    # below 5 seeds no difference could decide it: no size is promised
    few = {m: runs[:3] for m, runs in by_method.items()}
    assert claims_blocks(few)[0].rows[0][1].endswith("undecided (n < 5), n=3")


def test_seeds_sharing_a_generator_fit_are_one_unit_in_the_medmnistc_table_and_the_claims():
    """Six seeds over two generator fits are two units, not six: the robustness Δ and TSynD's claims average the
    seeds of a fit first, as the results table does, so no verdict is read off seeds that are not independent."""
    from synthmed.report.claims import claims_blocks
    from synthmed.report.medmnistc import medmnistc_table
    from synthmed.report.summary import fit_units

    shared = {"synthesis": {"generator_seeds": 2}}
    by_method: dict[str, list[dict]] = {"none": [], "oversample": [], "tsynd": []}
    for seed in range(6):
        for label, shift, config in (("none", 0.0, {}), ("oversample", 0.0, {}), ("tsynd", 0.05, shared)):
            r = record(label, seed, 0.85 + shift, 0.8, **config)
            r["metrics"]["robustness"] = fake_robustness(shift + 0.001 * (seed % 3), seed)
            by_method[label].append(r)
    row = next(row for row in medmnistc_table(by_method).rows if row[0] == "tsynd")
    assert all("n = 2 generator fits" in cell and "undecided (n < 5" in cell for cell in row[-4:]), row
    claims = claims_blocks(by_method)[0]
    assert all("n=2 generator fits" in cell and "undecided" in cell for cell in claims.rows[0][1:]), claims.rows
    pairs = list(zip(by_method["tsynd"], by_method["none"]))
    assert fit_units(pairs) == [0, 1, 0, 1, 0, 1] and fit_units(pairs[:1]) == [0]
    both = [(r, dict(b, config=dict(b["config"], synthesis={"generator_seeds": 3}))) for r, b in pairs]
    assert len(set(fit_units(both))) == 1  # seeds 0 and 3 share the reference's fit: everything is linked
    assert fit_units(list(zip(by_method["none"], by_method["oversample"]))) is None
