"""Issue 29's lower layers: unlabelled images in the protocol (labels hidden), soft targets in the trainer, teacher
labels, and DDPM's null class for unlabelled images."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch
from torch import nn

from synthmed.data import load_dataset, make_subset
from synthmed.data.dataset import Dataset, Split
from synthmed.errors import SynthmedError
from synthmed.spec import RunSpec, coerce, method_label, non_default, protocol_label
from synthmed.train.recipes import get_recipe
from synthmed.train.teacher import fit_teacher, teacher_labels
from synthmed.train.trainer import TrainConfig, train_classifier


def toy(n_train: int = 400, n_val: int = 60, n_test: int = 20, seed: int = 0) -> Dataset:
    """Two classes, a bright square marking class 1; every image distinct enough to tell apart by its pixels."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> Split:
        labels = (np.arange(n) % 2).astype(np.int64)
        images = rng.integers(40, 90, (n, 28, 28)).astype(np.uint8)
        images[labels == 1, 10:18, 10:18] = 220
        return Split(images, labels)

    return Dataset("toy", "multi-class", ["a", "b"], split(n_train), split(n_val), split(n_test))


# ---------------------------------------------------------------------------------------------- the run field


def test_the_field_at_its_default_leaves_run_ids_and_labels_as_they_were():
    plain = RunSpec(dataset="pneumoniamnist", method="ddpm", seed=3)
    assert "unlabelled" not in non_default(plain) and "unlabelled" not in plain.key("md5")[0]
    assert plain.key("md5")[0] == dataclasses.replace(plain, unlabelled=None).key("md5")[0]
    assert plain.key("md5")[0] != dataclasses.replace(plain, unlabelled="all").key("md5")[0]
    config = dataclasses.asdict(dataclasses.replace(plain, unlabelled="all"))
    assert protocol_label(config) == "lowdata" and method_label(config) == "ddpm +all unlabelled"
    assert protocol_label(dataclasses.asdict(plain)) == "lowdata"


@pytest.mark.parametrize(("given", "value"), [("all", "all"), (" ALL ", "all"), ("400", 400), (400, 400)])
def test_the_field_takes_a_count_or_all(given, value):
    assert coerce("unlabelled", given) == value


@pytest.mark.parametrize(("given", "phrase"), [("0", "must be >= 1"), ("some", "an integer or 'all'"), (1.5, "")])
def test_a_bad_count_is_a_one_line_error(given, phrase):
    with pytest.raises(SynthmedError, match="--unlabelled") as err:
        coerce("unlabelled", given)
    assert phrase in str(err.value) and "\n" not in str(err.value)


def test_yaml_and_command_line_set_it_on_the_protocols(tmp_path):
    from synthmed.experiment.grid import expand, load_grid, override

    path = tmp_path / "exp.yaml"
    path.write_text(
        "datasets: pneumoniamnist\nprotocols: {protocol: lowdata, unlabelled: all}\nseeds: [0, 1]\n"
        "methods: [{method: pseudo-label, teacher: hard}]\n"
    )
    grid = load_grid(path)
    assert {s.unlabelled for s in expand(grid)} == {"all"}
    assert {s.unlabelled for s in expand(override(grid, {"unlabelled": "500"}))} == {500}


