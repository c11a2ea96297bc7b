"""One nested, typed run configuration whose ``/``-joined paths are the names everywhere.

``optim/lr`` is ``cfg.optim.lr`` in code, ``config["optim"]["lr"]`` in a Tune trial, an Optuna
parameter name in a search space and ``--set optim/lr=3e-4`` on the command line. ``from_dict``
rejects unknown keys (naming the closest match) and out-of-range values (naming the field, the
value and what is allowed). Presets live in :mod:`ptycho_model.presets`; this module holds only the
structure and its validation.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints

from .errors import ConfigError, closest, lookup

# Each choice-valued path accepts the names of the registry that builds it: the registries are
# the one home of those names (config validation, the CLI, ``tune-ptycho paths`` and the search
# spaces read them through :func:`choices`; none is spelled twice). A registry's module is
# imported when first asked, so that reading a config or a search space does not import torch.
# (``data/probe`` also takes an NPZ path; ``ptycho_model.probes.PROBES`` holds its built-ins.)
REGISTRIES: dict[str, tuple[str, str]] = {  # config path -> (module, registry)
    "model/arch": ("ptycho_model.generators", "GENERATORS"),
    "model/stable_block": ("ptycho_model.blocks", "STABLE_VARIANTS"),
    "optim/name": ("ptycho_model.optim", "OPTIMIZERS"),
    "sched/name": ("ptycho_model.optim", "LR_SCHEDULES"),
    "clip/algorithm": ("ptycho_model.optim", "CLIPPERS"),
    "train/loss": ("ptycho_model.losses", "LOSSES"),
    "train/device": ("ptycho_model.device", "DEVICES"),
    "train/precision": ("ptycho_model.device", "PRECISIONS"),
}


def registry(path: str) -> Mapping[str, Any]:
    """The registry whose names the choice-valued config ``path`` accepts."""
    module, name = REGISTRIES[path]
    return getattr(importlib.import_module(module), name)


def choices(path: str) -> tuple[str, ...]:
    """The names ``path`` accepts, in the registry's order: ``choices("optim/name")``."""
    return tuple(registry(path))


@dataclass(frozen=True)
class DataConfig:
    """The grid_lines benchmark (docs/physics.md §1.2-1.4). Sizes in pixels."""

    size: int = 392  # side of each full object image
    n_lines: int = 400  # lines per object (upstream: 400 at size 392; scale with size)
    n_train: int = 2  # object images per split
    n_val: int = 1
    n_test: int = 2
    N: int = 64  # patch / diffraction-pattern side
    stride_train: int = 4
    stride_test: int = 10
    nphotons: float = 1e9  # expected counts per pattern, averaged over train patches
    set_phi: bool = True
    # A pure phase object (a weak-phase sample): each image's amplitude replaced by its mean, the
    # phase kept (needs set_phi). The right reconstruction then has a flat amplitude: a fit
    # through the phase, which the collapse rule must not mistake for a collapse.
    phase_only: bool = False
    probe: str = "ideal_disk"  # ideal_disk | asymmetric | path to an NPZ holding probeGuess
    object_seed: int = 1  # lines-object seeds; train, val and test draw from separate streams
    noise_seed: int = 0  # Poisson noise
    val_is_test: bool = False  # upstream parity: validate on the test split


@dataclass(frozen=True)
class PhysicsConfig:
    """Forward-model quirks (docs/physics.md §8): both default to correct physics."""

    amplitude_gain: float = 1.0  # upstream Stage A ran with 16 (Quirk A)
    # None: train with the simulation probe; 4.0: upstream's P/4 (Quirk B)
    probe_scale: float | None = None


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "hybrid"
    width: int = 32
    blocks: int = 4
    modes: int = 12
    spectral_corners: int = 2  # 2: standard FNO (both +-k_y corners); 1: upstream's fallback layer
    stable_block: str = "layerscale"  # zero_gamma (v1) | layerscale (v2); stable_hybrid only
    layerscale_init: float = 1e-3
    max_hidden_channels: int | None = None


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only; Nesterov when > 0
    beta1: float = 0.9
    beta2: float = 0.999


@dataclass(frozen=True)
class SchedConfig:
    """The learning-rate schedule inside one run (``sched/``; ``ptycho_model.optim.LR_SCHEDULES``).
    Not the trial scheduler that stops whole trials early (the spec's ``scheduler/``)."""

    name: str = "constant"
    warmup_epochs: int = 0  # warmup_cosine: linear warmup 0.1 -> 1 over this many epochs
    min_ratio: float = 0.1  # warmup_cosine: cosine ends at lr * min_ratio
    gamma: float = 0.95  # exponential: per-epoch factor


