"""Generators made for small data: class-conditional DDPM on MONAI, DiffAugment inside the GAN loop, EMA weights,
and the generator checkpoint chosen by validation FID."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthmed.augment import create_augmenter
from synthmed.augment.diffaugment import DiffAugment
from synthmed.errors import SynthmedError
from synthmed.spec import SyntheticLevers

pytest.importorskip("monai")

TINY = {
    "channels": (8, 16, 16),
    "attention": (False, False, False),
    "norm_groups": 8,
    "head_channels": 8,
    "batch_size": 16,
    "ddim_steps": 5,
    "device": "cpu",
    "precision": "fp32",
    "warmup": 1,
}


def two_classes(n: int = 48, size: int = 28, rgb: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    shape = (n, size, size, 3) if rgb else (n, size, size)
    images = rng.integers(40, 90, shape).astype(np.uint8)
    images[labels == 1, size // 3 : 2 * size // 3, size // 3 : 2 * size // 3] = 220
    return images, labels


@pytest.mark.slow
def test_a_few_dozen_ddpm_steps_lower_the_denoising_loss_on_breastmnist(real_root):
    """96 images in batches of 16 make 8 epochs of 48 steps, so the first and last three epochs do not overlap; the
    loss falls to about 0.17 of its start on seeds 0-2 (300 steps over all 546 images took ten times the CPU)."""
    from synthmed.data import load_dataset

    train = load_dataset("breastmnist", data_root=real_root).train
    model = create_augmenter("ddpm", **{**TINY, "steps": 48, "batch_size": 16, "lr": 2e-3})
    model.fit(train.images[:96], train.labels[:96], seed=0)
    losses = [row["loss"] for row in model.history_]
    assert len(losses) == 8 and np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])


@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_sampling_returns_the_requested_counts_shape_dtype_and_labels(rgb, guidance):
    images, labels = two_classes(rgb=rgb)
    model = create_augmenter("ddpm", **{**TINY, "steps": 4, "guidance": guidance}).fit(images, labels, seed=0)
    out, out_labels = model.sample({0: 3, 1: 5}, seed=1)
    assert out.dtype == np.uint8 and out.shape == (8, *images.shape[1:])
    assert out_labels.tolist() == [0] * 3 + [1] * 5
    again, _ = model.sample({0: 3, 1: 5}, seed=1)
    assert np.array_equal(out, again)  # DDIM with eta 0 from seeded noise is deterministic


def test_ema_differs_from_the_live_weights_after_training_and_equals_them_at_decay_0():
    images, labels = two_classes()
    trained = create_augmenter("ddpm", **{**TINY, "steps": 6, "ema": 0.9}).fit(images, labels, seed=0)
    live, ema = trained.nets_["unet"].state_dict(), trained.nets_["ema_unet"].state_dict()
    assert any(not torch.equal(live[k], ema[k]) for k in live)
    plain = create_augmenter("ddpm", **{**TINY, "steps": 6, "ema": 0.0}).fit(images, labels, seed=0)
    live, ema = plain.nets_["unet"].state_dict(), plain.nets_["ema_unet"].state_dict()
    assert all(torch.equal(live[k], ema[k]) for k in live)
    assert (
        create_augmenter("dcgan", ema=0.9, epochs=1, width=8, device="cpu")
        .fit(images, labels)
        .sampling_net("generator")
        is not None
    )


def test_epochs_convert_to_steps_over_the_training_subset():
    images, labels = two_classes(n=40)
    model = create_augmenter("ddpm", **{**TINY, "epochs": 2}).fit(images, labels, seed=0)
    assert model._step == 2 * 3 and len(model.history_) == 2  # 40 images, batch 16: 3 batches an epoch


@pytest.mark.parametrize(
    "params, phrase",
    [
        ({"guidance": -1}, "guidance=-1"),
        ({"ddim_steps": 0}, "ddim_steps=0"),
        ({"schedule": "cosine"}, "schedule='cosine'"),
    ],
)
def test_bad_ddpm_parameters_are_one_line_errors(params, phrase):
    with pytest.raises(SynthmedError, match=phrase) as err:
        create_augmenter("ddpm", **params).check()
    assert "\n" not in str(err.value)


def test_an_image_size_the_unet_cannot_take_is_refused_before_training():
    with pytest.raises(SynthmedError, match="30 px images do not fit a UNet of 3 levels"):
        create_augmenter("ddpm").check_data(30, 1, 2)
    create_augmenter("ddpm").check_data(64, 3, 5)  # colour, five classes: fine


def test_diffaugment_in_the_gan_loop_sees_the_same_transform_for_real_and_fake(monkeypatch):
    from synthmed.augment import gan

    images, labels = two_classes(n=16)
    shared = []
    original = DiffAugment.apply

    def spy(self, x, params):
        shared.append({k: v.clone() for k, v in params.items()})
        return original(self, x, params)

    monkeypatch.setattr(DiffAugment, "apply", spy)
    model = create_augmenter(
        "dcgan", epochs=1, width=8, batch_size=16, device="cpu", diffaugment="color,translation,cutout"
    )
    model.fit(images, labels, seed=0)
    assert len(shared) >= 3  # real and fake in the critic step, the fakes again in the generator step
    assert all(torch.equal(shared[0][k], shared[1][k]) for k in shared[0])  # the critic step: one transform
    assert not torch.equal(shared[0]["translation_x"], shared[2]["translation_x"]) or not torch.equal(
        shared[0]["cutout_y"], shared[2]["cutout_y"]
    )  # the generator step: a fresh one
    assert gan.adversarial_step.__defaults__[-1] is None  # off unless asked
    with pytest.raises(SynthmedError, match="unknown policy 'blur'"):
        create_augmenter("dcgan", diffaugment="blur").check()


def test_fid_selection_keeps_the_lowest_validation_fid_checkpoint(monkeypatch):
    from synthmed.audit.fid_tracking import FidTracker
    from synthmed.metrics import distribution

    class Extractor:
        name = "toy"

        def features(self, images):
            return images.reshape(len(images), -1)[:, :4].astype(np.float64)

    scripted = iter([5.0, 1.0, 3.0, 2.0])  # validation FIDs at epochs 1-4
    monkeypatch.setattr(distribution, "fid", lambda real, synth: next(scripted))
    monkeypatch.setattr(
        distribution, "distribution_metrics", lambda *a, **k: {"fid": 0.0, "kid_mean": 0.0, "kid_std": 0.0}
    )
    weights = {}

    class Recording(FidTracker):
        def __call__(self, model, epoch, last=False):
            weights[epoch] = {k: v.clone() for k, v in model.nets_.state_dict().items()}
            return super().__call__(model, epoch, last)

    images, labels = two_classes(n=32, size=8)
    model = create_augmenter("conv-cgan", epochs=4, width=4, batch_size=16, device="cpu", latent_dim=4)
    model.fit(
        images,
        labels,
        seed=0,
        monitor=Recording(Extractor(), images, labels, every=1, per_class=4, val_images=images, select=True),
    )
    assert [row["selected"] for row in model.monitor_history_] == [False, True, False, False]
    assert [row["val_fid"] for row in model.monitor_history_] == [5.0, 1.0, 3.0, 2.0]
    final = model.nets_.state_dict()
    assert all(torch.equal(final[k], weights[2][k]) for k in final)  # epoch 2's weights, not the last
    assert not all(torch.equal(final[k], weights[4][k]) for k in final)


def test_select_generator_without_tracking_is_refused():
    with pytest.raises(SynthmedError, match="--select-generator fid needs --track-fid-every K"):
        SyntheticLevers(select_generator="fid").check()
