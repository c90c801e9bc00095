"""A time budget for a step of a study (``--time-budget``): no run starts whose estimated duration exceeds the time
left, and at the deadline the runs in flight are abandoned (``Abandoned`` raised where the run computes, or the
pool's workers stopped), so a step ends on its own with every finished run stored. And a stop request
(``synthmed experiment stop``): the steps running on a run folder start no new run and end once their runs in flight
are stored, so a machine can be handed back or a study re-prioritised without losing a run."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmed.errors import SynthmedError

#: Seconds a run is assumed to take under a time budget while the store holds no run of its dataset, protocol and
#: method: conservative (the slowest stored study run, a ddpm on 2 CPU cores, took 66 minutes).
#: ``SYNTHMED_RUN_SECONDS`` overrides it.
DEFAULT_RUN_SECONDS = 3600.0


#: The file in a run folder that asks the steps running on it to stop (``synthmed experiment stop``).
STOP_FILE = "stop"


def request_stop(out: Path) -> Path:
    """Ask every step running on the run folder ``out`` to finish its runs in flight and start no other; a step that
    starts later is not affected (the request is older than it). Returns the request's path."""
    from synthmed.io import atomic_write_text

    if not out.is_dir():
        raise SynthmedError(f"{out} is not a run folder: nothing runs there to stop")
    path = out / STOP_FILE
    atomic_write_text(path, time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    return path


StopMarker = tuple[int, int] | None  # (inode, mtime in ns) of a run folder's stop request, None without one


def stop_marker(out: Path) -> StopMarker:
    """The identity of ``out``'s stop request as it is now: a command records it when it starts, and a request
    made later is a new file (``request_stop`` renames a fresh one into place), so it differs. Comparing identities,
    not the file's time with this machine's clock, holds on a shared file system whose clock is not ours."""
    try:
        stat = (out / STOP_FILE).stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def stop_requested(out: Path, before: StopMarker) -> bool:
    """Whether a stop was requested for ``out`` since its request's identity was ``before``."""
    now = stop_marker(out)
    return now is not None and now != before


@dataclass
class Budget:
    """A time budget (``--time-budget``) from ``started`` (a ``time.monotonic()`` value): no run starts that it
    cannot fit, and the runs in flight at its end are abandoned. Shared by the rounds of ``--seeds auto``."""

    seconds: float
    default_run_seconds: float | None = None  # None: $SYNTHMED_RUN_SECONDS, else DEFAULT_RUN_SECONDS
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise SynthmedError(f"--time-budget {self.seconds:g} s must be more than 0")
        if self.default_run_seconds is None:
            self.default_run_seconds = float(os.environ.get("SYNTHMED_RUN_SECONDS", DEFAULT_RUN_SECONDS))

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


@contextlib.contextmanager
def alarm(deadline: float | None) -> Iterator[None]:
    """Raise ``Abandoned`` in this (main) thread at ``deadline``, wherever the run computing in this process is."""
    from synthmed.experiment.backends import Abandoned

    usable = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if deadline is None or not usable:
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise Abandoned()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


MethodKey = tuple[str, str, str]  # (dataset, protocol, method)


@dataclass
class Durations:
    """The longest stored ``total_time`` (less any wait for another worker's fit) of each config minus its seed, and
    of each (dataset, protocol, method): what a run is expected to take. A run's own config is asked first: its
    method's longest run can be many times longer (a curve point of 25 images per class against one of 600;
    ``ddpm --pretrain-on-synthetic`` reusing a stored fit, 300 s, against a ``ddpm`` run that fits it, 2,300 s),
    and estimating every run at that leaves the cores idle at the end of a step with short runs still to do."""

    by_config: dict[str, float] = field(default_factory=dict)
    by_method: dict[MethodKey, float] = field(default_factory=dict)
    #: configs whose longest stored run loaded its generator from the cache: it did not pay the fit
    reused_fit: set[str] = field(default_factory=set)
    #: the longest stored run of each config less the fit it made, over the runs that made or loaded a fit: what a
    #: run of it on a cached fit costs
    unfitted_by_config: dict[str, float] = field(default_factory=dict)
    #: the longest stored fit of each generator config (``fit_key``), from the runs that made theirs
    fits: dict[str, float] = field(default_factory=dict)
    #: of each (dataset, protocol, method), its stored fits' ``fit_key`` -> (longest seconds, ``fit_work``): a fit
    #: config nothing stored made is costed from these, scaled by its work (``scaled_fit``), never below the
    #: method's longest run
    method_fits: dict[MethodKey, dict[str, tuple[float, float | None]]] = field(default_factory=dict)
    #: the longest stored run of each method less the fit it made, if it made one: what a run on a cached fit costs
    unfitted_by_method: dict[MethodKey, float] = field(default_factory=dict)
    #: the longest stored training of each reference classifier config (``reference_cost_key``), from the runs that
    #: trained theirs: every other figure here is a run's time less that training, added back where a run will train
    references: dict[str, float] = field(default_factory=dict)
    #: this machine's seconds per stored second, by the ``speed_class`` of the machine a run was stored on
    #: (``speed_factors``); a class not in it counts as this machine's speed
    factors: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(
        cls, records: Iterable[dict], factors: dict[str, float] | None = None, machine: str | None = None
    ) -> Durations:
        """The durations of ``records`` less their outliers (``without_outliers``) and, with ``machine`` (its
        ``machine_class``), less the other machines' runs of configs measured here (``measured_here``)."""
        durations = cls(factors=dict(factors or {}))
        kept = without_outliers(records, durations.factors)
        for record in measured_here(kept, machine) if machine else kept:
            durations.add(record)
        return durations

    def add(self, record: dict) -> None:
        if record.get("total_time") is None:
            return
        scale = self.factors.get(speed_class(record) or "", 1.0)
        seconds = run_seconds(record) * scale
        key = (record["dataset"], record["protocol"], record["method"])
        self.by_method[key] = max(self.by_method.get(key, 0.0), seconds)
        if (trained := reference_trained(record)) and record.get("config"):
            alike_reference = reference_cost_key(key, record["config"])
            self.references[alike_reference] = max(self.references.get(alike_reference, 0.0), trained * scale)
        cached, fit = generator_fit(record)
        fit = fit * scale if fit is not None else None
        rest = seconds - ((fit or 0.0) if cached is False else 0.0)  # what the run cost besides the fit it made
        if cached is not None:
            self.unfitted_by_method[key] = max(self.unfitted_by_method.get(key, 0.0), rest)
        if record.get("config"):
            alike = cost_key(record["config"])
            if cached is not None:
                self.unfitted_by_config[alike] = max(self.unfitted_by_config.get(alike, 0.0), rest)
            if cached is False and fit is not None:
                fitted = fit_key(key, record["config"])
                self.fits[fitted] = max(self.fits.get(fitted, 0.0), fit)
                self.method_fits.setdefault(key, {})[fitted] = (self.fits[fitted], fit_work(key, record["config"]))
            if seconds > self.by_config.get(alike, -1.0):
                self.by_config[alike] = seconds
                if cached is True:
                    self.reused_fit.add(alike)
                else:
                    self.reused_fit.discard(alike)

    def seconds(
        self,
        key: MethodKey,
        config: dict | None = None,
        fit_cached: bool | None = None,
        reference_cached: bool | None = None,
    ) -> float | None:
        """``run_cost`` with, for a run that will train its reference classifier (``reference_cached`` False), the
        longest stored training of a reference like it on top (none stored: nothing added)."""
        seconds = self.run_cost(key, config, fit_cached)
        if seconds is not None and reference_cached is False and config is not None:
            seconds += self.references.get(reference_cost_key(key, config), 0.0)
        return seconds

    def run_cost(self, key: MethodKey, config: dict | None = None, fit_cached: bool | None = None) -> float | None:
        """The expected duration of a run of ``key`` with ``config``: its config's longest stored run, else its
        method's (less the fit each made, for a run whose fit is cached), else None (nothing stored).
        ``fit_cached`` False (the run will make its generator's fit): a config
        whose longest run loaded its fit is costed with the longest stored fit of the same generator config on top
        (or as the method's longest run, where no such fit is stored), so ``ddpm --pretrain-on-synthetic`` that will
        fit is not costed as the 300 s of one that loads. ``fit_cached`` True: the longest of the config's stored
        runs less the fit each made (BreastMNIST's ddpm at a seed that reuses one of its 5 fits: about 320 s, not the
        1,750 s of a run that made its fit)."""
        if config is None or (alike := cost_key(config)) not in self.by_config:
            if fit_cached is True and key in self.unfitted_by_method:  # a new config on a stored fit: no fit to pay
                return self.unfitted_by_method[key]
            longest = self.by_method.get(key)
            if fit_cached is False and config is not None and longest is not None and key in self.unfitted_by_method:
                # a new config that will make its fit: the rest of a run plus that fit, never less than the method's
                # longest run (its fit or its classifier may cost more than anything alike stored: wider networks,
                # more real images)
                fit = self.fits.get(fit_key(key, config)) or self.scaled_fit(key, config)
                return max(longest, self.unfitted_by_method[key] + (fit or 0.0))
            return longest
        seconds = self.by_config[alike]
        if fit_cached is True:
            return self.unfitted_by_config.get(alike, seconds)
        if fit_cached is False and alike in self.reused_fit:
            fit = self.fits.get(fit_key(key, config))
            if fit is not None:
                return seconds + fit
            scaled = self.scaled_fit(key, config) or 0.0
            seconds = max(seconds + scaled, self.by_method.get(key, seconds))
        return seconds

    def scaled_fit(self, key: MethodKey, config: dict) -> float | None:
        """A fit config of ``key`` nothing stored made, costed as the stored fits of its method scaled by their
        ``fit_work`` (the most any of them gives): ddpm with the unlabelled images at batch 128 does twice the
        image-steps of the stored 22-minute plain fit at batch 64. Costing it as that plain fit (the method's longest
        run) let a step start a fit of about an hour with 25 minutes left. None where either work is unknown."""
        work = fit_work(key, config)
        ratios = [
            seconds * work / stored
            for seconds, stored in self.method_fits.get(key, {}).values()
            if work is not None and stored  # neither None nor 0
        ]
        return max(ratios) if ratios else None


def fit_work(key: MethodKey, config: dict) -> float | None:
    """The image-steps of a generator fit (``steps`` x ``batch_size`` of its ``fit_config``), what its time scales
    with at one image size; None for a fit counted in epochs (its steps depend on the subset) or without them."""
    fitted = _fitted(key[2], _params(config))
    if not isinstance(fitted, dict):
        return None
    steps, batch = fitted.get("steps"), fitted.get("batch_size")
    if fitted.get("epochs") is not None or not isinstance(steps, int) or not isinstance(batch, int):
        return None
    return float(steps * batch)


#: A stored run longer than this many times the median of its like (``without_outliers``) is not a duration to plan by.
OUTLIER_FACTOR = 3.0


def without_outliers(records: Iterable[dict], factors: dict[str, float] | None = None) -> list[dict]:
    """``records`` less each run that took over ``OUTLIER_FACTOR`` times the median of its like (same config less the
    seed, same use of a cached fit; at least 3 of them), at this machine's speed. Such a run spent its time on
    something its like will not: older records lack ``lock_wait_s``, and one ddpm with pretraining that waited
    1,000 s for another worker's fit (1,290 s against 243-301 s for the other 14) priced every later one at an hour
    on a slower machine, so a step left both runs of its round undone with 53 minutes to spare."""
    records = [r for r in records if r.get("total_time") is not None]
    factors = factors or {}

    def seconds(record: dict) -> float:
        return run_seconds(record) * factors.get(speed_class(record) or "", 1.0)

    timed = [(r, _alike(r), seconds(r)) for r in records]
    groups: dict[str, list[float]] = {}
    for _, key, took in timed:
        if key is not None:
            groups.setdefault(key, []).append(took)
    medians = {key: statistics.median(values) for key, values in groups.items() if len(values) >= 3}
    return [r for r, key, took in timed if (m := medians.get(key or "")) is None or took <= OUTLIER_FACTOR * m]


#: Runs of a config on this machine from which its cost is read from them alone (``measured_here``).
HERE_MIN = 2


def measured_here(records: Iterable[dict], machine: str) -> list[dict]:
    """``records`` less, in each set of runs alike (same config less the seed, same use of a cached fit) with at
    least ``HERE_MIN`` runs on ``machine``, the runs of other machines. A speed factor is one median over all
    configs, and it fits some poorly: on an AVX2 machine (factor 3.7 from AVX512, pulled up by short runs) ddpm's
    longest AVX512 run that made its fit was costed at 8,400 s where its three runs here took 4,900-5,300, and a
    step left it out with two hours to go."""
    keyed = [(r, _alike(r), speed_class(r) == machine) for r in records]
    here = Counter(key for _, key, local in keyed if local)
    return [r for r, key, local in keyed if local or key is None or here[key] < HERE_MIN]


def _alike(record: dict) -> str | None:
    """What runs cost alike by (``without_outliers``, ``measured_here``): the config less the seed and whether the
    run loaded its generator's fit; None for a record without a config."""
    config = record.get("config")
    return json.dumps([cost_key(config), generator_fit(record)[0]]) if config else None


def run_seconds(record: dict) -> float:
    """A stored run's ``total_time`` less any wait for a fit another worker was making (``metrics.lock_wait_s``):
    counting the wait would cost it once more on the run's own; and less the reference classifier it trained
    (``reference_trained``), costed apart since a run on another machine, or later on this one, may load it."""
    waited = float((record.get("metrics") or {}).get("lock_wait_s", 0.0))
    return float(record["total_time"]) - waited - reference_trained(record)


def reference_trained(record: dict) -> float:
    """The seconds a stored run spent training its reference classifier (0 where it loaded it, or its record, older
    than the field, does not say)."""
    made = (record.get("metrics") or {}).get("synthetic") or {}
    return float(made.get("reference_seconds") or 0.0) if made.get("reference_cached") is False else 0.0


def reference_cost_key(key: MethodKey, config: dict) -> str:
    """What a reference classifier's training costs alike by: dataset, protocol, the subset's size settings and the
    reference's epochs and precision (not the method, nor the seed)."""
    sized = ("size", "fraction", "real_per_class", "curve_per_class", "stratified", "precision")
    fields = {name: config.get(name) for name in sized}
    epochs = (config.get("synthesis") or {}).get("fidelity_epochs")
    return json.dumps([key[0], key[1], fields, epochs], sort_keys=True, default=str)


def generator_fit(record: dict) -> tuple[bool | None, float | None]:
    """Whether a stored run loaded its generator from the cache, and the seconds its fit took where it made it:
    ``metrics.synthetic`` of a synthetic set, ``metrics.generator_fit`` of a method that fits during training
    (TSynD's autoencoder); (None, None) for a run that fits nothing."""
    metrics = record.get("metrics") or {}
    fit = metrics.get("synthetic") or {}
    if "generator_cached" in fit:
        return fit.get("generator_cached"), fit.get("generator_seconds")
    fit = metrics.get("generator_fit") or {}
    return fit.get("cached"), fit.get("seconds")


def fit_key(key: MethodKey, config: dict) -> str:
    """What a generator fit costs alike by: dataset, protocol and what the fitted weights depend on (the method's
    ``fit_config``; not the seed, nor how the run uses the fit): ``ddpm`` and ``ddpm --pretrain-on-synthetic`` share
    one, TSynD's variants share their autoencoder's, a ddpm that also trains on unlabelled images has its own."""
    return json.dumps([key[0], key[1], _fitted(key[2], _params(config))], sort_keys=True, default=str)


def _params(config: dict) -> str:
    """A run config's method parameters as ``_fitted`` takes them (JSON, so they can key its cache)."""
    return json.dumps(config.get("method_params") or {}, sort_keys=True, default=str)


@functools.lru_cache(maxsize=256)
def _fitted(method: str, params: str) -> Any:
    """``fit_config`` of ``method`` with ``params`` (JSON), else the method and its parameters (it trains nothing,
    or this version no longer knows it)."""
    from synthmed.augment import create_augmenter
    from synthmed.augment.generative import TorchGenerator

    try:
        augmenter = create_augmenter(method, **json.loads(params))
    except Exception:  # pricing only: whatever a stored record holds must not stop a command
        return [method, params]
    return augmenter.fit_config() if isinstance(augmenter, TorchGenerator) else [method, params]


def cost_key(config: dict) -> str:
    """A run's config minus its seed as one string (fields at their default left out, so records written before a
    field existed match): runs that cost alike, what they measure included."""
    from synthmed.spec import set_only

    levers = set_only(dict(config.get("synthesis") or {}))
    rest = set_only({k: v for k, v in config.items() if k not in ("seed", "synthesis")})
    return json.dumps(rest | {"synthesis": levers}, sort_keys=True, default=str)


def speed_class(record: dict) -> str | None:
    """What a stored run's duration depends on besides its config: the GPU it ran on (``cuda NVIDIA H100 ...``), else
    its CPU's kernel level (``cpu AVX512``); None for a record that does not say."""
    versions = record.get("versions") or {}
    if str(record.get("device", "cpu")).startswith("cuda"):
        return f"cuda {versions['gpu']}" if versions.get("gpu") else None
    return f"cpu {versions['cpu_capability']}" if versions.get("cpu_capability") else None


def machine_class(device: str = "auto") -> str:
    """``speed_class`` of the runs this process would make on ``device`` (auto | cpu | cuda)."""
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    versions = {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if cuda:
        versions["gpu"] = torch.cuda.get_device_name(0)
    return speed_class({"device": "cuda" if cuda else "cpu", "versions": versions}) or "unknown"


def speed_factors(records: Iterable[dict], machine: str) -> dict[str, float]:
    """This machine's seconds per second of each other machine class, from the configs stored on both: the median,
    over those configs (a run that made its fit and one that loaded it taken apart), of the ratio of their median
    durations. A study step on an AVX2 CPU runs 2-3x longer than the AVX512 runs it is costed from; costing it as
    stored would start runs the budget cannot finish, and the reverse leaves cores idle. Classes with no config in
    common with this machine are left out (counted at this machine's speed)."""
    groups: dict[tuple[str, bool | None], dict[str, list[float]]] = {}
    for record in records:
        kind = speed_class(record)
        if record.get("total_time") is None or not record.get("config") or kind is None:
            continue
        alike = (cost_key(record["config"]), generator_fit(record)[0])
        groups.setdefault(alike, {}).setdefault(kind, []).append(run_seconds(record))
    ratios: dict[str, list[float]] = {}
    for by_class in groups.values():
        if machine in by_class and (here := statistics.median(by_class[machine])) > 0:
            for kind, seconds in by_class.items():
                if kind != machine and statistics.median(seconds) > 0:
                    ratios.setdefault(kind, []).append(here / statistics.median(seconds))
    return {kind: statistics.median(values) for kind, values in ratios.items()}


def scaling_line(factors: dict[str, float], machine: str, records: Iterable[dict] = ()) -> str:
    """How ``speed_factors`` scaled the stored runs, for ``experiment status`` ("" when all ran here), naming the
    other machines of ``records`` it could not scale (no config stored on both): their runs count as stored."""
    others = {kind for kind in map(speed_class, records) if kind is not None and kind != machine}
    unscaled = sorted(others - set(factors))
    if not factors and not unscaled:
        return ""
    scaled = ", ".join(f"{kind} x{factor:.2f}" for kind, factor in sorted(factors.items()))
    line = f"runs stored on other machines costed at this one's speed ({machine}): {scaled}" if factors else ""
    if unscaled:
        note = f"not scaled, no config stored on both machines: {', '.join(unscaled)} (costed as stored)"
        line = f"{line}; {note}" if line else f"runs stored on other machines ({machine} here) {note}"
    return line


def stored_timings(store_path: Path, exported: Iterable[dict] = ()) -> list[dict]:
    """The timing records (``ResultStore.timings``) of an export and of a store, if there is one, together."""
    from synthmed.store import ResultStore

    records = list(exported)
    if store_path.exists():
        with ResultStore(store_path) as store:
            records += store.timings()
    return records


def stored_durations(store_path: Path, exported: Iterable[dict] = (), machine: str | None = None) -> Durations:
    """``Durations`` of a store (if there is one) and an export's records together; with ``machine`` (its
    ``machine_class``), runs stored on other machines are scaled to its speed (``speed_factors``)."""
    timings = stored_timings(store_path, exported)
    return Durations.of(timings, speed_factors(timings, machine) if machine else None, machine)


def typical(records: Iterable[dict], factors: dict[str, float] | None = None) -> list[dict]:
    """Of each config's stored runs, the one of median duration (the lower middle), taking the runs that made their
    generator's fit apart from those that loaded it: ``Durations.of`` these costs a run at what its config typically
    takes. The budget keeps the longest run, so that a step ends in time; over a study's rest that can be nearly
    twice the typical figure, which is the one to plan sessions by. With ``factors`` (``speed_factors``) the median
    is taken over the durations scaled to this machine, as ``Durations.of`` will cost them."""
    factors = factors or {}
    groups: dict[tuple, list[tuple[float, dict]]] = {}
    for record in records:
        if record.get("total_time") is None:
            continue
        config = record.get("config")
        kind = cost_key(config) if config else (record["dataset"], record["protocol"], record["method"])
        scaled = run_seconds(record) * factors.get(speed_class(record) or "", 1.0)
        groups.setdefault((kind, generator_fit(record)[0]), []).append((scaled, record))
    return [sorted(runs, key=lambda run: run[0])[(len(runs) - 1) // 2][1] for runs in groups.values()]


@dataclass(frozen=True)
class Estimate:
    """What the pending runs of a grid are expected to cost (``Durations``: the longest stored run of each one's
    config, else of its method); runs of a method with no stored run are counted apart (``unknown``), not guessed."""

    seconds: float
    known: int
    unknown: dict[str, int]  # method: pending runs that nothing stored can estimate

    def line(self, workers: int, typical: Estimate | None = None) -> str:
        """One line for ``experiment status``: CPU time, and the wall time at ``workers`` single-CPU runs; with
        ``typical`` (the same runs costed from ``typical`` records), that figure beside it."""
        workers = max(workers, 1)
        text = (
            f"the {self.known} pending run(s) with a stored run of their dataset, protocol and method take about "
            f"{_spoken(self.seconds)} of CPU ({_spoken(self.seconds / workers)} at {workers} worker(s); each run "
            "costed as the longest stored run of its config, else of its method, less the fit and the fidelity "
            "reference where they are cached"
        )
        if typical is not None:
            text += (
                f"; {_spoken(typical.seconds)} of CPU ({_spoken(typical.seconds / workers)}) at the median stored "
                "run of each config"
            )
        text += ")"
        if self.unknown:
            methods = ", ".join(f"{m} ({n})" for m, n in sorted(self.unknown.items()))
            text += f"; not costed, nothing stored for them yet: {methods}"
        return text


def estimate(runs: Iterable[tuple[MethodKey, dict | None, bool | None, bool | None]], durations: Durations) -> Estimate:
    """Cost the runs, each named by its (dataset, protocol, method), config and whether its generator fit and its
    reference classifier are cached (``Durations.seconds``), with ``durations``."""
    seconds, known, unknown = 0.0, 0, Counter[str]()
    for key, config, fit_cached, reference_cached in runs:
        expected = durations.seconds(key, config, fit_cached, reference_cached)
        if expected is not None:
            seconds, known = seconds + expected, known + 1
        else:
            unknown[key[2]] += 1
    return Estimate(seconds, known, dict(unknown))


def _spoken(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
