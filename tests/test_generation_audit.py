"""Audit of synthetic sets: memorisation, collapse, loss checks, class fidelity, export, plots, `synthmed generate`."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from synthmed.augment import method_class
from synthmed.augment.export import export_synthetic, read_synthetic
from synthmed.data import load_dataset, make_subset
from synthmed.errors import SynthmedError
from synthmed.metrics.memorisation import audit, check_losses, collapse, memorisation, nearest
from synthmed.report.figures import closest_pairs, image_grid, loss_curves

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def breast(real_root):
    return load_dataset("breastmnist", data_root=real_root)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG)
    return Image.open(io.BytesIO(data)).size


def test_nearest_matches_brute_force_across_chunks():
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 256, (23, 5, 5, 3), dtype=np.uint8)
    query_index = np.array([0, 4, 22, 9])
    dist, index = nearest(reference[query_index], reference, query_index=query_index, chunk=3)
    flat = reference.reshape(23, -1).astype(np.float64) / 255
    full = np.linalg.norm(flat[query_index, None] - flat[None], axis=2)
    full[np.arange(4), query_index] = np.inf  # self-matches excluded
    assert index.tolist() == full.argmin(1).tolist()
    assert np.allclose(dist, full.min(1), atol=1e-5)


def test_memorisation_flags_exact_copies_and_not_noise(breast, noise):
    train = breast.train.images
    copies = memorisation(train[100:140], train, held_out=breast.val.images)
    assert copies["ratio"] == [0.0] * 40 and copies["near_copy_share"] == 1.0 and copies["flagged"]
    assert copies["closest"][0]["ratio"] == 0.0
    assert all(np.array_equal(train[100 + p["synthetic"]], train[p["train"]]) for p in copies["closest"])
    # BreastMNIST holds near-duplicate scans: some real validation images are near-copies too (the baseline).
    assert 0 < copies["held_out_near_copy_share"] < 0.2 and copies["n_held_out"] == len(breast.val)
    fresh = memorisation(noise, train, held_out=breast.val.images)
    assert fresh["near_copy_share"] == 0.0 and not fresh["flagged"] and fresh["ratio_stats"]["min"] > 1
    assert fresh["train_nn_median"] == copies["train_nn_median"] > 0


def test_collapse_flags_identical_samples_and_not_real_images(breast):
    train = breast.train
    same = collapse(np.repeat(train.images[:2], 15, axis=0), np.repeat([0, 1], 15), train.images, train.labels)
    assert same["flagged"] and same["collapsed_classes"] == [0, 1] and same["min_diversity"] == 0.0
    assert same["duplicate_share"] == pytest.approx(28 / 30)
    real = collapse(breast.test.images, breast.test.labels, train.images, train.labels)
    assert not real["flagged"] and 0.8 < real["min_diversity"] < 1.2 and real["duplicate_share"] == 0.0


def test_check_losses_flags_nan_and_inf():
    assert not check_losses([{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}])["flagged"]
    bad = check_losses([{"epoch": 1, "d_loss": 0.7, "g_loss": math.nan}, {"epoch": 2, "d_loss": math.inf}])
    assert bad["flagged"] and [(b["epoch"], b["loss"]) for b in bad["nonfinite"]] == [(1, "g_loss"), (2, "d_loss")]


def test_autoencoder_reconstructions_are_not_a_memorisation_failure(breast):
    assert method_class("ae").reconstructs and method_class("conv-ae").reconstructs
    assert not method_class("cvae").reconstructs and not method_class("cgan").reconstructs
    train, history = breast.train, [{"epoch": 1, "loss": 0.1}]
    copies = (train.images[:20], train.labels[:20])
    plain = audit(*copies, train.images, train.labels, history)
    assert plain["flags"] == ["memorisation"] and not plain["ok"]
    by_design = audit(*copies, train.images, train.labels, history, reconstructions=True)
    assert by_design["ok"] and by_design["reconstructions_by_design"]
    assert "by design" in by_design["memorisation"]["note"]
    assert by_design["memorisation"]["near_copy_share"] == 1.0  # still measured and reported


def test_export_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 28, 28, 3), dtype=np.uint8), np.array([0, 0, 2, 2, 2, 1, 0])
    provenance = {
        "method": "cvae",
        "config": {"epochs": 2},
        "seed": 3,
        "dataset": "bloodmnist",
        "dataset_md5": "abc",
        "subset": {"train": [5, 9]},
        "n_classes": 4,
    }
    sidecar = export_synthetic(tmp_path / "set.npz", images, labels, provenance)
    with np.load(tmp_path / "set.npz", allow_pickle=False) as archive:
        assert np.array_equal(archive["train_images"], images)
        assert archive["train_labels"].dtype == np.uint8 and archive["train_labels"].shape == (7, 1)
        assert archive["train_labels"][:, 0].tolist() == labels.tolist()
        assert archive["val_images"].shape == (0, 28, 28, 3) and archive["test_labels"].shape == (0, 1)
    meta = json.loads(sidecar.read_text())
    assert sidecar == tmp_path / "set.json" and {**meta, **provenance} == meta
    assert meta["counts_per_class"] == [3, 1, 3, 0] and meta["n_images"] == 7 and meta["synthmed_version"]
    back_images, back_labels, back_meta = read_synthetic(tmp_path / "set.npz")
    assert np.array_equal(back_images, images) and back_labels.tolist() == labels.tolist() and back_meta == meta
    (tmp_path / "set.npz").write_bytes((tmp_path / "set.npz").read_bytes()[:-10])
    with pytest.raises(SynthmedError, match="SHA-256"):
        read_synthetic(tmp_path / "set.npz")
    with pytest.raises(SynthmedError, match=".npz"):
        export_synthetic(tmp_path / "set.txt", images, labels, provenance)


def test_plots_are_valid_pngs(breast, noise):
    train = breast.train
    synth_labels = np.repeat([0, 1], 20)
    grid = image_grid(train.images, train.labels, noise, synth_labels, breast.class_names, n_per_row=10)
    width, height = png_size(grid)
    assert height > width / 2  # 2 classes x (1 real + 2 synthetic rows) of 10 images
    minority_only = image_grid(
        train.images, train.labels, noise[:20], np.zeros(20, dtype=np.int64), breast.class_names, n_per_row=10
    )
    assert png_size(minority_only)[1] < height  # the class without synthetic images gets no blank rows
    rgb = np.random.default_rng(0).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    assert png_size(image_grid(rgb, np.arange(12) % 3, rgb, np.arange(12) % 3, ["a", "b", "c"], n_per_row=4))
    assert png_size(loss_curves([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": math.nan}], "cvae"))
    pairs = memorisation(noise[:5], train.images, n_pairs=3)["closest"]
    assert png_size(closest_pairs(noise[:5], train.images, pairs))[0] > 0


@pytest.mark.slow
def test_generate_end_to_end(real_root, tmp_path, cli):
    """In this process (the `python -m synthmed` entry point is tested by the CLI's killed run): two interpreters,
    each importing torch, were most of this test's time."""
    out = tmp_path / "synthetic" / "cvae.npz"
    base = [
        "generate",
        "--dataset",
        "breastmnist",
        "--protocol",
        "lowdata",
        "--epochs",
        "2",
        "--per-class",
        "5",
        "--seed",
        "0",
        "--device",
        "cpu",
    ]
    result = cli(*base, "--method", "cvae", "--out", str(out), root=real_root)
    assert result.returncode == 0, result.stderr
    with np.load(out, allow_pickle=False) as archive:
        assert archive["train_images"].shape == (10, 28, 28) and archive["train_images"].dtype == np.uint8
        assert archive["train_labels"][:, 0].tolist() == [0] * 5 + [1] * 5
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["method"] == "cvae" and meta["config"]["epochs"] == 2 and meta["seed"] == 0
    assert meta["dataset"] == "breastmnist" and meta["dataset_md5"] == "750601b1f35ba3300ea97c75c52ff8f6"
    assert len(meta["subset"]["train"]) == 546 and meta["counts_per_class"] == [5, 5]
    for suffix in ("grid", "losses", "closest"):
        assert (tmp_path / "synthetic" / f"cvae_{suffix}.png").read_bytes().startswith(PNG)
    report = json.loads((tmp_path / "synthetic" / "cvae_audit.json").read_text())
    assert report["losses"]["epochs"] == 2 and not report["losses"]["flagged"]
    assert report["reconstructions_by_design"] is False and len(report["memorisation"]["ratio"]) == 10
    assert report["flags"] == meta["audit_flags"] and len(report["collapse"]["per_class"]) == 2
    refused = cli(*base, "--method", "flip", "--out", str(tmp_path / "flip.npz"), root=real_root)
    assert refused.returncode == 2 and "does not generate images" in refused.stderr
    assert not (tmp_path / "flip.npz").exists()


@pytest.mark.slow
def test_class_fidelity_of_real_images_is_the_reference_accuracy(breast, tmp_path):
    from synthmed.audit.reference import class_fidelity, reference_classifier, reference_key

    subset = make_subset(breast, "lowdata", seed=0, per_class=20)
    first = reference_classifier(breast, subset, 0, tmp_path, epochs=1, device="cpu", precision="fp32")
    assert not first.cached and first.path.exists()
    test = breast.test
    fid = class_fidelity(first.model, test.images, test.labels, breast.task, "fp32")
    assert fid["accuracy"] == pytest.approx(first.meta["test"]["acc"], abs=1e-12)
    per_class = np.array(fid["per_class"]) @ np.array(fid["counts"]) / len(test)
    assert per_class == pytest.approx(fid["accuracy"]) and fid["chance"] == 0.5
    again = reference_classifier(breast, subset, 0, tmp_path, epochs=1, device="cpu", precision="fp32")
    assert again.cached and again.path == first.path
    assert class_fidelity(again.model, test.images, test.labels, breast.task, "fp32") == fid
    assert reference_key(breast, subset, 1, 1) != reference_key(breast, subset, 0, 1)
    # 40 training images: the batch is halved to 8 so an epoch still takes several steps, and the key says so
    assert reference_key(breast, subset, 0, 1)["batch_size"] == 8
    # the level class fidelity is read against: the reference's recall on each class's real validation images
    val = class_fidelity(first.model, subset.val.images, subset.val.labels, breast.task, "fp32")
    assert first.meta["val"]["recall"] == pytest.approx(val["per_class"])


def test_reference_batch_keeps_enough_steps_per_epoch():
    from synthmed.audit.reference import reference_batch_size

    # BreastMNIST's 546 images keep the medmnist recipe's 128 (and their cached references); PneumoniaMNIST's 5 %
    # subset (236) trains with 32, not 2 steps an epoch; the batch never drops below 8
    assert [reference_batch_size(n, 128) for n in (5000, 546, 236, 40, 3)] == [128, 128, 32, 8, 8]


def test_reference_recall_is_weighted_by_the_synthetic_counts():
    from synthmed.audit.synthetic import reference_recall

    def recall(counts: dict[int, int], recall: list[float] | None) -> float | None:
        details = {"fidelity": {"reference": {"val": {"recall": recall}}}} if recall is not None else {}
        return reference_recall(details, counts)

    assert recall({0: 114, 1: 0}, [0.25, 0.99]) == pytest.approx(0.25)  # only the minority
    assert recall({0: 1, 1: 3}, [0.2, 0.6]) == pytest.approx(0.5)
    assert recall({0: 5}, None) is None  # runs recorded before the recall was