@dataclass(frozen=True)
class ClipConfig:
    algorithm: str = "none"
    threshold: float = 1.0  # max norm (norm), max |g| (value), lambda (agc, agc_unitwise)


@dataclass(frozen=True)
class TrainConfig:
    max_epochs: int = 50
    batch_size: int = 16
    seed: int = 20260128
    eval_every: int = 5  # reconstruction metrics every k epochs and at the end; 0: end only
    loss: str = "mae"
    # (train/stop_on_collapse, the old spelling of collapse/stop, is read by RunConfig.from_dict)
    device: str = "auto"
    precision: str = "fp32"  # autocast dtype for the generator on CUDA; physics stays fp32
    channels_last: bool = False
    val_subset: int = 64  # patches of the fixed val subset used for output_std
    layer_stats: bool = True  # per-block diagnostics every epoch (ptycho_model.diagnostics)


@dataclass(frozen=True)
class CollapseConfig:
    """docs/design.md "Collapse": ratio rule after a grace period, and a flat-output rule."""

    ratio: float = 2.0  # docs/calibration.md, "The main job's own arms": why not lower
    patience: int = 2
    # epochs before the ratio kind may count (the flat kinds count from epoch 1); None:
    # default_collapse_grace(max_epochs). Not the trial scheduler's scheduler/grace_period.
    grace: int | None = None
    flat_std: float = 1e-3
    # the amplitude alone flat (interquartile spread / median below amp_flat_spread) with val_loss
    # at or above amp_flat_ratio x its best; 0 turns the kind off
    # chosen on half of a labelled set of real runs (docs/calibration.md, "The collapse rule,
    # measured"): no error on that half, none missed on the other
    amp_flat_spread: float = 0.1
    amp_flat_ratio: float = 1.5
    # A flagged run ends at once (collapse.should_stop, which every path asks); false: the flags
    # are computed and reported, and the run trains on (to see whether it recovers).
    # ``tune-ptycho train`` sets it false unless given --stop-on-collapse.
    stop: bool = True


@dataclass(frozen=True)
class FaultConfig:
    """Deterministic fault injection for tests; refused unless ``allowed`` is set."""

    allowed: bool = False
    nan_at_epoch: int = 0  # make the train loss NaN at this (1-based) epoch
    crash_at_epoch: int = 0  # raise at this epoch (only on the first attempt: see crash_marker)
    crash_marker: str = ""  # a file path; the crash happens only while it does not exist
    sleep_s: float = 0.0  # extra seconds per epoch (gives tests time to act mid-run)
    collapse_at_epoch: int = 0  # from this epoch on, val_loss is scaled by collapse_factor:
    collapse_factor: float = 10.0  # a scripted learns-then-collapses curve through the real rule


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)

    @property
    def collapse_grace(self) -> int:
        """The collapse rule's grace: ``collapse/grace``, or :func:`default_collapse_grace`."""
        g = self.collapse.grace
        return default_collapse_grace(self.train.max_epochs) if g is None else g

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None = None) -> RunConfig:
        return build_dataclass(cls, legacy_keys(d or {}), path="")

    def with_updates(self, updates: dict[str, Any]) -> RunConfig:
        """A new config with ``{"optim/lr": 3e-4, ...}`` (flat paths) or nested dicts merged in."""
        merged = self.to_dict()
        for k, v in flatten(updates).items():
            set_path(merged, k, v)
        return RunConfig.from_dict(merged)


