"""What every trained generative augmenter shares, written once: ``TorchGenerator``.

A method subclass only says which networks it has (``build``), how one batch trains them
(``train_step``) and how a batch of inputs becomes images (``decode``). This base does the rest the same
way for all of them: input checks, seeding, the one in-memory float tensor and its index-sliced batches,
NaN/inf detection before any optimizer step, per-epoch loss history, batched no-grad sampling with a
seeded ``torch.Generator``, and a weights-only save / load round trip that reproduces samples byte for byte.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import math
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from synthmed.augment.base import Augmenter, Kind, create_augmenter
from synthmed.errors import SynthmedError
from synthmed.io import load_checkpoint, save_torch
from synthmed.nets.generators import ACTIVATIONS, one_hot
from synthmed.tensors import to_tensor, to_uint8
from synthmed.train.device import resolve_device

#: Images decoded per forward pass when sampling; results do not depend on it (no batch statistics in eval).
SAMPLE_BATCH = 1024
FILE_FORMAT = 1
#: Seconds between two lines of ``fit_progress`` (an hour's diffusion fit says about 12): a fit shorter than this
#: says nothing.
PROGRESS_EVERY_S = 300.0
_PROGRESS: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar("fit_progress", default=None)


@contextlib.contextmanager
def fit_progress(report: Callable[[str], None]) -> Iterator[None]:
    """Hand ``report`` a line on how each generator fit in the block advances, at most one per
    ``PROGRESS_EVERY_S`` ("step 750/2500 (30 %), loss 0.041, 20 min so far, about 47 min left"): a diffusion fit
    runs for an hour on one CPU core, and a log that says nothing for that long looks like a hung run."""
    token = _PROGRESS.set(report)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


class _ProgressLines:
    """The lines of ``fit_progress`` for one training loop of ``total`` steps or epochs (``unit``)."""

    def __init__(self, total: int, unit: str) -> None:
        self.report, self.total, self.unit = _PROGRESS.get(), total, unit
        self.started = self.said = time.monotonic()

    def update(self, done: int, losses: dict[str, float]) -> None:
        now = time.monotonic()
        if self.report is None or not done or now - self.said < PROGRESS_EVERY_S:
            return
        self.said, elapsed = now, now - self.started
        text = f"{self.unit} {done}/{self.total} ({100 * done / self.total:.0f} %)"
        text += "".join(f", {key} {value:.3g}" for key, value in losses.items() if key != "epoch")
        text += f", {_minutes(elapsed)} so far"
        if done < self.total:
            text += f", about {_minutes(elapsed / done * (self.total - done))} left"
        self.report(text)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _integer(value: Any, low: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= low


def _real(value: Any, low: float, high: float = math.inf, low_open: bool = False, high_open: bool = True) -> bool:
    """A finite number (not a bool) in the range, bounds open or closed as told."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        return False
    x = float(value)
    return (x > low if low_open else x >= low) and (x < high if high_open else x <= high)


def check_params(name: str, params: dict[str, Any]) -> None:
    """Validate the hyper-parameters every generative method shares, by name, with one-line errors."""
    p = params

    def fail(key: str, expected: str) -> SynthmedError:
        return SynthmedError(f"{name}: {key}={params[key]!r} is invalid; expected {expected}")

    for key in ("epochs", "latent_dim", "width", "n_critic", "steps"):
        if p.get(key) is not None and not _integer(p[key], 1):
            raise fail(key, "a positive integer")
    if "batch_size" in p and not _integer(p["batch_size"], 2):
        raise fail("batch_size", "an integer of at least 2 (BatchNorm needs two images)")
    for key in ("lr", "beta", "clip"):
        if key in p and not _real(p[key], 0, low_open=True):
            raise fail(key, "a positive number")
    if "dropout" in p and not _real(p["dropout"], 0, 1):
        raise fail("dropout", "a number in [0, 1)")
    for key in ("hidden", "g_hidden", "d_hidden"):
        value = p.get(key)
        if key in p and not (
            isinstance(value, Sequence) and not isinstance(value, str) and value and all(_integer(h, 1) for h in value)
        ):
            raise fail(key, "a non-empty list of positive layer widths")
    betas = p.get("betas")
    if "betas" in p and not (isinstance(betas, Sequence) and len(betas) == 2 and all(_real(b, 0, 1) for b in betas)):
        raise fail("betas", "two numbers in [0, 1), e.g. [0.5, 0.999]")
    if "arch" in p and p["arch"] not in ("fc", "conv"):
        raise fail("arch", "fc or conv")
    if "device" in p and p["device"] not in ("auto", "cpu", "cuda"):
        raise fail("device", "auto, cpu or cuda")
    if "ae_epochs" in p and not _integer(p["ae_epochs"], 0):
        raise fail("ae_epochs", "an integer >= 0")
    if "gp_weight" in p and not _real(p["gp_weight"], 0):
        raise fail("gp_weight", "a number >= 0")
    for key in ("sn_generator", "sn_discriminator"):
        if key in p and not isinstance(p[key], bool):
            raise fail(key, "true or false")
    if "use_unlabelled" in p and not isinstance(p["use_unlabelled"], bool):
        raise fail("use_unlabelled", "true or false")
    if "unlabelled_share" in p and not _real(p["unlabelled_share"], 0, 1, low_open=True, high_open=True):
        raise fail("unlabelled_share", "a share of each batch in (0, 1), e.g. 0.5")
    if "optimizer" in p and p["optimizer"] not in ("adam", "rmsprop"):
        raise fail("optimizer", "adam or rmsprop")
    for key in ("g_activation", "d_activation"):
        if key in p and p[key] not in ACTIVATIONS:
            raise fail(key, " or ".join(ACTIVATIONS))


