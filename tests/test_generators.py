"""Chaptoukaev 2021's generative augmenters (ae, cvae, cgan and their conv variants) on real BreastMNIST images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from synthmed.augment import Kind, create_augmenter, preset
from synthmed.augment.gan import ConditionalGAN
from synthmed.augment.gan_losses import BCEGanLoss
from synthmed.augment.generative import TorchGenerator
from synthmed.data import load_dataset
from synthmed.errors import SynthmedError
from synthmed.tensors import to_tensor, to_uint8

METHODS = ["ae", "conv-ae", "cvae", "conv-cvae", "cgan", "conv-cgan"]
COUNTS = {0: 5, 1: 7}


@pytest.fixture(scope="module")
def breast(real_root):
    return load_dataset("breastmnist", data_root=real_root)


@pytest.fixture(scope="module")
def small(breast):
    """The first 128 real training images: enough for both classes, fast to fit."""
    return breast.train.images[:128], breast.train.labels[:128]


@pytest.fixture(scope="module", params=METHODS)
def fitted(request, small) -> TorchGenerator:
    return create_augmenter(request.param, epochs=2, device="cpu").fit(*small, seed=0)


def test_sample_has_the_real_layout_and_the_requested_labels(fitted):
    images, labels = fitted.sample(COUNTS, seed=1)
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [0] * 5 + [1] * 7
    assert fitted.kind is Kind.SET and fitted.n_classes_ == 2 and fitted.image_shape_ == (28, 28)
    assert [row["epoch"] for row in fitted.history_] == [1, 2]
    assert all(np.isfinite(v) for row in fitted.history_ for v in row.values())
    assert fitted.config()["method"] == fitted.name and fitted.config()["epochs"] == 2


def test_save_load_reproduces_samples_byte_for_byte(fitted, tmp_path):
    before = fitted.sample(COUNTS, seed=3)
    fitted.save(tmp_path / "model.pt")
    loaded = TorchGenerator.load(tmp_path / "model.pt")
    assert type(loaded) is type(fitted) and loaded.params == fitted.params and loaded.history_ == fitted.history_
    after = loaded.sample(COUNTS, seed=3)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert not np.array_equal(before[0], loaded.sample(COUNTS, seed=4)[0])
    assert type(fitted).load(tmp_path / "model.pt").sample(COUNTS, seed=3)[0].tobytes() == before[0].tobytes()
    # the digest a record keeps of the weights: the same for the loaded copy, another for other weights
    assert loaded.weights_digest() == fitted.weights_digest() and len(fitted.weights_digest()) == 16
    with torch.no_grad():
        next(iter(loaded.nets_.values())).parameters().__next__().add_(1e-3)
    assert loaded.weights_digest() != fitted.weights_digest()


def test_same_seed_same_model(fitted, small):
    again = create_augmenter(fitted.name, epochs=2, device="cpu").fit(*small, seed=0)
    assert again.history_ == fitted.history_
    assert np.array_equal(again.sample(COUNTS, seed=1)[0], fitted.sample(COUNTS, seed=1)[0])


@pytest.mark.parametrize("method", METHODS)
def test_nan_loss_is_refused_and_leaves_no_model(method, small, monkeypatch):
    """Poison the first network's output: the NaN reaches every method's loss before any optimizer step."""
    augmenter = create_augmenter(method, epochs=2, device="cpu")
    build = type(augmenter).build

    def poisoned(self, *args):
        nets = build(self, *args)
        next(iter(nets.values())).register_forward_hook(lambda module, inputs, output: output * float("nan"))
        return nets

    monkeypatch.setattr(type(augmenter), "build", poisoned)
    with pytest.raises(SynthmedError, match=rf"^{method}: \w+ became nan at epoch 1; lower the learning rate"):
        augmenter.fit(*small, seed=0)
    with pytest.raises(SynthmedError, match="call fit"):
        augmenter.sample(COUNTS)


def test_a_diverging_learning_rate_is_caught(small):
    with pytest.raises(SynthmedError, match="lower the learning rate"):
        create_augmenter("cvae", epochs=5, lr=1e6, device="cpu").fit(*small, seed=0)


def test_cvae_samples_carry_their_class(breast):
    """A classifier trained on real pixels recognises the intended class of cVAE samples above chance."""
    flat = breast.train.images.reshape(len(breast.train), -1) / 255.0
    classifier = LogisticRegression(class_weight="balanced", max_iter=2000).fit(flat, breast.train.labels)
    cvae = create_augmenter("cvae", epochs=40, device="cpu").fit(breast.train.images, breast.train.labels, seed=0)
    images, labels = cvae.sample({0: 200, 1: 200}, seed=0)
    accuracy = np.mean(classifier.predict(images.reshape(len(images), -1) / 255.0) == labels)
    assert accuracy > 0.6, accuracy


def test_ae_reuses_sources_only_beyond_the_class_size(small):
    images, labels = small
    ae = create_augmenter("ae", epochs=1, device="cpu").fit(images, labels, seed=0)
    sources = {img.tobytes(): i for i, img in enumerate(images)}

    def drawn(label: int, n: int) -> list[int]:
        inputs = ae.sample_inputs(torch.full((n,), label), torch.Generator().manual_seed(0))
        return [sources[img.tobytes()] for img in to_uint8(inputs)]

    size = int((labels == 0).sum())
    few = drawn(0, size - 3)
    assert len(set(few)) == size - 3 and all(labels[i] == 0 for i in few)
    many = np.bincount(drawn(0, 2 * size + 3), minlength=len(images))[labels == 0]
    assert sorted(set(many.tolist())) == [2, 3] and (many == 3).sum() == 3


@pytest.mark.parametrize("method", METHODS)
def test_rgb_64px_images(method):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    augmenter = create_augmenter(method, epochs=1, batch_size=8, device="cpu").fit(images, np.arange(12) % 3, seed=0)
    out, labels = augmenter.sample({0: 2, 2: 1}, seed=0)
    assert out.shape == (3, 64, 64, 3) and out.dtype == np.uint8 and labels.tolist() == [0, 0, 2]


def test_gan_loss_is_pluggable(small):
    """A new objective is a GanLoss subclass: the shared step calls its penalty and after-critic hooks."""
    calls = {"penalty": 0, "after": 0}

    class Recording(BCEGanLoss):
        def penalty(self, critic, real, fake, cond):
            calls["penalty"] += 1
            return critic(real, cond).pow(2).mean() * 0.0

        def after_critic_step(self, critic):
            calls["after"] += 1

    class Variant(ConditionalGAN):
        def make_loss(self):
            return Recording()

    Variant("cgan", **{**preset("cgan"), "epochs": 1, "device": "cpu"}).fit(*small, seed=0)
    assert calls == {"penalty": 1, "after": 1}  # 128 images, batch 128: one step


def test_uint8_round_trip_is_exact():
    grey = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    rgb = np.stack([grey, grey[:, ::-1], grey.transpose(0, 2, 1)], -1)
    assert np.array_equal(to_uint8(to_tensor(grey)), grey) and np.array_equal(to_uint8(to_tensor(rgb)), rgb)
    assert to_uint8(torch.tensor([[[[-3.0, 2.0]]]])).tolist() == [[[0, 255]]]


def test_bad_use_is_one_line_error(small, tmp_path):
    with pytest.raises(SynthmedError, match="epochs=0"):
        create_augmenter("cvae", epochs=0).check()
    with pytest.raises(SynthmedError, match="betas"):
        create_augmenter("cgan", betas=(2, 0.9)).check()
    with pytest.raises(SynthmedError, match="has no parameter 'width'; its parameters: arch, batch_size"):
        create_augmenter("ae", width=8)
    with pytest.raises(SynthmedError, match="call fit"):
        create_augmenter("cgan").sample(COUNTS)
    with pytest.raises(SynthmedError, match="multi-label"):
        create_augmenter("cvae").fit(small[0], np.zeros((128, 3), dtype=np.int64))
    cvae = create_augmenter("cvae", epochs=1, device="cpu").fit(*small, seed=0)
    with pytest.raises(SynthmedError, match="cannot generate class 5"):
        cvae.sample({5: 1})
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(SynthmedError, match="not a saved generative augmenter"):
        TorchGenerator.load(tmp_path / "other.pt")
    cvae.save(tmp_path / "cvae.pt")
    with pytest.raises(SynthmedError, match="holds a 'cvae' model, not a ConditionalGAN"):
        ConditionalGAN.load(tmp_path / "cvae.pt")


def test_a_fit_reports_its_progress_where_asked_and_only_when_it_runs_long(small, monkeypatch):
    import synthmed.augment.generative as generative

    lines: list[str] = []
    with generative.fit_progress(lines.append):
        create_augmenter("cvae", epochs=3, device="cpu").fit(*small, seed=0)
    assert lines == []  # a fit shorter than PROGRESS_EVERY_S says nothing
    monkeypatch.setattr(generative, "PROGRESS_EVERY_S", 0.0)
    with generative.fit_progress(lines.append):
        create_augmenter("cvae", epochs=3, device="cpu").fit(*small, seed=0)
    create_augmenter("cvae", epochs=2, device="cpu").fit(*small, seed=0)  # outside the block: nobody told
    assert [line.split(",")[0] for line in lines] == ["epoch 1/3 (33 %)", "epoch 2/3 (67 %)", "epoch 3/3 (100 %)"]
    assert "loss" in lines[0] and "left" in lines[0] and "so far" in lines[-1] and "left" not in lines[-1]