def test_only_the_runs_that_read_unlabelled_images_draw_them_and_they_pair_with_the_plain_rows(tmp_path, real_root):
    """none, copies and a generator without -p use_unlabelled read no unlabelled image: their runs are the plain
    runs (same ids, so a study without --unlabelled shares them), a note says so, and every row keeps the protocol
    of the labelled images, so the rows that read them are compared with the same none (run ids read the data:
    ``real_root`` skips the test without it)."""
    from synthmed.experiment.grid import expand, load_grid
    from synthmed.experiment.runner import Runner

    path = tmp_path / "exp.yaml"
    methods = (
        "[none, oversample, ddpm, {method: ddpm, params: {use_unlabelled: true}}, "
        "{method: cvae, params: {use_unlabelled: true}}, {method: pseudo-label, teacher: hard}]"
    )
    path.write_text(
        "datasets: pneumoniamnist\nprotocols: {protocol: lowdata, unlabelled: all}\nreal_curve: [25]\n"
        f"methods: {methods}\nseeds: [0]\n"
    )
    grid = load_grid(path)
    specs = expand(grid)
    drawn = {(s.method, bool(s.method_params)): s.unlabelled for s in specs if s.curve_per_class is None}
    assert drawn == {
        ("none", False): None,
        ("oversample", False): None,
        ("ddpm", False): None,
        ("ddpm", True): "all",
        ("cvae", True): "all",
        ("pseudo-label", False): "all",
    }
    assert all(s.unlabelled is None for s in specs if s.curve_per_class is not None)
    assert any("none, oversample read no unlabelled image" in n for n in grid.notes)
    path.write_text(path.read_text().replace("{protocol: lowdata, unlabelled: all}", "lowdata"))
    runner = Runner(tmp_path / "out", device="cpu")
    plain = {runner.run_id(s) for s in expand(load_grid(path))}
    assert sum(runner.run_id(s) in plain for s in specs) == 4  # none, oversample, ddpm and the curve point
    labels = {protocol_label(dataclasses.asdict(s)) for s in specs}
    assert labels == {"lowdata"}
    both = path.read_text().replace("protocols: lowdata", "protocols: [lowdata, {protocol: lowdata, unlabelled: 500}]")
    path.write_text(both)
    twice = expand(load_grid(path))  # none, copies, ddpm and the curve once; the readers at each count
    assert len(twice) == len({runner.run_id(s) for s in twice}) == 4 + 2 * 3


def test_the_command_line_option_takes_text():
    from synthmed.cli.options import schema_parameters

    [option] = schema_parameters(["unlabelled"])
    assert option.annotation == str | None and option.default.param_decls == ("--unlabelled",)


# ------------------------------------------------------------------------------------------------ the protocol


@pytest.mark.parametrize("protocol", ["lowdata", "fraction"])
def test_unlabelled_images_come_from_the_training_split_outside_the_run(protocol):
    data = toy()
    kwargs = {"per_class": 40} if protocol == "lowdata" else {"fraction": 0.2}
    plain = make_subset(data, protocol, seed=1, **kwargs)
    sub = make_subset(data, protocol, seed=1, unlabelled=50, **kwargs)
    idx = sub.unlabelled_indices
    assert len(idx) == 50 and (idx < len(data.train)).all()  # never an official validation (nor test) image
    assert not set(idx) & set(sub.train_indices) and not set(idx) & set(sub.val_indices)
    assert np.array_equal(sub.unlabelled, data.train.images[idx])
    assert np.array_equal(sub.unlabelled_audit, data.train.labels[idx])
    assert np.array_equal(sub.train_indices, plain.train_indices)  # the labelled draw does not move
    assert np.array_equal(sub.val_indices, plain.val_indices)
    assert sub.indices()["unlabelled"] == idx.tolist() and "unlabelled" not in plain.indices()
    assert plain.unlabelled is None and plain.params == {k: v for k, v in sub.params.items() if k != "unlabelled"}
    assert sub.unlabelled_balance(2) == np.bincount(data.train.labels[idx], minlength=2).tolist()


def test_the_draw_is_seeded_nested_and_all_takes_the_whole_pool():
    data = toy()
    small, large = (make_subset(data, "lowdata", seed=2, per_class=40, unlabelled=n) for n in (30, 90))
    assert set(small.unlabelled_indices) <= set(large.unlabelled_indices)
    again = make_subset(data, "lowdata", seed=2, per_class=40, unlabelled=30)
    assert np.array_equal(again.unlabelled_indices, small.unlabelled_indices)
    other = make_subset(data, "lowdata", seed=3, per_class=40, unlabelled=30)
    assert not np.array_equal(other.unlabelled_indices, small.unlabelled_indices)
    whole = make_subset(data, "lowdata", seed=2, per_class=40, unlabelled="all")
    used = set(whole.train_indices) | set(whole.val_indices)
    assert set(whole.unlabelled_indices) == set(range(len(data.train))) - used


def test_more_than_the_pool_is_a_one_line_error_naming_both_numbers():
    data = toy()
    pool = len(make_subset(data, "lowdata", seed=0, per_class=40, unlabelled="all").unlabelled)
    with pytest.raises(SynthmedError) as err:
        make_subset(data, "lowdata", seed=0, per_class=40, unlabelled=pool + 1)
    assert f"--unlabelled {pool + 1}" in str(err.value) and f"the {pool} training images" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(SynthmedError, match="none is left unlabelled"):
        make_subset(data, "full", unlabelled="all")