def check_training_data(name: str, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, H, W[, 3]) images and single-label integer labels, or a one-line error."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise SynthmedError(
            f"{name}: training images must be uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise SynthmedError(
            f"{name}: needs single-label integer labels of shape (N,), got {labels.dtype} "
            f"{labels.shape}; conditional generators do not support multi-label datasets"
        )
    if len(labels) != len(images) or len(labels) < 2:
        raise SynthmedError(
            f"{name}: needs at least 2 images with one label each, got {len(images)} images and {len(labels)} labels"
        )
    if labels.min() < 0:
        raise SynthmedError(f"{name}: labels must be class indices >= 0, found {labels.min()}")
    return images, labels.astype(np.int64)


def _unlabelled_images(name: str, unlabelled: np.ndarray | None, images: np.ndarray) -> np.ndarray:
    """The unlabelled images a fit adds (none when not given), shaped as the labelled ones, or a one-line error."""
    if unlabelled is None:
        return images[:0]
    unlabelled = np.asarray(unlabelled)
    if unlabelled.dtype != images.dtype or unlabelled.shape[1:] != images.shape[1:]:
        raise SynthmedError(
            f"{name}: unlabelled images must be {images.dtype} {images.shape[1:]} like the labelled ones, "
            f"got {unlabelled.dtype} {unlabelled.shape[1:]}"
        )
    return unlabelled


#: The hyper-parameters of a method that can learn from unlabelled images (``takes_unlabelled``), at their defaults:
#: off, and when on, half of every batch unlabelled (however many there are, so a few hundred labelled images are not
#: drowned by thousands of unlabelled ones). Late parameters: configs at the defaults read as before they existed.
UNLABELLED_PARAMS: dict[str, Any] = {"use_unlabelled": False, "unlabelled_share": 0.5}


