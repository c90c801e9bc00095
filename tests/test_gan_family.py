"""Sharma et al. 2022's GAN family (dcgan, wgan, wgan-gp, lsgan, sngan) and BAGAN-GP: tiny nets, a few steps each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from synthmed.augment import create_augmenter
from synthmed.augment.bagan import BaganGP, safe_cholesky
from synthmed.augment.gan_losses import gradient_penalty
from synthmed.augment.generative import TorchGenerator
from synthmed.data import load_dataset
from synthmed.errors import SynthmedError
from synthmed.tensors import to_tensor

METHODS = ["dcgan", "wgan", "wgan-gp", "lsgan", "sngan", "bagan-gp"]
COUNTS = {0: 5, 1: 7}


def make(method: str, **params) -> TorchGenerator:
    """A tiny, fast configuration of ``method`` (BAGAN-GP gets one autoencoder epoch unless told)."""
    if method == "bagan-gp":
        params.setdefault("ae_epochs", 1)
    return create_augmenter(method, width=16, latent_dim=16, device="cpu", **params)


def random_images(n: int, size: int, rgb: bool = False, seed: int = 0) -> np.ndarray:
    shape = (n, size, size, 3) if rgb else (n, size, size)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---- 28 px, real BreastMNIST ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(real_root):
    """The first 128 real BreastMNIST training images (both classes)."""
    breast = load_dataset("breastmnist", data_root=real_root)
    return breast.train.images[:128], breast.train.labels[:128]


@pytest.fixture(scope="module", params=METHODS)
def fitted(request, small) -> TorchGenerator:
    return make(
        request.param, epochs=2, batch_size=64, **({"ae_epochs": 2} if request.param == "bagan-gp" else {})
    ).fit(*small, seed=0)


@pytest.mark.slow
def test_28px_samples_have_the_real_layout_and_the_requested_labels(fitted):
    images, labels = fitted.sample(COUNTS, seed=1)
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [0] * 5 + [1] * 7
    assert [row["epoch"] for row in fitted.history_] == [1, 2]
    assert all(
        {"d_loss", "g_loss"} <= row.keys() and all(np.isfinite(v) for v in row.values()) for row in fitted.history_
    )
    assert images.std() > 0  # not a constant image
    if fitted.name == "bagan-gp":
        assert [row["epoch"] for row in fitted.ae_history_] == [1, 2]
        assert all(np.isfinite(row["ae_loss"]) for row in fitted.ae_history_)


@pytest.mark.slow
def test_28px_save_load_reproduces_samples_byte_for_byte(fitted, tmp_path):
    before = fitted.sample(COUNTS, seed=3)
    fitted.save(tmp_path / "model.pt")
    loaded = TorchGenerator.load(tmp_path / "model.pt")
    assert type(loaded) is type(fitted) and loaded.params == fitted.params and loaded.history_ == fitted.history_
    after = loaded.sample(COUNTS, seed=3)
    assert before[0].tobytes() == after[0].tobytes() and np.array_equal(before[1], after[1])
    assert not np.array_equal(before[0], loaded.sample(COUNTS, seed=4)[0])


# ---- 64 px, grey and RGB --------------------------------------------------------------------------------


@pytest.mark.parametrize("rgb", [False, True], ids=["grey", "rgb"])
@pytest.mark.parametrize("method", METHODS)
def test_64px_images(method, rgb):
    augmenter = make(method, epochs=1, batch_size=8).fit(random_images(12, 64, rgb), np.arange(12) % 3, seed=0)
    images, labels = augmenter.sample({0: 2, 2: 1}, seed=0)
    assert images.shape == ((3, 64, 64, 3) if rgb else (3, 64, 64)) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 2]
    assert "g_loss" in augmenter.history_[0]
    critic = augmenter.nets_["discriminator"]  # per-image scores: what the gradient penalty assumes
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())


# ---- the gradient penalty -------------------------------------------------------------------------------


class LinearCritic(nn.Module):
    """f(x, y) = w . x + v . y: its gradient in x is w everywhere, whatever the label."""

    def __init__(self, w: torch.Tensor, v: torch.Tensor) -> None:
        super().__init__()
        self.w, self.v = nn.Parameter(w), nn.Parameter(v)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) @ self.w + cond @ self.v)[:, None]


def test_gradient_penalty_of_a_linear_critic_is_analytic():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2 * 4 * 4, generator=g, dtype=torch.float64)
    critic = LinearCritic(w.clone(), torch.randn(3, generator=g, dtype=torch.float64))
    real, fake = torch.randn(6, 2, 4, 4, generator=g, dtype=torch.float64), torch.zeros(6, 2, 4, 4, dtype=torch.float64)
    cond = nn.functional.one_hot(torch.arange(6) % 3, 3).double()
    value = gradient_penalty(critic, real, fake, cond, 10.0, torch.Generator().manual_seed(1))
    norm = w.norm()
    assert value.item() == pytest.approx(10.0 * (norm.item() - 1) ** 2, rel=1e-9)
    value.backward()  # create_graph: the penalty trains the critic; d/dw = 2 weight (|w| - 1) w / |w|
    assert torch.allclose(critic.w.grad, 2 * 10.0 * (norm - 1) * w / norm)
    assert critic.v.grad is None or torch.count_nonzero(critic.v.grad) == 0


def test_gradient_penalty_sees_each_interpolate_with_its_label():
    """A critic whose slope depends on the label: the penalty is the mean over labels of (|W_y| - 1)^2."""
    slopes = torch.tensor([[0.5, 0.0], [3.0, 4.0]], dtype=torch.float64)  # norms 0.5 and 5

    def critic(x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return ((cond @ slopes) * x.flatten(1)).sum(1, keepdim=True)

    real = torch.randn(4, 1, 1, 2, dtype=torch.float64)
    cond = nn.functional.one_hot(torch.tensor([0, 1, 1, 1]), 2).double()
    value = gradient_penalty(critic, real, torch.zeros_like(real), cond, 2.0)
    assert value.item() == pytest.approx(2.0 * (0.25 * 0.5**2 + 0.75 * 4.0**2))


# ---- loss-specific behaviour ----------------------------------------------------------------------------


def test_sngan_critic_layers_have_unit_spectral_norm_after_training():
    sngan = make("sngan", epochs=3, batch_size=8).fit(random_images(16, 32), np.arange(16) % 2, seed=0)
    critic = sngan.nets_["discriminator"]
    layers = [m for m in critic.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 4 and sngan.spectral_layers() == layers  # every layer: 3 convolutions (32 px) + head
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.05), layer
    raw = [
        torch.linalg.matrix_norm(m.parametrizations.weight.original.detach().flatten(1), ord=2).item() for m in layers
    ]
    assert any(abs(s - 1) > 0.2 for s in raw)  # the normalisation is doing the work, not the weights
    assert not make("dcgan", epochs=1, batch_size=8).fit(random_images(8, 32), np.arange(8) % 2).spectral_layers()


def test_wgan_critic_weights_stay_within_the_clip():
    wgan = make("wgan", epochs=2, batch_size=8, clip=0.01).fit(random_images(16, 32), np.arange(16) % 2, seed=0)
    weights = torch.cat([p.detach().flatten() for p in wgan.nets_["discriminator"].parameters()])
    assert weights.abs().max().item() <= 0.01
    assert (weights.abs() == 0.01).any()  # N(0, 0.02) init: clipping was active


def test_n_critic_critic_updates_per_generator_update(monkeypatch):
    steps: list[str] = []
    optimize = TorchGenerator.optimize

    def counting(self, optimizer, loss, name="loss"):
        steps.append(name)
        return optimize(self, optimizer, loss, name)

    monkeypatch.setattr(TorchGenerator, "optimize", counting)
    make("wgan-gp", epochs=1, batch_size=8, n_critic=3).fit(random_images(16, 16), np.arange(16) % 2, seed=0)
    assert steps == ["d_loss", "d_loss", "d_loss", "g_loss"] * 2  # 2 batches


@pytest.mark.parametrize("method", ["wgan-gp", "bagan-gp"])
def test_same_seed_same_model(method):
    images, labels = random_images(16, 16), np.arange(16) % 2
    a = make(method, epochs=2, batch_size=8).fit(images, labels, seed=5)
    b = make(method, epochs=2, batch_size=8).fit(images, labels, seed=5)
    assert a.history_ == b.history_
    assert a.sample(COUNTS, seed=1)[0].tobytes() == b.sample(COUNTS, seed=1)[0].tobytes()


# ---- BAGAN-GP -------------------------------------------------------------------------------------------


def two_class_images(n: int = 48, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 dark, class 1 bright (imbalanced 2:1), so their codes differ."""
    labels = (np.arange(n) % 3 == 0).astype(np.int64)
    noise = np.random.default_rng(0).integers(0, 60, (n, size, size))
    return np.where(labels[:, None, None] == 1, 190 + noise, noise).astype(np.uint8), labels


