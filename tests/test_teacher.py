"""Issue 29, items 3-4: teacher labels in a run (``--teacher``, ``--teacher-threshold``) and the ``pseudo-label``
control that adds the run's unlabelled real images with the same teacher's labels. Tiny data, one-epoch networks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from synthmed.data import make_subset
from synthmed.data.dataset import Dataset, Split
from synthmed.errors import SynthmedError
from synthmed.experiment import synthetic_set
from synthmed.experiment.synthetic_set import synthesise, synthetic_counts
from synthmed.record import RunRecord
from synthmed.spec import RunSpec, SyntheticLevers

#: a one-epoch teacher and no reference classifier: only what these tests check is trained
LEVERS = SyntheticLevers(synthetic_per_class=6, fidelity=False, fidelity_epochs=1, teacher="hard")


def toy(n_train: int = 120, seed: int = 0) -> Dataset:
    """Two classes, a bright square marking class 1, with a graded background so a brightness teacher is unsure
    of some images; every image distinct by its pixels."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> Split:
        labels = (np.arange(n) % 2).astype(np.int64)
        images = rng.integers(0, 200, (n, 1, 1)).astype(np.uint8) + rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        images[labels == 1, 10:18, 10:18] = 250
        return Split(images, labels)

    return Dataset("toy", "multi-class", ["a", "b"], split(n_train), split(20), split(20), md5="toy")


def subset_of(data: Dataset, unlabelled: int | str | None = "all"):
    return make_subset(data, "lowdata", seed=0, per_class=8, unlabelled=unlabelled)


class Brightness(nn.Module):
    """A fixed teacher: the logit of class 1 grows with an image's mean brightness."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(6.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((1, 2, 3)) + 0.3
        return torch.stack([-m, m], 1) * self.scale


def brightness_probs(images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images / 127.5 - 1).float()[:, None]
    return torch.softmax(Brightness()(x), 1).detach().numpy()


@pytest.fixture
def fixed_teacher(monkeypatch):
    monkeypatch.setattr(synthetic_set, "teacher_classifier", lambda *args: Brightness().eval())


def same_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which images of ``a`` appear in ``b``, pixel for pixel."""
    flat = b.reshape(len(b), -1)
    return np.array([(flat == image).all(1).any() for image in a.reshape(len(a), -1)], dtype=bool)


# ----------------------------------------------------------------------------------------------- the teacher


def test_the_teacher_saw_no_unlabelled_or_test_image(tmp_path, monkeypatch):
    import synthmed.train.teacher as teacher_module

    seen: list[np.ndarray] = []
    original = teacher_module.train_classifier

    def spy(train, val, test, *args, **kwargs):
        seen.extend([train.images, val.images, test.images])
        return original(train, val, test, *args, **kwargs)

    monkeypatch.setattr(teacher_module, "train_classifier", spy)
    data = toy()
    subset = subset_of(data)
    synthesise(data, subset, "pseudo-label", {"count": "all"}, LEVERS, 0, tmp_path, "cpu", "fp32")
    assert len(seen) == 3 and np.array_equal(seen[0], subset.train.images)
    assert np.array_equal(seen[1], subset.val.images) and np.array_equal(seen[2], subset.val.images)
    assert subset.unlabelled is not None
    for images in seen:
        assert not same_rows(images, subset.unlabelled).any() and not same_rows(images, data.test.images).any()
    soft = dataclasses.replace(LEVERS, teacher="soft")
    synthesise(data, subset, "pseudo-label", {"count": "all"}, soft, 0, tmp_path, "cpu", "fp32")
    assert len(seen) == 3  # the second run of the seed reads the cached teacher


# ------------------------------------------------------------------------------------------- the control