def test_pneumonia_lowdata_has_about_4400_unlabelled_images(real_root):
    data = load_dataset("pneumoniamnist", data_root=real_root)
    sub = make_subset(data, "lowdata", seed=0, unlabelled="all")
    assert 4300 < len(sub.unlabelled) < 4500 and sum(sub.unlabelled_balance(2)) == len(sub.unlabelled)


# -------------------------------------------------------------------------------------------- soft targets


def _train(data: Dataset, synthetic: tuple[np.ndarray, np.ndarray], class_weight: str | None = None):
    config = TrainConfig(
        get_recipe("medmnist", epochs=1, batch_size=4), precision="fp32", device="cpu", class_weight=class_weight
    )
    train = data.train.subset(np.arange(8))
    return train_classifier(
        train, data.val, data.test, 2, data.task, config, seed=5, synthetic=synthetic, synthetic_weight=0.5
    )


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_one_hot_soft_targets_train_as_hard_labels(class_weight):
    data = toy(n_train=12, n_val=4, n_test=2)
    images, labels = data.train.images[8:12], np.array([0, 0, 0, 1])
    hard = _train(data, (images, labels), class_weight)
    soft = _train(data, (images, np.eye(2, dtype=np.float32)[labels]), class_weight)
    for name, value in hard.model.state_dict().items():
        assert torch.allclose(value.float(), soft.model.state_dict()[name].float(), atol=1e-5), name
    assert soft.history[-1]["val_loss"] == pytest.approx(hard.history[-1]["val_loss"], abs=1e-5)


def test_soft_targets_of_the_wrong_shape_are_refused():
    data = toy(n_train=12, n_val=4, n_test=2)
    with pytest.raises(SynthmedError, match=r"shape \(N, 2\)"):
        _train(data, (data.train.images[8:12], np.full((4, 3), 1 / 3, dtype=np.float32)))


# ---------------------------------------------------------------------------------------------- the teacher