def default_collapse_grace(max_epochs: int) -> int:
    """The collapse rule's grace when ``collapse/grace`` is not given: epochs before the ratio
    kind may count, a quarter of the run, at most 5 (0 for a run under 4 epochs).

    A different knob from the trial scheduler's ``scheduler/grace_period`` (the spec's
    ``default_grace_period``: ASHA's or HyperBand's first rung, at least 1), which decides when
    a scheduler may first stop a trial for ranking low, not when a collapse may be flagged."""
    return min(5, max_epochs // 4)


LEGACY_STOP = "train/stop_on_collapse"  # the old spelling of collapse/stop


def legacy_keys(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with the config's old keys read as the new ones (``d`` itself is not changed).

    ``train/stop_on_collapse`` once made ``train`` stop on a flag while Tune trials read
    ``collapse/stop``. true is read as ``collapse/stop=true``, with a one-line FutureWarning
    naming the new key. false, its old default (every older ``spec.json`` and ``config.json``
    holds it), is dropped: it never kept a Tune trial from stopping, and ``train`` no longer
    stops by default (it sets ``collapse/stop=false`` itself)."""
    train = d.get("train")
    if not isinstance(train, dict) or "stop_on_collapse" not in train:
        return d
    train = dict(train)
    old = train.pop("stop_on_collapse")
    d = {**d, "train": train}
    if old is True:
        warnings.warn(f"{LEGACY_STOP} is deprecated: use collapse/stop (read as "
                      "collapse/stop=true)", FutureWarning, stacklevel=3)
        collapse = d.get("collapse", {})
        if isinstance(collapse, dict):  # anything else: build_dataclass names it
            d["collapse"] = {**collapse, "stop": True}
    elif old is not False:
        raise ConfigError(f"{LEGACY_STOP}={old!r} must be true or false (it is read as "
                          "collapse/stop; use that)")
    return d


# --------------------------------------------------------------------------------------------
# Generic helpers: nested dict <-> dataclass, flat paths
# --------------------------------------------------------------------------------------------


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim/lr": 1}``; keys that already hold ``/`` pass
    through."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in flat.items():
        set_path(out, k, v)
    return out


def set_path(d: dict[str, Any], path: str, value: Any) -> None:
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ConfigError(f"empty config path {path!r}")
    node = d
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"config path {path!r}: {p!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value as a YAML scalar: ``3e-4`` -> 0.0003, ``true`` -> True,
    ``null`` -> None.

    PyYAML is imported here, not at module level: the model core (training, presets, the
    benchmarks on a torch-only GPU machine) must import without it; only ``--set`` parsing
    needs it."""
    import yaml

    value = yaml.safe_load(text)
    # YAML 1.1 reads "3e-4" as a string (no dot); accept it as the float a user means.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def known_paths(cls: type = RunConfig, prefix: str = "") -> list[str]:
    paths = []
    for f in fields(cls):
        hint = get_type_hints(cls)[f.name]
        key = f"{prefix}/{f.name}" if prefix else f.name
        if isinstance(hint, type) and is_dataclass(hint):
            paths.extend(known_paths(hint, key))
        else:
            paths.append(key)
    return paths


def _coerce(value: Any, hint: Any, path: str) -> Any:
    args = getattr(hint, "__args__", ())
    if type(None) in args:  # Optional[...]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}={value!r} must be true or false")
    if hint is int:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or float(value) != int(value)):
            raise ConfigError(f"{path}={value!r} must be an integer")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{path}={value!r} must be a number")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{path}={value!r} must be finite")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={value!r} must be a string")
        return value
    return value