def test_pseudo_label_adds_the_policys_count_of_unlabelled_images(tmp_path, fixed_teacher):
    data = toy()
    subset = subset_of(data)
    result = synthesise(data, subset, "pseudo-label", {}, LEVERS, 0, tmp_path, "cpu")
    counts = synthetic_counts(subset.train.labels, 2, LEVERS.synthetic_per_class)
    assert np.bincount(result.labels, minlength=2).tolist() == [counts[0], counts[1]] == [6, 6]
    assert same_rows(result.images, subset.unlabelled).all()
    assert not same_rows(result.images, subset.train.images).any()
    probs = brightness_probs(result.images)
    assert np.array_equal(result.targets, probs.argmax(1)) and np.array_equal(result.labels, result.targets)
    assert len(np.unique(result.images.reshape(12, -1), axis=0)) == 12  # each image once before any reuse


@pytest.mark.parametrize("teacher", ["hard", "soft"])
def test_pseudo_label_all_adds_the_whole_pool_minus_the_dropped(tmp_path, fixed_teacher, teacher):
    data = toy()
    subset = subset_of(data)
    assert subset.unlabelled is not None
    levers = dataclasses.replace(LEVERS, teacher=teacher, teacher_threshold=0.9)
    result = synthesise(data, subset, "pseudo-label", {"count": "all"}, levers, 0, tmp_path, "cpu")
    confident = brightness_probs(subset.unlabelled).max(1) >= 0.9
    assert 0 < confident.sum() < len(confident)  # the threshold drops some and keeps some
    assert len(result.images) == confident.sum() and same_rows(result.images, subset.unlabelled[confident]).all()
    assert len(np.unique(result.images.reshape(len(result.images), -1), axis=0)) == confident.sum()
    assert result.targets.ndim == (2 if teacher == "soft" else 1)
    audit = result.audit
    assert audit.teacher == teacher and audit.teacher_agreement is None  # real images have no intended class
    assert audit.teacher_kept_share == pytest.approx(confident.mean())


def test_the_audit_of_a_pseudo_label_set_points_at_the_unlabelled_images_it_copied(tmp_path, fixed_teacher):
    """Its images are unlabelled pool images, so each one's nearest real image is itself, past the labelled subset in
    the images memorisation measured against: the side-car names its pool index (a PneumoniaMNIST run once failed
    here, indexing the 300 labelled images with an unlabelled image's place)."""
    import json

    from synthmed.experiment.synthetic_set import write_artifacts

    data = toy()
    subset = subset_of(data)
    result = synthesise(data, subset, "pseudo-label", {"count": "all"}, LEVERS, 0, tmp_path, "cpu")
    write_artifacts(tmp_path / "synthetic", result, data, subset, 0, "toy")
    closest = json.loads((tmp_path / "synthetic_audit.json").read_text())["memorisation"]["closest"]
    assert closest and all(pair["train"] >= len(subset.train_indices) for pair in closest)
    for pair in closest:
        assert np.array_equal(data.train.images[pair["train_pool_index"]], result.images[pair["synthetic"]])


# ------------------------------------------------------------------------------------ a generator's images