def test_bagan_latents_follow_the_encoded_class_statistics():
    images, labels = two_class_images()
    bagan = make("bagan-gp", epochs=1, batch_size=16, ae_epochs=3).fit(images, labels, seed=0)
    with torch.no_grad():
        codes = bagan.nets_["encoder"](to_tensor(images)).double()
    n = 4000
    draws = bagan.sample_inputs(torch.tensor([0] * n + [1] * n), torch.Generator().manual_seed(0)).double()
    for c in (0, 1):
        mu = codes[torch.from_numpy(labels == c)].mean(0)
        sd = codes[torch.from_numpy(labels == c)].std(0)
        assert torch.allclose(bagan.class_means_[c].double(), mu, atol=1e-4)
        got = draws[c * n : (c + 1) * n].mean(0)
        assert ((got - mu).abs() <= 5 * sd / n**0.5 + 1e-4).all()
        assert torch.allclose(draws[c * n : (c + 1) * n].std(0), sd, rtol=0.1, atol=1e-3)
    assert (bagan.class_means_[0] - bagan.class_means_[1]).norm() > 0  # class-conditional


def test_bagan_fake_labels_are_uniform_over_the_seen_classes():
    images, labels = two_class_images()
    labels = np.where(labels == 1, 2, 0)  # class 1 never seen
    bagan = make("bagan-gp", epochs=1, batch_size=16).fit(images, labels, seed=0)
    _, cond = bagan.fake_inputs(torch.zeros(6000, 3), torch.Generator().manual_seed(0))
    counts = cond.sum(0)
    assert counts[1] == 0 and abs(counts[0].item() - 3000) < 200 and abs(counts[2].item() - 3000) < 200