class _BatchPlan:
    """The batches of a fit's epochs, as index tensors into its images (the labelled ones first, then unlabelled).

    Without unlabelled images: a seeded permutation per epoch sliced into batches, a final batch of one image dropped
    (BatchNorm cannot train on it). With them, every batch holds ``unlabelled_share`` of unlabelled images, drawn
    from a stream of seeded permutations of their own, beside the labelled images of one seeded pass per epoch."""

    def __init__(self, n: int, n_labelled: int, params: dict[str, Any], generator: torch.Generator) -> None:
        self.n, self.n_labelled, self.generator = n, min(n_labelled, n), generator
        self.batch = int(params["batch_size"])
        self.n_unlabelled_per_batch = 0
        if self.n > self.n_labelled:
            share = float(params.get("unlabelled_share", UNLABELLED_PARAMS["unlabelled_share"]))
            wanted = max(1, round(share * self.batch))  # never more than there are, nor a batch without labels
            self.n_unlabelled_per_batch = min(self.batch - 1, wanted, self.n - self.n_labelled)
            self.n_used = self.n_labelled
            self.per_epoch = -(-self.n_labelled // (self.batch - self.n_unlabelled_per_batch))
            self.images_per_epoch = self.per_epoch * self.batch  # what ``step_budget`` converts epochs with
        else:
            self.n_used = n - 1 if n % self.batch == 1 else n
            self.per_epoch = -(-self.n_used // self.batch)
            self.images_per_epoch = self.n_used
        self._stream = torch.empty(0, dtype=torch.long)

    def epoch(self) -> list[torch.Tensor]:
        """One epoch's batches of indices."""
        if not self.n_unlabelled_per_batch:
            order = torch.randperm(self.n, generator=self.generator)
            return [order[i : min(i + self.batch, self.n_used)] for i in range(0, self.n_used, self.batch)]
        labelled = torch.randperm(self.n_labelled, generator=self.generator)
        step = self.batch - self.n_unlabelled_per_batch
        return [
            torch.cat([labelled[i : i + step], self.n_labelled + self._unlabelled(self.n_unlabelled_per_batch)])
            for i in range(0, self.n_labelled, step)
        ]

    def _unlabelled(self, k: int) -> torch.Tensor:
        """The next ``k`` unlabelled images (0-based among them), each used once before any is reused."""
        while len(self._stream) < k:
            fresh = torch.randperm(self.n - self.n_labelled, generator=self.generator)
            self._stream = torch.cat([self._stream, fresh])
        taken, self._stream = self._stream[:k], self._stream[k:]
        return taken


class TorchGenerator(Augmenter):
    """A generative augmenter made of torch networks trained on the real training subset.

    Subclasses implement ``build``, ``train_step`` and ``decode``, and may override ``optimizers``,
    ``sample_inputs`` and ``extra_state`` / ``load_extra_state``. Fitted attributes end in ``_`` and are set by
    ``fit`` (or ``load``) only.
    """

    kind = Kind.SET
    trains = True
    #: Networks of which ``params["ema"]`` (a decay in (0, 1)) keeps an exponential moving average, ``ema_NAME``,
    #: that sampling uses instead of the live weights.
    ema_nets: ClassVar[tuple[str, ...]] = ()
    #: Whether ``train_step`` reads an all-zero condition as "no class", so that ``-p use_unlabelled=true`` may add
    #: unlabelled images to the fit (DDPM's null class; the conditional VAE's empty label input).
    takes_unlabelled: ClassVar[bool] = False
    #: Where only some hyper-parameters shape the fitted weights (TSynD's autoencoder, not its synthesis rounds):
    #: those, and the name of the fit the method's variants share; a fit is then cached once for all of them.
    fit_params: ClassVar[tuple[str, ...] | None] = None
    fit_family: ClassVar[str | None] = None

    def fit_config(self) -> dict:
        """What the fitted weights depend on, for cache keys: ``config()``, or with ``fit_params`` only those
        under the ``fit_family`` name."""
        config = {k: v for k, v in self.config().items() if k != "device"}
        if self.fit_params is None:
            return config
        return {"method": self.fit_family or self.name, **{k: config[k] for k in self.fit_params if k in config}}

    def check(self) -> None:
        check_params(self.name, self.params)
        ema = self.params.get("ema")
        if ema is not None and not (_real(ema, 0, 1) and self.ema_nets):
            raise SynthmedError(
                f"{self.name}: ema={ema!r} is invalid; expected a decay in [0, 1) (e.g. 0.999)"
                + ("" if self.ema_nets else " for a method that has a generator")
            )

    def check_data(self, size: int, channels: int, n_classes: int) -> None:
        """Refuse data the networks cannot take (an image size, a channel count) before anything trains: the
        networks are built once, on the CPU, and discarded."""
        self.check()
        self.build(channels, size, n_classes)

    # ---- what a method defines -------------------------------------------------------------------

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        """The freshly initialised networks, by name (the names key the saved state)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam over every network; adversarial methods override this with one per player."""
        betas = self.params.get("betas", (0.9, 0.999))
        return {"all": torch.optim.Adam(self.nets_.parameters(), lr=self.params["lr"], betas=betas)}

    def train_step(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """Train on one batch (images in [-1, 1], one-hot labels); return its losses, via ``optimize``."""
        raise NotImplementedError

    def sample_inputs(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """What ``decode`` turns into images, one row per requested label: latent codes z ~ N(0, I) by default."""
        return torch.randn(len(labels), self.params["latent_dim"], generator=generator)

    def decode(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """A batch of ``sample_inputs`` rows and their one-hot labels -> images (N, C, H, W) in [-1, 1]."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """Tensors besides network weights that sampling needs (saved with the model)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # ---- helpers for train_step -------------------------------------------------------------------

    def optimize(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, name: str = "loss") -> float:
        """One optimizer step on ``loss``, refused if the loss is NaN or infinite; returns its value."""
        value = loss.item()
        if not math.isfinite(value):
            lr = optimizer.param_groups[0]["lr"]
            raise SynthmedError(
                f"{self.name}: {name} became {value} at epoch {self._epoch}; lower the learning "
                f"rate (lr={lr:g} now) or check the training images"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return value

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Latent codes drawn from the seeded CPU generator (so runs reproduce on any device)."""
        return torch.randn(n, self.params["latent_dim"], generator=generator).to(self.device_)

    # ---- the shared contract -----------------------------------------------------------------------

    def fit(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        seed: int = 0,
        monitor: Any = None,
    ) -> TorchGenerator:
        """Train on the real subset. ``monitor(model, epoch, last)`` (e.g. FID tracking) is called after every epoch
        of the main training phase; its non-empty results are kept in ``monitor_history_`` and saved with the
        model; its ``finish(model)``, if it has one, runs when training ends (e.g. to restore the selected
        checkpoint)."""
        return self._fit(images, labels, seed, monitor, unlabelled=getattr(self, "_unlabelled_pending", None))

    def fit_with_unlabelled(
        self, images: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray, *, seed: int = 0, monitor: Any = None
    ) -> TorchGenerator:
        """``fit``, with ``unlabelled`` images too where the method uses them (``uses_unlabelled``: it
        ``takes_unlabelled`` and ``-p use_unlabelled=true``); ignored otherwise. They pass beside ``fit`` so that
        a method's own ``fit`` (its set-up before the shared loop) runs unchanged."""
        self._unlabelled_pending = unlabelled if self.uses_unlabelled else None
        try:
            return self.fit(images, labels, seed=seed, monitor=monitor)
        finally:
            self._unlabelled_pending = None

    @classmethod
    def reads_unlabelled(cls, params: dict[str, Any]) -> bool:
        """A method that ``takes_unlabelled`` reads them with ``-p use_unlabelled=true``."""
        return cls.takes_unlabelled and params.get("use_unlabelled") is True

    @property
    def uses_unlabelled(self) -> bool:
        """Whether a fit trains on the unlabelled images it is given (``-p use_unlabelled=true``)."""
        return self.reads_unlabelled(self.params)

    def _fit(
        self, images: np.ndarray, labels: np.ndarray, seed: int, monitor: Any, unlabelled: np.ndarray | None = None
    ) -> TorchGenerator:
        """``fit``, plus ``unlabelled`` images trained with an all-zero condition after the labelled ones: only for
        a method whose ``train_step`` reads that condition as "no class" (``takes_unlabelled``). They fill
        ``unlabelled_share`` of every batch; an epoch is then one pass over the labelled images. The fitted model
        counts them in ``n_unlabelled_``."""
        self.check()
        images, labels = check_training_data(self.name, images, labels)
        extra = _unlabelled_images(self.name, unlabelled, images)
        self.monitor_ = monitor
        self.history_: list[dict] = []
        self.monitor_history_: list[dict] = []
        self._epoch = self._step = 0  # current epoch and optimisation step (1-based) during fit
        self.device_ = resolve_device(self.params.get("device", "auto"))
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        self.image_shape_ = tuple(int(s) for s in images.shape[1:])
        self.n_classes_ = int(labels.max()) + 1
        self.class_counts_ = [int(c) for c in np.bincount(labels, minlength=self.n_classes_)]
        self.n_unlabelled_ = len(extra)
        x = to_tensor(images).to(self.device_)
        cond = one_hot(torch.from_numpy(labels), self.n_classes_).to(self.device_)
        self._n_labelled = len(x)
        if len(extra):
            x = torch.cat([x, to_tensor(extra).to(self.device_)])
            cond = torch.cat([cond, torch.zeros(len(extra), self.n_classes_, device=self.device_)])
        self.nets_ = self._build().to(self.device_)
        self.optimizers_ = self.optimizers()
        try:
            self._train(x, cond, generator)
            if monitor is not None and hasattr(monitor, "finish"):
                monitor.finish(self)
        except BaseException:
            del self.nets_  # a failed or interrupted fit leaves nothing to sample from or save
            raise
        finally:
            self.monitor_ = None  # it holds features and a model; a fitted generator does not need it
        self.nets_.eval()
        return self

    def diagnostics(self) -> dict[str, Any]:
        """FID over epochs where it was tracked, and how many unlabelled images the fit used where it could."""
        history = getattr(self, "monitor_history_", None)
        seen = {"unlabelled_images": getattr(self, "n_unlabelled_", 0)} if self.uses_unlabelled else {}
        return ({"fid_over_epochs": history} if history else {}) | seen

    def _train(
        self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator, epochs: int | None = None
    ) -> None:
        """The epoch loop: the batches of ``_BatchPlan`` (a seeded permutation per epoch, index-sliced; with
        unlabelled images, a labelled pass with their share in every batch), mean losses per epoch; after each
        optimisation step the EMA copies follow the live weights.

        The budget is ``epochs``, or (when ``params["steps"]`` is set) that many optimisation steps, the last epoch
        cut short. ``epochs`` as an argument lets a method run the loop more than once, e.g. BAGAN-GP's autoencoder
        pre-training and then its adversarial phase; each run starts a fresh ``history_``."""
        self.history_, self._step = [], 0
        batches = _BatchPlan(len(x), getattr(self, "_n_labelled", len(x)), self.params, generator)
        steps = self.step_budget(batches.images_per_epoch) if epochs is None else None
        total = -(-steps // batches.per_epoch) if steps else (self.params["epochs"] if epochs is None else epochs)
        progress = _ProgressLines(steps, "step") if steps else _ProgressLines(total, "epoch")
        for epoch in range(1, total + 1):
            self._epoch = epoch
            self.nets_.train()
            sums: dict[str, float] = {}
            seen: dict[str, int] = {}
            for idx in batches.epoch():
                if steps and self._step >= steps:
                    break
                idx = idx.to(self.device_)
                self._step += 1
                for key, value in self.train_step(x[idx], cond[idx], generator).items():
                    sums[key] = sums.get(key, 0.0) + value * len(idx)
                    seen[key] = seen.get(key, 0) + len(idx)
                self._update_ema()
            self.history_.append({"epoch": epoch, **{key: sums[key] / seen[key] for key in sums}})
            progress.update(self._step if steps else epoch, self.history_[-1])
            monitor = getattr(self, "monitor_", None)
            if monitor is not None and epochs is None:
                measured = monitor(self, epoch, epoch == total)
                if measured:
                    self.monitor_history_.append({"epoch": epoch, **measured})

    def step_budget(self, n_images: int) -> int | None:
        """Optimisation steps to train for (``params["steps"]``), or None to train for ``params["epochs"]``."""
        return self.params.get("steps")

    def _update_ema(self) -> None:
        """ema_NAME <- d * ema_NAME + (1 - d) * NAME, with the decay ramped up over the first steps
        (min(d, (1 + step) / (10 + step))) so early averages do not hold on to the random initialisation."""
        decay = self.params.get("ema")
        if decay is None:
            return
        d = min(float(decay), (1 + self._step) / (10 + self._step))
        with torch.no_grad():
            for name in self.ema_nets:
                live, ema = self.nets_[name], self.nets_[f"ema_{name}"]
                for p_ema, p in zip(ema.parameters(), live.parameters()):
                    p_ema.lerp_(p, 1 - d)
                for b_ema, b in zip(ema.buffers(), live.buffers()):
                    b_ema.copy_(b)

    def sampling_net(self, name: str) -> nn.Module:
        """The network that sampling uses: its EMA copy when the method keeps one, else the live network."""
        return self.nets_[f"ema_{name}"] if self.params.get("ema") is not None else self.nets_[name]

    def sample(self, counts: dict[int, int], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        nets = self._fitted()
        labels = self._requested_labels(counts)
        generator = torch.Generator().manual_seed(seed)
        inputs = self.sample_inputs(labels, generator)
        device = next(nets.parameters()).device
        nets.eval()
        out = [torch.empty(0, self._channels(), *self.image_shape_[:2])]
        with torch.no_grad():
            for start in range(0, len(labels), SAMPLE_BATCH):
                cond = one_hot(labels[start : start + SAMPLE_BATCH], self.n_classes_).to(device)
                out.append(self.decode(inputs[start : start + SAMPLE_BATCH].to(device), cond).float().cpu())
        return to_uint8(torch.cat(out)), labels.numpy()

    def save(self, path: str | Path) -> None:
        """Write params, weights and what sampling needs atomically; tensors and plain containers only."""
        nets = self._fitted()
        payload = {
            "params": self.params,
            "state": {name: net.state_dict() for name, net in nets.items()},
            "meta": {
                "format": FILE_FORMAT,
                "method": self.name,
                "n_classes": self.n_classes_,
                "image_shape": list(self.image_shape_),
                "class_counts": self.class_counts_,
                "history": self.history_,
                "monitor_history": getattr(self, "monitor_history_", []),
                "n_unlabelled": getattr(self, "n_unlabelled_", 0),
            },
            "extra": self.extra_state(),
        }
        save_torch(path, payload)

    def weights_digest(self) -> str:
        """A short sha256 of the fit: every net's tensors and the arrays of ``extra_state`` that sampling uses
        (BAGAN's class statistics, TSynD's source images), by name. Runs that share one fit by its cache key can be
        checked to have used the same one, wherever and however often it was made."""
        named: dict[str, Any] = {
            f"{name}.{key}": tensor for name, net in self._fitted().items() for key, tensor in net.state_dict().items()
        }
        named |= {f"extra.{key}": value for key, value in self.extra_state().items()}
        digest = hashlib.sha256()
        for key, value in sorted(named.items()):
            if isinstance(value, torch.Tensor):
                data = value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
            elif isinstance(value, np.ndarray):
                data = np.ascontiguousarray(value).tobytes()
            else:  # a history or other record of the fit, not what sampling reads
                continue
            digest.update(key.encode())
            digest.update(data)
        return digest.hexdigest()[:16]

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> TorchGenerator:
        """Read a file written by ``save`` (weights only, never code); on ``TorchGenerator`` any method,
        on a subclass only that method."""
        payload = load_checkpoint(path)
        if not (
            isinstance(payload, dict)
            and {"params", "state", "meta"} <= payload.keys()
            and isinstance(payload["meta"], dict)
            and "method" in payload["meta"]
        ):
            raise SynthmedError(
                f"{path} is not a saved generative augmenter (expected params, state and meta); write one with .save()"
            )
        meta = payload["meta"]
        model = create_augmenter(meta["method"], **payload["params"])
        if not isinstance(model, cls):
            raise SynthmedError(f"{path} holds a {meta['method']!r} model, not a {cls.__name__}")
        model.n_classes_ = int(meta["n_classes"])
        model.image_shape_ = tuple(meta["image_shape"])
        model.class_counts_ = list(meta["class_counts"])
        model.history_ = list(meta["history"])
        model.monitor_history_ = list(meta.get("monitor_history", []))
        model.n_unlabelled_ = int(meta.get("n_unlabelled", 0))
        model.device_ = resolve_device(device)
        model.nets_ = model._build()
        try:
            for name, net in model.nets_.items():
                net.load_state_dict(payload["state"][name])
        except (KeyError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0]
            raise SynthmedError(
                f"{path}: weights do not fit a {meta['method']!r} model with these params ({first})"
            ) from None
        model.nets_.to(model.device_).eval()
        model.load_extra_state(payload.get("extra", {}))
        return model

    # ---- internals -------------------------------------------------------------------------------

    def _channels(self) -> int:
        return 3 if len(self.image_shape_) == 3 else 1

    def _build(self) -> nn.ModuleDict:
        nets = self.build(self._channels(), self.image_shape_[0], self.n_classes_)
        if self.params.get("ema") is not None:
            for name in self.ema_nets:
                nets[f"ema_{name}"] = copy.deepcopy(nets[name]).requires_grad_(False)
        return nn.ModuleDict(nets)

    def _fitted(self) -> nn.ModuleDict:
        if getattr(self, "nets_", None) is None:
            raise SynthmedError(f"{self.name}: call fit (or load a saved model) before sample or save")
        return self.nets_

    def _requested_labels(self, counts: dict[int, int]) -> torch.Tensor:
        """The labels to generate, grouped by class in ascending order; unknown or unseen classes refused."""
        labels: list[torch.Tensor] = []
        for c, n in sorted((int(c), n) for c, n in counts.items()):
            if not isinstance(n, numbers.Integral) or n < 0:
                raise SynthmedError(f"{self.name}: count for class {c} must be an integer >= 0, got {n!r}")
            if n and not (0 <= c < self.n_classes_ and self.class_counts_[c] > 0):
                raise SynthmedError(
                    f"{self.name}: cannot generate class {c}: the training images had none "
                    f"(classes seen: {[k for k, m in enumerate(self.class_counts_) if m]})"
                )
            labels.append(torch.full((int(n),), c, dtype=torch.int64))
        return torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64)
