"""The training loop: one PINN run, epoch by epoch, with no Ray and no Optuna inside.

``fit(cfg, data, on_epoch=history.append)`` is the whole API most callers need. ``Trainer`` exposes
the same loop one epoch at a time (``for metrics in trainer.epochs(): ...``) with
``state_dict()`` / ``load_state_dict()`` so that a caller — the Ray Tune trainable — can checkpoint
after every epoch and resume to exactly the result of an uninterrupted run.

Per epoch (docs/physics.md §5): shuffled mini-batches -> generator -> complex patch x probe ->
far-field amplitude -> loss against the measured amplitude; pre-clip global grad norm, clipping,
optimizer step; validation loss; ``output_std`` on a fixed val subset; scheduler step (explicitly,
every epoch — Quirk D); collapse flags (:mod:`ptycho_model.collapse`); reconstruction metrics on
the test image every ``eval_every`` epochs and at the end.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import collapse, diagnostics, names
from .config import RunConfig
from .data import Datasets
from .device import autocast_dtype, resolve_device
from .evaluate import evaluate_test_image, to_input
from .generators import build_generator, to_complex
from .losses import get_loss
from .optim import build_optimizer, build_scheduler, clip_gradients, current_lr, step_scheduler
from .physics import predicted_amplitude


class InjectedCrash(RuntimeError):
    """Raised by the ``faults/crash_at_epoch`` test hook."""


def _finite(x: float) -> float:
    return x if math.isfinite(x) else names.DIVERGED_SENTINEL


def _finite_or(x: float, default: float) -> float:
    return x if math.isfinite(x) else default


@dataclass(frozen=True)
class Spread:
    """How much a predicted object varies over the val subset, each relative to its mean
    amplitude; all three are 0 for a constant output.

    ``complex``: sqrt(mean |O - mean O|^2) / mean |O| (``output_std``);
    ``amp``: std(|O|) / mean |O| (``amp_std``);
    ``phase``: 1 - |mean(O / |O|)|, the circular spread of the phase (``phase_std``);
    ``amp_iqr``: (q75 - q25) / q50 of |O| (``amp_iqr``), which a few outlying patches do not move.
    """

    complex: float = 0.0
    amp: float = 0.0
    phase: float = 0.0
    amp_iqr: float = 0.0

    @classmethod
    def of(cls, obj: torch.Tensor) -> Spread:
        mag = obj.abs()
        mean_amp = float(mag.mean())
        if not mean_amp > 1e-12:
            return cls()
        unit = obj / mag.clamp_min(1e-12)
        q25, q50, q75 = torch.quantile(mag.flatten().float().cpu(),
                                       torch.tensor([0.25, 0.5, 0.75])).tolist()
        return cls(complex=float((obj - obj.mean()).abs().square().mean().sqrt()) / mean_amp,
                   amp=float(mag.std(correction=0)) / mean_amp,
                   phase=1.0 - float(unit.mean().abs()),
                   amp_iqr=(q75 - q25) / q50 if q50 > 1e-12 else 0.0)


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    final: dict[str, Any]  # the last epoch's metrics
    diverged: bool
    collapsed: bool
    model: nn.Module
    best_model_state: dict[str, torch.Tensor] | None = None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # stitched pred / gt


class Trainer:
    """Owns model, optimizer, scheduler, RNG and collapse state for one run."""

    def __init__(self, cfg: RunConfig, data: Datasets, device: torch.device | str | None = None):
        self.cfg = cfg
        self.data = data
        self.device = (torch.device(device) if device is not None
                       else resolve_device(cfg.train.device))
        self.autocast_dtype = autocast_dtype(cfg.train.precision, self.device)
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed % 2**32)
        self.model = build_generator(cfg.model, N=cfg.data.N).to(self.device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.sched, cfg.train.max_epochs)
        self.loss_fn = get_loss(cfg.train.loss)
        self.shuffle_gen = torch.Generator().manual_seed(cfg.train.seed + 1)

        probe = self._training_probe()
        self.probe = torch.as_tensor(probe, dtype=torch.complex64, device=self.device)
        self.x_train = to_input(data.train.diffraction, self.device)  # (n, C, N, N)
        self.x_val = to_input(data.val.diffraction, self.device)
        self.epoch = 0  # epochs completed
        self.state = collapse.CollapseState()
        self.best_model_state: dict[str, torch.Tensor] | None = None
        self.diverged = False
        self.history: list[dict[str, Any]] = []
        self.last_eval: tuple[np.ndarray, np.ndarray] | None = None
        self.grads = diagnostics.GradTracker(self.model)
        self.layer_outputs: dict[str, dict[str, Any]] = {}  # the last val pass, per block

    # ------------------------------------------------------------------ physics and data
    def _training_probe(self) -> np.ndarray:
        """The probe in the PINN forward model: the simulation probe (corrected physics) unless
        ``physics/probe_scale`` asks for upstream's ``probeGuess / probe_scale`` (Quirk B)."""
        split = self.data.train
        if self.cfg.physics.probe_scale is None:
            return split.probe_simulated
        return split.probeGuess / self.cfg.physics.probe_scale

    def _forward_amplitude(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, N, N) -> (predicted amplitude (B, C, N, N) fp32, object (B, C, N, N) c64)."""
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                            enabled=self.autocast_dtype is not None):
            out = self.model(x)  # (B, N, N, C, 2)
        obj = to_complex(out.float())  # physics in fp32
        amp = predicted_amplitude(obj, self.probe, self.cfg.physics.amplitude_gain)
        return amp, obj

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self, epoch: int) -> tuple[float, float, float]:
        cfg = self.cfg
        self.model.train()
        n = self.x_train.shape[0]
        order = torch.randperm(n, generator=self.shuffle_gen)
        self.grads.reset()
        params = [p for p in self.model.parameters() if p.requires_grad]
        total, count, norms = 0.0, 0, []
        for i in range(0, n, cfg.train.batch_size):
            idx = order[i:i + cfg.train.batch_size].to(self.device)
            xb = self.x_train[idx]
            amp, _ = self._forward_amplitude(xb)
            loss = self.loss_fn(amp, xb)
            if cfg.faults.nan_at_epoch == epoch:
                loss = loss * float("nan")
            if not torch.isfinite(loss):
                return math.nan, math.nan, math.nan
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.layer_stats:
                self.grads.step()
            norms.append(clip_gradients(params, cfg.clip))
            self.optimizer.step()
            total += float(loss.detach()) * xb.shape[0]
            count += xb.shape[0]
        return total / count, float(np.mean(norms)), float(np.max(norms))

    @torch.no_grad()
    def _validate(self) -> tuple[float, Spread]:
        """(val_loss, spread): the mean loss over the val split, and the spread of the predicted
        object on a fixed val subset (:class:`Spread`; zeros for a constant output)."""
        self.model.eval()
        total, count = 0.0, 0
        bs = max(self.cfg.train.batch_size, 64)
        for i in range(0, self.x_val.shape[0], bs):
            xb = self.x_val[i:i + bs]
            amp, _ = self._forward_amplitude(xb)
            total += float(self.loss_fn(amp, xb)) * xb.shape[0]
            count += xb.shape[0]
        return total / count, self._output_spread()

    @torch.no_grad()
    def _output_spread(self) -> Spread:
        """Spread of the predicted patch on a fixed val subset (:class:`Spread`).

        The complex spread alone misses a collapse whose phase keeps varying under a constant
        amplitude (docs/calibration.md, "The collapse rule, measured"), and the amplitude's alone
        cannot tell that collapse from a fit through the phase: the rule reads both, with the loss.

        The same pass records every block's output statistics (:mod:`ptycho_model.diagnostics`)
        through forward hooks: the per-layer diagnostics cost no extra forward.
        """
        x = self.x_val[: self.cfg.train.val_subset]
        if self.cfg.train.layer_stats:
            with diagnostics.record_outputs(self.model, self.cfg.collapse.flat_std) as seen:
                _, obj = self._forward_amplitude(x)
            self.layer_outputs = dict(seen)
        else:
            _, obj = self._forward_amplitude(x)
        return Spread.of(obj)

    def _evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics, pred, gt = evaluate_test_image(model, self.data.test, self.device,
                                                autocast_dtype=self.autocast_dtype)
        self.last_eval = (pred, gt)
        return {k: _finite_or_nan(v) for k, v in metrics.items()}

    def _best_model(self) -> nn.Module:
        if self.best_model_state is None:
            return self.model
        m = copy.deepcopy(self.model)
        m.load_state_dict(self.best_model_state)
        return m

    def run_epoch(self) -> dict[str, Any]:
        """Train and validate one epoch; return its metrics (docs/design.md "Per-epoch metrics")."""
        cfg = self.cfg
        epoch = self.epoch + 1
        t0 = time.perf_counter()
        if cfg.faults.crash_at_epoch == epoch and not (
            cfg.faults.crash_marker and Path(cfg.faults.crash_marker).exists()
        ):
            if cfg.faults.crash_marker:
                Path(cfg.faults.crash_marker).touch()
            raise InjectedCrash(f"faults/crash_at_epoch={epoch}: injected crash")
        lr = current_lr(self.optimizer)
        self.layer_outputs = {}
        train_loss, gnorm, gmax = self._train_epoch(epoch)
        val_loss, spread = ((math.nan, Spread()) if not math.isfinite(train_loss)
                            else self._validate())
        if cfg.faults.collapse_at_epoch and epoch >= cfg.faults.collapse_at_epoch:
            val_loss *= cfg.faults.collapse_factor
        if cfg.faults.sleep_s:
            time.sleep(cfg.faults.sleep_s)
        self.epoch = epoch
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            self.diverged = True
            m = self._metrics(epoch, train_loss, val_loss, lr, gnorm, gmax, spread, t0)
            m.update(self._final_eval())
            self.history.append(m)
            return m
        step_scheduler(self.scheduler, val_loss)
        improved = val_loss < self.state.best_val_loss
        was_collapsed = self.state.collapsed
        collapse.update(self.state, cfg.collapse, cfg.collapse_grace, epoch, val_loss,
                        spread.complex, spread.amp_iqr)
        if improved:
            self.best_model_state = {k: v.detach().clone()
                                     for k, v in self.model.state_dict().items()}
        m = self._metrics(epoch, train_loss, val_loss, lr, gnorm, gmax, spread, t0)
        last = epoch >= cfg.train.max_epochs
        just_collapsed = self.state.collapsed and not was_collapsed
        if last or just_collapsed:
            m.update(self._final_eval())
        elif cfg.train.eval_every and epoch % cfg.train.eval_every == 0:
            m.update(self._evaluate(self.model))
        m[names.EPOCH_TIME_S] = time.perf_counter() - t0
        self.history.append(m)
        return m

    def _final_eval(self) -> dict[str, float]:
        """Eval of the current weights and of the best-val_loss weights (``best_ckpt_`` prefix).
        A diverged model's current weights may hold NaN: only the best weights are scored then."""
        out: dict[str, float] = {}
        if self.best_model_state is not None:
            best = self._evaluate(self._best_model())
            out.update({names.BEST_CKPT_PREFIX + k: v for k, v in best.items()})
        if not self.diverged:  # last: figures show the final model, as upstream's do
            out.update(self._evaluate(self.model))
        return out

    def layer_table(self) -> list[dict[str, Any]]:
        """This epoch's per-block table: the val pass's outputs, weights, gates, gradients."""
        if not self.cfg.train.layer_stats:
            return []
        return diagnostics.layer_table(self.layer_outputs, diagnostics.param_stats(self.model),
                                       self.grads.stats())

    def _metrics(self, epoch: int, train_loss: float, val_loss: float, lr: float, gnorm: float,
                 gmax: float, spread: Spread, t0: float) -> dict[str, Any]:
        s = self.state
        layers = self.layer_table()
        summ = diagnostics.summary(layers)
        diverged = self.diverged
        best = s.best_val_loss if math.isfinite(s.best_val_loss) else names.DIVERGED_SENTINEL
        return {
            names.EPOCH: epoch,
            names.TRAIN_LOSS: _finite(train_loss),
            names.VAL_LOSS: _finite(val_loss),
            names.BEST_VAL_LOSS: best,
            names.BEST_EPOCH: s.best_epoch,
            names.COLLAPSE_RATIO: 1.0 if diverged else collapse.ratio_of(s, val_loss),
            names.COLLAPSED: int(s.collapsed),
            names.COLLAPSE_KIND: s.kind,
            names.DIVERGED: int(diverged),
            names.OBJECTIVE: names.DIVERGED_SENTINEL if diverged else _finite(val_loss),
            names.LR: lr,
            names.GRAD_NORM: _finite(gnorm),
            names.GRAD_NORM_MAX: _finite(gmax),
            names.OUTPUT_STD: _finite(spread.complex),
            names.AMP_STD: _finite(spread.amp),
            names.PHASE_STD: _finite(spread.phase),
            names.AMP_IQR: _finite(spread.amp_iqr),
            # no val pass (a diverged epoch): no spread, as output_std
            names.MIN_BLOCK_REL_STD: _finite_or(summ[names.MIN_BLOCK_REL_STD], 0.0),
            names.MAX_BLOCK_GRAD_RATIO: _finite(summ[names.MAX_BLOCK_GRAD_RATIO]),
            names.EPOCH_TIME_S: time.perf_counter() - t0,
            names.LAYERS: layers,
        }

    # ------------------------------------------------------------------ loop control
    @property
    def finished(self) -> bool:
        """Whether the run has ended: all its epochs done, or a flag that ends it
        (:func:`ptycho_model.collapse.should_stop`: diverged, or collapsed under
        ``collapse/stop``). The Tune trainable asks this too, to checkpoint a trial's last epoch."""
        if self.epoch >= self.cfg.train.max_epochs:
            return True
        return collapse.should_stop(self.flags(), self.cfg.collapse)

    def flags(self) -> dict[str, int]:
        """The rule's flags now, under the metric names a result row holds them by."""
        return {names.COLLAPSED: int(self.state.collapsed), names.DIVERGED: int(self.diverged)}

    def epochs(self) -> Iterator[dict[str, Any]]:
        while not self.finished:
            yield self.run_epoch()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers only, so ``torch.load(..., weights_only=True)`` works."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "shuffle_rng": self.shuffle_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "collapse": self.state.to_dict(),
            "best_model": self.best_model_state,
            "diverged": self.diverged,
            "history": self.history,
            "config": self.cfg.to_dict(),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.epoch = int(sd["epoch"])
        self.model.load_state_dict(sd["model"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        self.shuffle_gen.set_state(sd["shuffle_rng"])
        torch.set_rng_state(sd["torch_rng"])
        self.state = collapse.CollapseState.from_dict(sd["collapse"])
        self.best_model_state = sd["best_model"]
        self.diverged = bool(sd["diverged"])
        self.history = list(sd["history"])

    def save(self, path: str | Path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))


def _finite_or_nan(v: float) -> float:
    """Metrics may be NaN where undefined (phase FRC of a flat phase); never +-inf."""
    v = float(v)
    return v if math.isfinite(v) or math.isnan(v) else math.nan


def fit(cfg: RunConfig, data: Datasets, *, on_epoch: Callable[[dict[str, Any]], Any] | None = None,
        resume: dict[str, Any] | str | Path | None = None,
        device: torch.device | str | None = None) -> FitResult:
    """Train one model, to ``train/max_epochs`` or the flag that ends it
    (:attr:`Trainer.finished`: a divergence, or a collapse unless ``collapse/stop=false``).
    ``on_epoch(metrics)`` is called after every epoch; ``resume`` is a ``Trainer.state_dict()``
    (or a file holding one) to continue from."""
    trainer = Trainer(cfg, data, device=device)
    if resume is not None:
        if isinstance(resume, (str, Path)):
            trainer.load(resume)
        else:
            trainer.load_state_dict(resume)
    for m in trainer.epochs():
        if on_epoch is not None:
            on_epoch(m)
    preds = {}
    if trainer.last_eval is not None:
        preds = {"pred": trainer.last_eval[0], "gt": trainer.last_eval[1]}
    final = trainer.history[-1] if trainer.history else {}
    return FitResult(history=trainer.history, final=final, diverged=trainer.diverged,
                     collapsed=trainer.state.collapsed, model=trainer.model,
                     best_model_state=trainer.best_model_state, predictions=preds)


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float, in nested dicts and lists too, replaced by None: what
    every JSON file of a run holds (any JSON reader loads it)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [json_safe(x) for x in v]
    return v


def save_history(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Write a run's ``history.json``: a JSON list with one object per epoch, in epoch order,
    each the metrics ``fit`` reported for that epoch (the names of :mod:`ptycho_model.names`,
    ``collapsed`` and ``collapse_kind`` included; a Tune trial reports the same keys plus Tune's
    own). Non-finite numbers are written as ``null``, so any JSON reader loads it. The one format
    of both ``tune-ptycho train`` and every trial checkpoint (docs/design.md)."""

    path = Path(path)
    path.write_text(json.dumps([json_safe(dict(h)) for h in history], allow_nan=False,
                               default=float))
    return path