def toy_samples(counts: dict[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Candidates as ``toy`` draws its images, in class order: a graded background, so the brightness teacher
    is unsure of some and puts some in the other class."""
    labels = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in sorted(counts.items())])
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 200, (len(labels), 1, 1)).astype(np.uint8)
    images = images + rng.integers(0, 40, (len(labels), 28, 28)).astype(np.uint8)
    images[labels == 1, 10:18, 10:18] = 250
    return images, labels


@pytest.fixture
def toy_generator(monkeypatch):
    """The cVAE (fitted for real, one epoch) samples ``toy_samples``: candidates the teacher puts in both classes."""
    from synthmed.augment.vae import ConditionalVAE

    monkeypatch.setattr(ConditionalVAE, "sample", lambda self, counts, seed=0: toy_samples(counts, seed))


def test_a_teacher_labelled_set_adds_the_policys_count_per_teacher_class_from_twice_the_candidates(
    tmp_path, fixed_teacher, toy_generator
):
    """The threshold drops the unconfident candidates; of those kept, the set draws 6 per teacher class, each
    used once before any repeats, as pseudo-label draws its images: the two add the same count of each class."""
    data, params = toy(), {"epochs": 1, "batch_size": 8}
    subset = subset_of(data, None)
    candidates, intended = toy_samples({0: 12, 1: 12})
    probs = brightness_probs(candidates)
    threshold = float(np.quantile(probs.max(1), 0.25))
    kept = np.flatnonzero(probs.max(1) >= threshold)
    classes = probs.argmax(1)[kept]
    assert 0 < len(kept) < 24 and (classes == 0).any() and (classes == 1).any()
    levers = dataclasses.replace(LEVERS, teacher_threshold=threshold)
    result = synthesise(data, subset, "cvae", params, levers, 0, tmp_path, "cpu")
    assert np.bincount(result.targets, minlength=2).tolist() == [6, 6]  # the policy's count per teacher class
    assert same_rows(result.images, candidates[kept]).all()
    for c in (0, 1):  # each kept candidate of a class once before any repeats
        unique = len(np.unique(result.images[result.targets == c].reshape(6, -1), axis=0))
        assert unique == min(6, int((classes == c).sum()))
    assert np.array_equal(brightness_probs(result.images).argmax(1), result.targets)  # trains on the teacher's
    rows = [int(np.flatnonzero((candidates.reshape(24, -1) == im).all(1))[0]) for im in result.images.reshape(12, -1)]
    assert np.array_equal(result.labels, intended[rows])  # the intended classes, kept for the audit
    audit = result.audit
    assert audit.teacher_agreement == pytest.approx(np.mean(probs.argmax(1) == intended))
    assert audit.teacher_agreement_kept == pytest.approx(np.mean(classes == intended[kept]))
    assert audit.teacher_kept_share == pytest.approx(len(kept) / 24)
    assert audit.details is not None and audit.details["teacher"]["intended_class"] == intended[kept].tolist()
    assert len(audit.details["teacher"]["picked"]) == 12
    control = synthesise(data, subset_of(data), "pseudo-label", {}, levers, 0, tmp_path, "cpu")
    assert np.bincount(control.targets, minlength=2).tolist() == [6, 6]


def test_agreement_round_trips_through_the_record_an_export_and_the_report(tmp_path, monkeypatch, toy_generator):
    from synthmed.experiment import runner as runner_module
    from synthmed.experiment.export import export_runs
    from synthmed.experiment.runner import Runner
    from synthmed.report.summary import _synthetic_summary
    from synthmed.report.tables import TEACHER_COLUMN, synthetic_table
    from synthmed.store import read_jsonl

    data = toy()
    monkeypatch.setattr(Runner, "dataset", lambda self, spec: data)
    monkeypatch.setattr(runner_module, "synthesise", _with_fixed_teacher(synthesise))
    runner = Runner(tmp_path / "out", device="cpu")
    spec = cvae_spec(teacher="soft")
    runner.validate([spec])
    record = runner.run(spec)
    audit = RunRecord.from_json(record).synthetic
    assert audit is not None and audit.teacher == "soft" and 0 <= audit.teacher_agreement <= 1
    export_runs(tmp_path / "out", tmp_path / "export")
    [exported] = read_jsonl(tmp_path / "export" / "records.jsonl")
    again = RunRecord.from_json(exported).synthetic
    assert again is not None and again.teacher_agreement == audit.teacher_agreement
    assert again.teacher_agreement_kept == audit.teacher_agreement_kept == audit.teacher_agreement  # kept all
    assert again.teacher_kept_share == 1.0
    summary = _synthetic_summary([exported])
    table = synthetic_table([{"method": "cvae teacher soft", "base_method": "cvae", "synthetic": summary}])
    assert table.columns[-1] == TEACHER_COLUMN and table.rows[0][-1].endswith("(100% kept)")
    assert f"{audit.teacher_agreement * 100:.1f}" in table.rows[0][-1]
    plain = _synthetic_summary([{**exported, "metrics": {"synthetic": {"n": 12}}}])
    columns = synthetic_table([{"method": "cvae", "base_method": "cvae", "synthetic": plain}]).columns
    assert TEACHER_COLUMN not in columns
    assert math.isnan(plain["teacher"][0])


@pytest.mark.parametrize("teacher, params", [("hard", {}), ("soft", {"count": "all"})])
def test_a_pseudo_label_run_goes_through_the_runner_an_export_and_the_report(tmp_path, monkeypatch, teacher, params):
    """The control end to end, as issue 29's study runs it: drawn unlabelled images, the teacher's labels, the
    classifier on both, the artifacts (its closest pairs in the unlabelled pool), the record, the export and the
    report against none, the copies and pseudo-label."""
    from synthmed.experiment import runner as runner_module
    from synthmed.experiment.export import export_runs
    from synthmed.experiment.runner import Runner
    from synthmed.report import settings_for, summary_json, write_report

    data = toy()
    monkeypatch.setattr(Runner, "dataset", lambda self, spec: data)
    monkeypatch.setattr(runner_module, "synthesise", _with_fixed_teacher(synthesise))
    runner = Runner(tmp_path / "out", device="cpu")
    levers = dataclasses.replace(LEVERS, teacher=teacher, teacher_threshold=0.7)
    specs = [
        RunSpec("toy", real_per_class=8, method=method, method_params=p, epochs=1, precision="fp32", **extra)
        for method, p, extra in [
            ("none", {}, {}),
            ("pseudo-label", params, {"unlabelled": "all", "synthesis": levers}),
        ]
    ]
    runner.validate(specs)
    control = [runner.run(spec) for spec in specs][-1]
    assert control["n_synthetic"] > 0 and control["metrics"]["synthetic"]["teacher"] == teacher
    assert control["metrics"]["unlabelled"]["images"] == len(subset_of(data).unlabelled)
    # the audit after training: what the teacher kept, and how often its label was the hidden true class
    subset = subset_of(data)
    probs = brightness_probs(subset.unlabelled)
    keep = probs.max(1) >= 0.7
    truth = np.asarray(subset.unlabelled_audit)[keep]
    kept = control["metrics"]["unlabelled"]["teacher_kept"]
    assert kept["images"] == keep.sum() and sum(kept["per_class"].values()) == keep.sum()
    assert kept["per_class"] == {"a": int((truth == 0).sum()), "b": int((truth == 1).sum())}
    assert kept["teacher_right"] == pytest.approx(np.mean(probs.argmax(1)[keep] == truth))
    assert 0 < kept["teacher_right"] < 1  # the graded background fools the brightness teacher on some images
    export_runs(tmp_path / "out", tmp_path / "export")
    summary = summary_json(tmp_path / "export", settings_for(tmp_path / "export", reference="pseudo-label"))
    rows = {row["base_method"]: row for row in summary["groups"][0]["rows"]}
    assert set(rows) == {"none", "pseudo-label"} and "none" in rows["pseudo-label"]["comparisons"]
    report = next(path for path in write_report(tmp_path / "export") if path.name == "report.md").read_text()
    assert (
        f"pseudo-label's teacher {teacher} teacher≥0.7: kept {keep.sum()} unlabelled images per run (1 run)" in report
    )
    assert f"its label was the true class for {kept['teacher_right']:.1%}" in report


def test_a_ddpm_fit_on_unlabelled_images_serves_its_own_and_the_teachers_labels_end_to_end(tmp_path, monkeypatch):
    """Issue 29's generative rows as its study runs them: ddpm with -p use_unlabelled=true and TSTR, without and with
    the teacher, through the runner, the export and the report against pseudo-label. One fit serves both labelings
    (the same cache key and weights digest), the record counts the unlabelled images drawn, TSTR is measured, and the
    teacher row is compared with none, the copies and pseudo-label."""
    pytest.importorskip("monai")
    from synthmed.experiment import runner as runner_module
    from synthmed.experiment.export import export_runs
    from synthmed.experiment.runner import Runner
    from synthmed.report import settings_for, summary_json

    data = toy()
    monkeypatch.setattr(Runner, "dataset", lambda self, spec: data)
    monkeypatch.setattr(runner_module, "synthesise", _with_fixed_teacher(synthesise))
    runner = Runner(tmp_path / "out", device="cpu")
    tiny = {"channels": (8, 16, 16), "attention": (False, False, False), "norm_groups": 8, "head_channels": 8}
    ddpm = {**tiny, "batch_size": 16, "ddim_steps": 2, "steps": 3, "use_unlabelled": True}
    plain = dataclasses.replace(LEVERS, teacher=None, tstr=True)
    taught = dataclasses.replace(LEVERS, teacher="hard", teacher_threshold=0.7, tstr=True)
    specs = [
        RunSpec("toy", real_per_class=8, method=method, method_params=p, epochs=1, precision="fp32", **extra)
        for method, p, extra in [
            ("none", {}, {}),
            ("oversample", {}, {"synthesis": plain}),
            ("pseudo-label", {}, {"unlabelled": "all", "synthesis": taught}),
            ("ddpm", ddpm, {"unlabelled": "all", "synthesis": plain}),
            ("ddpm", ddpm, {"unlabelled": "all", "synthesis": taught}),
        ]
    ]
    runner.validate(specs)
    *_, own, relabelled = [runner.run(spec) for spec in specs]
    fits = [r["metrics"]["synthetic"] for r in (own, relabelled)]
    assert (
        fits[0]["generator_key"] == fits[1]["generator_key"]
        and fits[0]["generator_digest"] == fits[1]["generator_digest"]
    )
    assert "teacher" not in fits[0] and fits[1]["teacher"] == "hard"
    assert all(r["metrics"]["unlabelled"]["images"] == len(subset_of(data).unlabelled) for r in (own, relabelled))
    assert all(0 <= r["metrics"]["synthetic"]["tstr_auc"] <= 1 for r in (own, relabelled))
    export_runs(tmp_path / "out", tmp_path / "export")
    summary = summary_json(tmp_path / "export", settings_for(tmp_path / "export", reference="pseudo-label"))
    rows = {row["method"]: row for row in summary["groups"][0]["rows"]}
    teacher_row = next(row for label, row in rows.items() if label.startswith("ddpm") and "teacher" in label)
    assert {"none", "oversample", "pseudo-label"} <= set(teacher_row["comparisons"])


def test_tstr_and_pretraining_train_on_the_teachers_labels(tmp_path, monkeypatch, toy_generator):
    """With --teacher, the classifier of the synthetic images alone (TSTR, and the pretraining) learns the labels
    the run adds them with: the teacher's probabilities, not the generator's intended classes."""
    from synthmed.experiment import runner as runner_module
    from synthmed.experiment.runner import Runner

    seen = []
    original = runner_module.train_classifier

    def spy(train, *args, **kwargs):
        seen.append((len(train), kwargs.get("synthetic")))
        return original(train, *args, **kwargs)

    data = toy()
    monkeypatch.setattr(Runner, "dataset", lambda self, spec: data)
    monkeypatch.setattr(runner_module, "synthesise", _with_fixed_teacher(synthesise))
    monkeypatch.setattr(runner_module, "train_classifier", spy)
    spec = cvae_spec(teacher="soft", tstr=True, pretrain_on_synthetic=True)
    record = Runner(tmp_path / "out", device="cpu").run(spec)
    n_real, (images, targets) = seen[0]
    assert n_real == 0 and targets.shape == (12, 2) and targets.dtype == np.float32
    assert np.allclose(targets, brightness_probs(images), atol=1e-5)
    synthetic = record["metrics"]["synthetic"]
    assert sum(synthetic["tstr_counts"].values()) == 12 and 0 <= synthetic["tstr_auc"] <= 1
    assert record["metrics"]["pretrain"]["epochs"] == 1


def cvae_spec(**levers) -> RunSpec:
    """A one-epoch cvae run of the toy set at 8 labelled images per class, with these teacher levers."""
    synthesis = dataclasses.replace(LEVERS, **levers)
    return RunSpec(
        "toy",
        real_per_class=8,
        method="cvae",
        method_params={"epochs": 1, "batch_size": 8},
        epochs=1,
        precision="fp32",
        synthesis=synthesis,
    )


def _with_fixed_teacher(original):
    def run(*args, **kwargs):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(synthetic_set, "teacher_classifier", lambda *a: Brightness().eval())
            return original(*args, **kwargs)

    return run


# ----------------------------------------------------------------------------------------------- bad input


def test_the_default_leaves_run_ids_and_labels_as_they_were():
    from synthmed.spec import method_label, non_default

    plain = RunSpec(dataset="pneumoniamnist", method="ddpm", seed=3)
    assert "synthesis" not in non_default(plain)
    taught = dataclasses.replace(plain, synthesis=SyntheticLevers(teacher="hard", teacher_threshold=0.8))
    assert taught.key("md5")[0] != plain.key("md5")[0]
    assert method_label(dataclasses.asdict(taught)) == "ddpm teacher hard teacher≥0.8"


@pytest.mark.parametrize(
    "values, phrase",
    [
        ({"method": "none,flip", "teacher": "hard"}, "--teacher applies to methods that add a synthetic set it can"),
        ({"method": "oversample", "teacher": "hard"}, "--teacher applies to methods that add a synthetic set it can"),
        ({"method": "cvae", "teacher": "hard", "teacher_threshold": "1"}, "--teacher-threshold 1.0 must be > 0"),
        ({"method": "cvae", "teacher": "hard", "teacher_threshold": "0"}, "--teacher-threshold 0.0 must be > 0"),
        ({"method": "cvae", "teacher_threshold": "0.5"}, "give --teacher hard or soft"),
        ({"method": "cvae", "teacher": "firm"}, "--teacher 'firm': choose one of hard, soft"),
        ({"method": "pseudo-label", "method_params": ["count=some"]}, "pseudo-label -p count='some'"),
    ],
)
def test_bad_teacher_options_are_one_line_errors(values, phrase):
    from synthmed.experiment.grid import Grid, expand, override
    from synthmed.experiment.runner import Runner

    with pytest.raises(SynthmedError) as err:
        specs = expand(override(Grid(datasets=["toy"]), values))
        Runner("unused", device="cpu").validate(specs)
    assert phrase in str(err.value) and "\n" not in str(err.value)


def test_oversample_stays_the_plain_control_beside_a_teacher():
    from synthmed.experiment.grid import Grid, expand, override

    specs = expand(override(Grid(datasets=["toy"]), {"method": "none,oversample,cvae", "teacher": "hard"}))
    assert {s.method: s.synthesis.teacher for s in specs} == {"none": None, "oversample": None, "cvae": "hard"}


@pytest.mark.parametrize(
    "method, levers, unlabelled, phrase",
    [
        ("oversample", SyntheticLevers(teacher="hard"), None, "--teacher labels the images a generator"),
        ("flip", SyntheticLevers(teacher="soft"), None, "flip adds no synthetic set"),
        ("pseudo-label", SyntheticLevers(teacher="hard"), None, "give --unlabelled N or all"),
        ("pseudo-label", SyntheticLevers(), "all", "give --teacher hard or soft"),
        ("pseudo-label", SyntheticLevers(teacher="hard", min_confidence=0.5), "all", "drop --min-confidence"),
    ],
)
def test_a_run_that_cannot_use_its_teacher_is_refused_before_anything_runs(
    tmp_path, monkeypatch, method, levers, unlabelled, phrase
):
    from synthmed.experiment.runner import Runner

    data = toy()
    monkeypatch.setattr(Runner, "dataset", lambda self, spec: data)
    runner = Runner(tmp_path / "out", device="cpu")
    spec = RunSpec("toy", real_per_class=8, method=method, synthesis=levers, unlabelled=unlabelled)
    with pytest.raises(SynthmedError) as err:
        runner.validate([spec])
    assert phrase in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_reference_pseudo_label_pairs_each_row_with_the_control_of_its_teacher():
    """``--reference pseudo-label``: a teacher-labelled generative row meets the pseudo-label row of the same
    teacher levers; a row without a teacher the plain-policy one; the ``-p count=all`` variant is a row, not a
    reference."""
    from synthmed.report.summary import Settings, reference_row

    def row(method: str, levers: str = "", params: str = "") -> dict:
        return {"base_method": method, "levers": levers, "policy": "", "params": params}

    soft, hard = row("pseudo-label", "teacher soft"), row("pseudo-label", "teacher hard teacher≥0.9")
    everything = row("pseudo-label", "teacher hard teacher≥0.9", "count=all")
    group = [row("none"), soft, hard, everything]
    assert reference_row(row("ddpm", "teacher hard teacher≥0.9"), group, "pseudo-label") is hard
    assert reference_row(row("ddpm", "teacher soft"), group, "pseudo-label") is soft
    assert reference_row(everything, group, "pseudo-label") is hard
    # a row with its own labels meets the threshold validation picks, wherever the group lists it
    low, high = (
        {**row("pseudo-label", f"teacher hard teacher≥{t}"), "teacher": f"hard ≥{t}", "val_auc": (v, 0.0, 0.0)}
        for t, v in ((0.7, 0.91), (0.9, 0.93))
    )
    plain = {**row("ddpm"), "teacher": "", "val_auc": (0.9, 0.0, 0.0)}
    assert reference_row(plain, [row("none"), low, high], "pseudo-label") is high
    assert (
        reference_row(plain, [row("none"), high, {**low, "val_auc": (0.95, 0.0, 0.0)}], "pseudo-label")["levers"]
        == (low["levers"])
    )
    assert Settings(reference="pseudo-label").references() == ["none", "oversample", "pseudo-label"]
    assert Settings(reference="oversample").references() == Settings().references() == ["none", "oversample"]


def test_the_whole_pool_variant_is_labelled_by_what_it_adds_not_by_a_count_policy():
    from synthmed.spec import method_label

    def label(method: str, count: str | None) -> str:
        spec = RunSpec(
            "pneumoniamnist",
            method=method,
            method_params={"count": count} if count else {},
            unlabelled="all",
            synthesis=SyntheticLevers(teacher="hard", synthetic_per_class=150),
        )
        return method_label(dataclasses.asdict(spec))

    assert label("pseudo-label", "all") == "pseudo-label +all unlabelled teacher hard count=all"
    assert label("pseudo-label", None) == "pseudo-label +all unlabelled 150/class teacher hard"


def test_a_class_the_teacher_gave_no_candidate_adds_none_and_the_run_goes_on():
    from synthmed.experiment.teacher import pick_per_teacher_class
    from synthmed.train.teacher import TeacherLabels

    labelled = TeacherLabels(np.arange(5), np.array([1, 1, 1, 1, 1]), np.full(5, 0.9), None, None)
    picked = pick_per_teacher_class(labelled, {0: 3, 1: 7}, seed=0)
    assert len(picked) == 7 and sorted(set(picked.tolist())) == [0, 1, 2, 3, 4]
    assert np.bincount(picked, minlength=5).max() == 2  # each once before any repeats


def test_an_exported_teacher_labelled_set_holds_the_labels_the_classifier_trained_on(
    tmp_path, fixed_teacher, toy_generator
):
    import json

    from synthmed.experiment.synthetic_set import write_artifacts

    data = toy()
    subset = subset_of(data, None)
    result = synthesise(data, subset, "cvae", {"epochs": 1, "batch_size": 8}, LEVERS, 0, tmp_path / "cache", "cpu")
    assert not np.array_equal(result.targets, result.labels)  # the teacher disagrees with some intended classes
    write_artifacts(tmp_path / "synthetic", result, data, subset, 0, "toy")
    with np.load(tmp_path / "synthetic.npz") as npz:
        assert np.array_equal(npz["train_labels"].ravel(), result.targets)
    sidecar = json.loads((tmp_path / "synthetic.json").read_text())
    assert sidecar["labels"] == "teacher hard (its top class)" and sidecar["intended"] == result.labels.tolist()