def test_bagan_generator_and_critic_start_from_the_autoencoder(monkeypatch):
    checked = []
    optimizers = BaganGP.optimizers

    def check_then_build(self):
        if self.phase_ == "adversarial":
            nets = self.nets_
            for src, dst in ((nets["decoder"], nets["generator"]), (nets["encoder"].body, nets["discriminator"].body)):
                pairs = zip(src.state_dict().items(), dst.state_dict().items(), strict=True)
                checked.append(all(k1 == k2 and torch.equal(v1, v2) for (k1, v1), (k2, v2) in pairs))
        return optimizers(self)

    monkeypatch.setattr(BaganGP, "optimizers", check_then_build)
    images, labels = two_class_images()
    make("bagan-gp", epochs=1, batch_size=16, sn_generator=True, sn_discriminator=True).fit(images, labels)
    assert checked == [True, True]


def test_bagan_table5_knobs():
    images, labels = two_class_images()
    bagan = make(
        "bagan-gp",
        epochs=1,
        batch_size=16,
        lr=1e-5,
        gp_weight=0.1,
        sn_generator=True,
        sn_discriminator=True,
        g_activation="elu",
        d_activation="relu",
    ).fit(images, labels, seed=0)
    kinds = {name: {type(m) for m in net.modules()} for name, net in bagan.nets_.items()}
    assert nn.ELU in kinds["generator"] and nn.ReLU not in kinds["generator"]
    assert nn.ReLU in kinds["discriminator"] and nn.LeakyReLU not in kinds["discriminator"]
    critic_layers = [m for m in bagan.nets_["discriminator"].modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(hasattr(m, "parametrizations") for m in critic_layers)
    assert bagan.sample({0: 2, 1: 2}, seed=0)[0].shape == (4, 16, 16)
    assert bagan.config()["gp_weight"] == 0.1 and bagan.config()["sn_generator"] is True


def test_bagan_save_load_round_trip(tmp_path):
    images, labels = two_class_images()
    bagan = make("bagan-gp", epochs=1, batch_size=16).fit(images, labels, seed=0)
    before = bagan.sample({0: 20, 1: 20}, seed=7)
    bagan.save(tmp_path / "bagan.pt")
    loaded = BaganGP.load(tmp_path / "bagan.pt")
    assert torch.equal(loaded.class_means_, bagan.class_means_) and torch.equal(loaded.class_chol_, bagan.class_chol_)
    assert loaded.ae_history_ == bagan.ae_history_ and loaded.history_ == bagan.history_
    after = loaded.sample({0: 20, 1: 20}, seed=7)
    assert before[0].tobytes() == after[0].tobytes() and np.array_equal(before[1], after[1])


def test_safe_cholesky_handles_singular_covariances():
    codes = torch.randn(3, 10, dtype=torch.float64)
    singular = codes.T @ codes  # rank 3 in 10 dimensions
    factor = safe_cholesky(singular, 1e-9)
    assert torch.allclose(factor @ factor.T, singular, atol=1e-6)
    assert torch.allclose(safe_cholesky(torch.zeros(4, 4, dtype=torch.float64), 1e-6), 1e-3 * torch.eye(4).double())
    with pytest.raises(SynthmedError, match="not finite"):
        safe_cholesky(torch.full((2, 2), float("nan"), dtype=torch.float64), 1e-6)


# ---- failures -------------------------------------------------------------------------------------------


def poison(monkeypatch, cls: type, net: str | None = None) -> None:
    """Make one network (default: the first built) output NaN."""
    build = cls.build

    def poisoned(self, *args):
        nets = build(self, *args)
        nets[net or next(iter(nets))].register_forward_hook(lambda module, inputs, output: output * float("nan"))
        return nets

    monkeypatch.setattr(cls, "build", poisoned)


@pytest.mark.parametrize("method", METHODS)
def test_nan_loss_is_refused_and_leaves_no_model(method, monkeypatch):
    augmenter = make(method, epochs=2, batch_size=8)
    poison(monkeypatch, type(augmenter))
    with pytest.raises(SynthmedError, match=rf"^{method}: \w+ became nan at epoch 1; lower the learning rate"):
        augmenter.fit(random_images(16, 16), np.arange(16) % 2, seed=0)
    with pytest.raises(SynthmedError, match="call fit"):
        augmenter.sample(COUNTS)


def test_bagan_nan_in_the_adversarial_phase_is_refused(monkeypatch):
    bagan = make("bagan-gp", epochs=2, batch_size=8)
    poison(monkeypatch, BaganGP, "discriminator")
    with pytest.raises(SynthmedError, match=r"^bagan-gp: d_loss became nan at epoch 1"):
        bagan.fit(random_images(16, 16), np.arange(16) % 2, seed=0)
    assert len(bagan.ae_history_) == 1  # the autoencoder phase itself was fine


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("wgan", {"clip": 0}, "clip=0 is invalid"),
        ("wgan-gp", {"gp_weight": -1}, "gp_weight=-1 is invalid"),
        ("sngan", {"sn_discriminator": "yes"}, "sn_discriminator='yes' is invalid"),
        ("dcgan", {"optimizer": "sgd"}, "optimizer='sgd' is invalid; expected adam or rmsprop"),
        ("bagan-gp", {"g_activation": "tanh"}, "g_activation='tanh' is invalid"),
        ("bagan-gp", {"ae_epochs": -1}, "ae_epochs=-1 is invalid"),
        ("bagan-gp", {"betas": (0.5, 1.5)}, "betas"),
        ("lsgan", {"clip": 0.01}, "lsgan has no parameter 'clip'"),
        ("dcgan", {"loss": "focal"}, "loss='focal' is invalid"),
    ],
)
def test_bad_params_are_one_line_errors(method, params, message):
    with pytest.raises(SynthmedError, match=message) as err:
        create_augmenter(method, **params).check()
    assert "\n" not in str(err.value)