class Brightness(nn.Module):
    """A fixed 'classifier': the logit of class 1 grows with an image's mean brightness."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(8.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((1, 2, 3)) + 0.5
        return torch.stack([-m, m], 1) * self.scale


def test_the_threshold_keeps_exactly_the_confident_images_and_agreement_is_counted():
    images = np.repeat(np.linspace(0, 255, 21).astype(np.uint8), 28 * 28).reshape(21, 28, 28)
    probs = torch.softmax(Brightness()(torch.from_numpy(images / 127.5 - 1).float()[:, None]), 1).detach().numpy()
    intended = np.r_[np.zeros(10), np.ones(11)].astype(np.int64)[::-1].copy()  # half the images disagree
    out = teacher_labels(Brightness(), images, "multi-class", threshold=0.9, intended=intended)
    assert np.array_equal(out.kept, np.flatnonzero(probs.max(1) >= 0.9)) and 0 < len(out.kept) < 21
    assert np.array_equal(out.labels, probs.argmax(1)[out.kept]) and out.labels.dtype == np.int64
    assert out.agreement == pytest.approx(np.mean(probs.argmax(1) == intended))
    assert out.agreement_kept == pytest.approx(np.mean(probs.argmax(1)[out.kept] == intended[out.kept]))
    soft = teacher_labels(Brightness(), images, "multi-class", soft=True)
    assert len(soft.kept) == 21 and soft.agreement is None
    assert np.allclose(soft.labels, probs, atol=1e-6) and soft.labels.dtype == np.float32


def test_the_teacher_never_takes_a_test_split_nor_unlabelled_labels(monkeypatch):
    """Signature-level: what the teacher may read is what its functions take."""
    assert list(inspect.signature(fit_teacher).parameters) == ["train", "val", "n_classes", "task", "config", "seed"]
    assert list(inspect.signature(teacher_labels).parameters) == [
        "model",
        "images",
        "task",
        "soft",
        "threshold",
        "intended",
        "precision",
    ]
    import synthmed.train.teacher as teacher

    seen = {}
    monkeypatch.setattr(teacher, "train_classifier", lambda train, val, test, *a, **k: seen.update(test=test))
    data = toy()
    fit_teacher(data.train, data.val, 2, data.task, TrainConfig(get_recipe("medmnist", epochs=1)))
    assert seen["test"] is data.val  # the split scored once is the validation split, never test
    with pytest.raises(SynthmedError, match="single-label"):
        teacher_labels(Brightness(), data.test.images, "multi-label, binary-class")
    with pytest.raises(SynthmedError, match="threshold"):
        teacher_labels(Brightness(), data.test.images, data.task, threshold=1.0)


# ------------------------------------------------------------------------------------------- DDPM's null class

TINY = {
    "channels": (8, 16, 16),
    "attention": (False, False, False),
    "norm_groups": 8,
    "head_channels": 8,
    "batch_size": 16,
    "ddim_steps": 2,
    "device": "cpu",
    "precision": "fp32",
    "warmup": 1,
    "steps": 3,
    "label_dropout": 0.0,
}


def _ddpm(**params):
    pytest.importorskip("monai")
    from synthmed.augment import create_augmenter

    return create_augmenter("ddpm", **{**TINY, **params})


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.nets_.state_dict().items()}


def test_unlabelled_images_train_with_the_null_class_only(monkeypatch):
    from synthmed.augment.diffusion import DDPM

    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    batch: dict[str, torch.Tensor] = {}
    step = DDPM.train_step

    def record(module, args, kwargs):  # the conditioning the network receives, beside the batch it came from
        calls.append((batch["x"], batch["cond"], kwargs["class_labels"].clone()))

    def watched(self, x, cond, generator):
        if not batch:
            self.nets_["unet"].register_forward_pre_hook(record, with_kwargs=True)
        batch.update(x=x.clone(), cond=cond.clone())
        return step(self, x, cond, generator)

    monkeypatch.setattr(DDPM, "train_step", watched)
    data = toy(n_train=32)
    unlabelled = np.full((16, 28, 28), 255, dtype=np.uint8)  # all-white: told apart from the labelled images
    model = _ddpm(use_unlabelled=True).fit_with_unlabelled(data.train.images, data.train.labels, unlabelled, seed=0)
    assert len(calls) == 3
    rows = [(bool((x_i == 1).all()), c_i, l_i) for x, c, labels in calls for x_i, c_i, l_i in zip(x, c, labels)]
    assert any(white for white, _, _ in rows) and not all(white for white, _, _ in rows)
    for white, cond, label in rows:
        assert int(label) == (2 if white else int(cond.argmax())), "null class (2) for unlabelled images only"
    assert model.diagnostics()["unlabelled_images"] == 16 and model.n_unlabelled_ == 16


def test_with_use_unlabelled_off_the_fit_ignores_them_and_keeps_its_cache_key(tmp_path):
    data = toy(n_train=32)
    unlabelled = np.full((16, 28, 28), 255, dtype=np.uint8)
    without = _ddpm().fit(data.train.images, data.train.labels, seed=0)
    ignoring = _ddpm().fit_with_unlabelled(data.train.images, data.train.labels, unlabelled, seed=0)
    assert ignoring.n_unlabelled_ == 0 and "unlabelled_images" not in ignoring.diagnostics()
    assert all(torch.equal(v, _weights(ignoring)[k]) for k, v in _weights(without).items())
    assert "use_unlabelled" not in without.config()  # the preset's new default leaves cache keys as they were
    using = _ddpm(use_unlabelled=True).fit_with_unlabelled(data.train.images, data.train.labels, unlabelled, seed=0)
    assert using.config()["use_unlabelled"] is True
    assert not all(torch.equal(v, _weights(using)[k]) for k, v in _weights(without).items())
    using.save(tmp_path / "g.pt")
    assert type(using).load(tmp_path / "g.pt").diagnostics()["unlabelled_images"] == 16
    with pytest.raises(SynthmedError, match="use_unlabelled"):
        _ddpm(use_unlabelled="yes").check()


# ------------------------------------------------------------------------------------------------ the poison


def test_poisoned_unlabelled_labels_change_nothing_but_the_audit():
    """The true labels of the unlabelled images are replaced by -1 in the dataset itself: the run's training arrays
    and a short DDPM fit on them are unchanged. (``fraction`` draws its labelled images without reading labels;
    ``lowdata`` draws per class, so it reads every label of the pool by design, before any is hidden.)"""
    data = toy()
    clean = make_subset(data, "fraction", seed=4, fraction=0.1, unlabelled=40)
    labels = data.train.labels.copy()
    labels[clean.unlabelled_indices] = -1
    poisoned_data = dataclasses.replace(data, train=Split(data.train.images, labels))
    poisoned = make_subset(poisoned_data, "fraction", seed=4, fraction=0.1, unlabelled=40)
    assert (poisoned.unlabelled_audit == -1).all()  # the audit reads them; nothing else may
    for name in ("train_indices", "val_indices", "unlabelled_indices", "unlabelled"):
        assert np.array_equal(getattr(clean, name), getattr(poisoned, name)), name
    for split in ("train", "val"):
        for part in ("images", "labels"):
            assert np.array_equal(getattr(getattr(clean, split), part), getattr(getattr(poisoned, split), part))
    fits = [
        _ddpm(use_unlabelled=True).fit_with_unlabelled(s.train.images, s.train.labels, s.unlabelled, seed=0)
        for s in (clean, poisoned)
    ]
    assert all(torch.equal(v, _weights(fits[1])[k]) for k, v in _weights(fits[0]).items())


def test_a_run_gives_its_generator_the_unlabelled_images_only_where_it_uses_them(tmp_path, monkeypatch):
    """The runner's fit: ddpm with use_unlabelled gets the subset's unlabelled images (never their labels) and keys
    its cache by their indices too; ddpm without it, and any other generator, gets none."""
    from synthmed.augment.diffusion import DDPM
    from synthmed.experiment.synthetic_set import fit_generator, generator_key

    data = toy(n_train=64)
    subset = make_subset(data, "fraction", seed=0, fraction=0.25, unlabelled=8)
    plain = make_subset(data, "fraction", seed=0, fraction=0.25)
    seen: list[object] = []
    monkeypatch.setattr(
        DDPM, "fit", lambda self, *a, **k: seen.append(getattr(self, "_unlabelled_pending", None)) or self
    )
    monkeypatch.setattr(DDPM, "save", lambda self, path: None)
    fit_generator(_ddpm(use_unlabelled=True), data, subset, 0, tmp_path / "a")
    fit_generator(_ddpm(), data, subset, 0, tmp_path / "b")
    assert np.array_equal(seen[0], subset.unlabelled) and seen[1] is None
    using = _ddpm(use_unlabelled=True)
    assert generator_key(using, data, subset, 0) != generator_key(using, data, plain, 0)
    assert generator_key(_ddpm(), data, subset, 0) == generator_key(_ddpm(), data, plain, 0)


# ---------------------------------------------------------------------------------------- the share of a batch


def test_without_unlabelled_images_the_batches_are_the_plain_seeded_permutation():
    from synthmed.augment.generative import _BatchPlan

    plan = _BatchPlan(21, 21, {"batch_size": 4}, torch.Generator().manual_seed(3))
    order = torch.randperm(21, generator=torch.Generator().manual_seed(3))
    batches = plan.epoch()
    assert torch.equal(torch.cat(batches), order[:20]) and [len(b) for b in batches] == [4] * 5  # a batch of 1 dropped
    assert plan.per_epoch == 5 and plan.images_per_epoch == 20


def test_unlabelled_images_fill_their_share_of_every_batch_and_each_is_used_before_any_repeats():
    from synthmed.augment.generative import _BatchPlan

    n_labelled, n_unlabelled = 30, 1000
    plan = _BatchPlan(n_labelled + n_unlabelled, n_labelled, {"batch_size": 8, "unlabelled_share": 0.25}, None)
    plan.generator = torch.Generator().manual_seed(0)
    epochs = [plan.epoch() for _ in range(3)]
    for batches in epochs:
        labelled = torch.cat([b[b < n_labelled] for b in batches])
        assert sorted(labelled.tolist()) == list(range(n_labelled))  # an epoch: one pass over the labelled images
        assert all((b >= n_labelled).sum() == 2 for b in batches) and len(batches) == plan.per_epoch == 5
    used = torch.cat([b[b >= n_labelled] for batches in epochs for b in batches])
    assert len(used) == len(set(used.tolist())) == 30  # no unlabelled image twice while others wait
    half = _BatchPlan(30 + 100, 30, {"batch_size": 8}, torch.Generator().manual_seed(0))  # default share: half
    assert all((b >= 30).sum() == 4 for b in half.epoch())
    few = _BatchPlan(30 + 3, 30, {"batch_size": 8}, torch.Generator().manual_seed(0))  # never more than there are
    assert all((b >= 30).sum() == 3 and len(set(b.tolist())) == len(b) for b in few.epoch())


def test_a_bad_share_is_a_one_line_error():
    from synthmed.augment import create_augmenter

    for bad in (0, 1, 1.5, "half"):
        with pytest.raises(SynthmedError, match="unlabelled_share") as err:
            create_augmenter("cvae", unlabelled_share=bad).check()
        assert "\n" not in str(err.value)


def test_the_conditional_vae_trains_unlabelled_images_with_an_empty_label_input(monkeypatch, tmp_path):
    from synthmed.augment import create_augmenter
    from synthmed.augment.vae import ConditionalVAE

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    step = ConditionalVAE.train_step

    def watched(self, x, cond, generator):
        seen.append((x.clone(), cond.clone()))
        return step(self, x, cond, generator)

    monkeypatch.setattr(ConditionalVAE, "train_step", watched)
    data = toy(n_train=32)
    white = np.full((40, 28, 28), 255, dtype=np.uint8)
    params = {"epochs": 2, "batch_size": 8, "latent_dim": 4, "hidden": (16,)}
    model = create_augmenter("cvae", use_unlabelled=True, **params)
    model.fit_with_unlabelled(data.train.images, data.train.labels, white, seed=0)
    rows = [(bool((x_i == 1).all()), c_i) for x, c in seen for x_i, c_i in zip(x, c)]
    assert len(seen) == 2 * 8  # two passes over 32 labelled images, 4 per batch
    assert sum(is_white for is_white, _ in rows) == 64
    assert all((c.sum() == 0) == is_white for is_white, c in rows), "no class for unlabelled images only"
    assert model.diagnostics()["unlabelled_images"] == 40 and model.config()["use_unlabelled"] is True
    plain = create_augmenter("cvae", **params)
    plain.fit_with_unlabelled(data.train.images, data.train.labels, white, seed=0)
    assert plain.n_unlabelled_ == 0 and "use_unlabelled" not in plain.config()  # off: ignored, configs as before
    assert model.sample({0: 2, 1: 2}, seed=0)[0].shape == (4, 28, 28)


def test_a_run_gives_the_conditional_vae_its_unlabelled_images(tmp_path):
    from synthmed.augment import create_augmenter
    from synthmed.experiment.synthetic_set import fit_generator

    data = toy(n_train=64)
    subset = make_subset(data, "fraction", seed=0, fraction=0.25, unlabelled=8)
    params = {"epochs": 1, "batch_size": 8, "latent_dim": 4, "hidden": (16,), "use_unlabelled": True}
    fitted, cached, _, path = fit_generator(create_augmenter("cvae", **params), data, subset, 0, tmp_path)
    assert not cached and fitted.n_unlabelled_ == 8
    again, cached, _, _ = fit_generator(create_augmenter("cvae", **params), data, subset, 0, tmp_path)
    assert cached and again.diagnostics()["unlabelled_images"] == 8


def test_a_run_records_the_class_balance_of_its_unlabelled_images_and_the_report_says_it(tmp_path, monkeypatch):
    from synthmed.experiment.runner import Runner
    from synthmed.report.sections import header

    data = toy(n_train=120)
    monkeypatch.setattr(Runner, "dataset", lambda self, spec: data)
    spec = RunSpec("toy", protocol="fraction", fraction=0.2, unlabelled=30, epochs=1, precision="fp32")
    record = Runner(tmp_path / "out", device="cpu").run(spec)
    subset = make_subset(data, "fraction", seed=0, fraction=0.2, unlabelled=30)
    expected = dict(zip(data.class_names, subset.unlabelled_balance(2)))
    assert record["metrics"]["unlabelled"] == {"images": 30, "per_class": expected}
    line = header([record])[-1]
    assert line.startswith("unlabelled images: 30 per run in 1 runs") and f"a {expected['a'] / 30:.0%}" in line
    plain = Runner(tmp_path / "plain", device="cpu").run(RunSpec("toy", protocol="fraction", fraction=0.2, epochs=1))
    assert "unlabelled" not in plain["metrics"] and not header([plain])[-1].startswith("unlabelled")


def test_a_run_on_a_dataset_with_its_own_unlabelled_images_records_and_reports_those_of_unknown_class(
    tmp_path, monkeypatch
):
    from synthmed.experiment.runner import Runner
    from synthmed.report.sections import header

    data = dataclasses.replace(toy(n_train=120), unlabelled=np.full((25, 28, 28), 90, dtype=np.uint8))
    monkeypatch.setattr(Runner, "dataset", lambda self, spec: data)
    spec = RunSpec("toy", protocol="full", unlabelled="all", epochs=1, precision="fp32")  # drawn, as a spec says
    record = Runner(tmp_path / "out", device="cpu").run(spec)
    assert record["metrics"]["unlabelled"] == {"images": 25, "per_class": {"a": 0, "b": 0}, "unknown": 25}
    assert header([record])[-1].endswith("classes (audit only): 25 per run of the dataset's own, class unknown")
    mixed = {"metrics": {"unlabelled": {"images": 30, "per_class": {"a": 5, "b": 0}, "unknown": 25}}}
    assert "a 100%, b 0% of those with a known class; 25 per run" in header_line(header, mixed)


def header_line(header, record: dict) -> str:
    base = {"total_time": 1.0, "device": "cpu", "precision": "fp32", "created": "x", "versions": {}}
    return header([{**base, **record}])[-1]


def test_references_and_teachers_are_shared_by_runs_with_and_without_unlabelled_images():
    from synthmed.audit.reference import reference_key

    data = toy(n_train=64)
    plain = make_subset(data, "fraction", seed=0, fraction=0.25)
    drawing = make_subset(data, "fraction", seed=0, fraction=0.25, unlabelled=8)
    assert reference_key(data, plain, 0, 20) == reference_key(data, drawing, 0, 20)


# ------------------------------------------------------------------------------------------- the memorisation audit


def test_memorisation_is_measured_against_the_unlabelled_images_a_generator_learnt_from():
    """A set of copies of unlabelled images is memorised where its generator saw them, and not otherwise; the audit
    of a run whose method read them names them (seen_unlabelled), that of a plain generator does not."""
    from synthmed.audit.synthetic import audit_set
    from synthmed.experiment.synthetic_set import seen_images, seen_unlabelled

    data = toy(n_train=200)
    subset = make_subset(data, "fraction", seed=0, fraction=0.25, unlabelled=100)
    assert subset.unlabelled is not None
    copies, labels = subset.unlabelled[:20], np.zeros(20, dtype=np.int64)
    unseen = audit_set(copies, labels, subset.train, held_out=subset.val)
    seen = audit_set(copies, labels, subset.train, held_out=subset.val, also_seen=subset.unlabelled)
    assert unseen.memorised_share == 0.0 and seen.memorised_share == 1.0
    assert seen.details["memorisation"]["n_unlabelled_seen"] == 100
    using, plain = _ddpm(use_unlabelled=True), _ddpm()
    assert seen_unlabelled(using, subset) is subset.unlabelled and seen_unlabelled(plain, subset) is None
    assert len(seen_images(using, subset)) == len(subset.train) + 100
    assert seen_images(plain, subset) is subset.train.images


def test_a_generator_told_to_use_unlabelled_images_without_any_is_refused_before_anything_runs(tmp_path, monkeypatch):
    pytest.importorskip("monai")
    from synthmed.experiment.runner import Runner

    data = toy()
    monkeypatch.setattr(Runner, "dataset", lambda self, spec: data)
    runner = Runner(tmp_path / "out", device="cpu")
    spec = RunSpec("toy", real_per_class=8, method="ddpm", method_params={**TINY, "use_unlabelled": True})
    with pytest.raises(SynthmedError) as err:
        runner.validate([spec])
    assert "give --unlabelled N or all" in str(err.value) and "\n" not in str(err.value)
    runner.validate([dataclasses.replace(spec, unlabelled=50)])
    assert not (tmp_path / "out").exists()