def build_dataclass(cls: type, d: Any, path: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {d!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for k in d:
        if k not in names:
            where = f"{path}/{k}" if path else str(k)
            raise ConfigError(f"unknown config key {where!r}{closest(str(k), names)}; "
                              f"allowed under {path or 'the top level'}: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in d:
            continue
        p = f"{path}/{name}" if path else name
        hint = hints[name]
        if isinstance(hint, type) and is_dataclass(hint):
            kwargs[name] = build_dataclass(hint, d[name], p)
        else:
            kwargs[name] = _coerce(d[name], hint, p)
    obj = cls(**kwargs)
    validate = _VALIDATORS.get(cls)
    if validate is not None:
        validate(obj)
    return obj


# --------------------------------------------------------------------------------------------
# Range checks: one function per section, each error names path, value and what is allowed
# --------------------------------------------------------------------------------------------


def _choice(path: str, value: str) -> None:
    lookup(registry(path), value, path)


def _positive(path: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{path}={value!r} must be > 0")


def _at_least(path: str, value: float, lo: float) -> None:
    if value < lo:
        raise ConfigError(f"{path}={value!r} must be >= {lo}")


def _check_data(c: DataConfig) -> None:
    _at_least("data/N", c.N, 8)
    if c.N % 2:
        raise ConfigError(f"data/N={c.N} must be even (fftshift centre at N/2)")
    if c.size < c.N:
        raise ConfigError(f"data/size={c.size} must be >= data/N={c.N}")
    for name in ("n_train", "n_test", "stride_train", "stride_test", "n_lines"):
        _at_least(f"data/{name}", getattr(c, name), 1)
    _at_least("data/n_val", c.n_val, 0 if c.val_is_test else 1)
    _positive("data/nphotons", c.nphotons)
    _at_least("data/object_seed", c.object_seed, 0)
    _at_least("data/noise_seed", c.noise_seed, 0)
    if c.phase_only and not c.set_phi:
        raise ConfigError("data/phase_only=true needs data/set_phi=true (without a phase the "
                          "object would be a constant)")
    if c.stride_test > c.N:
        raise ConfigError(f"data/stride_test={c.stride_test} must be <= data/N={c.N}")
    if c.stride_test % 2:
        raise ConfigError(f"data/stride_test={c.stride_test} must be even (stitching border)")


def _check_physics(c: PhysicsConfig) -> None:
    _positive("physics/amplitude_gain", c.amplitude_gain)
    if c.probe_scale is not None:
        _positive("physics/probe_scale", c.probe_scale)


def _check_model(c: ModelConfig) -> None:
    _choice("model/arch", c.arch)
    _choice("model/stable_block", c.stable_block)
    _at_least("model/width", c.width, 1)
    _at_least("model/blocks", c.blocks, 1)
    _at_least("model/modes", c.modes, 1)
    if c.spectral_corners not in (1, 2):
        raise ConfigError(f"model/spectral_corners={c.spectral_corners} must be 1 (upstream) "
                          "or 2 (standard)")
    _positive("model/layerscale_init", c.layerscale_init)
    if c.max_hidden_channels is not None:
        _at_least("model/max_hidden_channels", c.max_hidden_channels, c.width)


def _check_optim(c: OptimConfig) -> None:
    _choice("optim/name", c.name)
    _positive("optim/lr", c.lr)
    _at_least("optim/weight_decay", c.weight_decay, 0.0)
    if not 0 <= c.momentum < 1:
        raise ConfigError(f"optim/momentum={c.momentum} must be in [0, 1)")
    for name in ("beta1", "beta2"):
        v = getattr(c, name)
        if not 0 <= v < 1:
            raise ConfigError(f"optim/{name}={v} must be in [0, 1)")


def _check_sched(c: SchedConfig) -> None:
    _choice("sched/name", c.name)
    _at_least("sched/warmup_epochs", c.warmup_epochs, 0)
    if not 0 < c.min_ratio <= 1:
        raise ConfigError(f"sched/min_ratio={c.min_ratio} must be in (0, 1]")
    if not 0 < c.gamma <= 1:
        raise ConfigError(f"sched/gamma={c.gamma} must be in (0, 1]")


def _check_clip(c: ClipConfig) -> None:
    _choice("clip/algorithm", c.algorithm)
    _positive("clip/threshold", c.threshold)


def _check_train(c: TrainConfig) -> None:
    _at_least("train/max_epochs", c.max_epochs, 1)
    _at_least("train/batch_size", c.batch_size, 1)
    _at_least("train/eval_every", c.eval_every, 0)
    _at_least("train/val_subset", c.val_subset, 1)
    _choice("train/loss", c.loss)
    _choice("train/device", c.device)
    _choice("train/precision", c.precision)


def _check_collapse(c: CollapseConfig) -> None:
    if not c.ratio > 1:
        raise ConfigError(f"collapse/ratio={c.ratio} must be > 1 (val_loss / best_val_loss)")
    _at_least("collapse/patience", c.patience, 1)
    if c.grace is not None:
        _at_least("collapse/grace", c.grace, 0)
    _at_least("collapse/flat_std", c.flat_std, 0.0)
    _at_least("collapse/amp_flat_spread", c.amp_flat_spread, 0.0)
    _at_least("collapse/amp_flat_ratio", c.amp_flat_ratio, 1.0)


def _check_run(c: RunConfig) -> None:
    if c.sched.name == "warmup_cosine" and c.sched.warmup_epochs >= c.train.max_epochs:
        raise ConfigError(f"sched/warmup_epochs={c.sched.warmup_epochs} must be < "
                          f"train/max_epochs={c.train.max_epochs}")
    depth = 2 ** (c.model.blocks - 1)
    if c.data.N % depth:
        raise ConfigError(f"data/N={c.data.N} is not divisible by 2^(model/blocks-1)={depth} "
                          f"(model/blocks={c.model.blocks}); choose blocks <= "
                          f"{1 + int(math.log2(c.data.N & -c.data.N))} or another N")
    f = c.faults
    if (f.nan_at_epoch or f.crash_at_epoch or f.sleep_s or f.collapse_at_epoch) and not f.allowed:
        raise ConfigError("faults/* inject failures for tests; set faults/allowed=true to use them")


_VALIDATORS: dict[type, Callable[[Any], None]] = {
    DataConfig: _check_data,
    PhysicsConfig: _check_physics,
    ModelConfig: _check_model,
    OptimConfig: _check_optim,
    SchedConfig: _check_sched,
    ClipConfig: _check_clip,
    TrainConfig: _check_train,
    CollapseConfig: _check_collapse,
    RunConfig: _check_run,
}
