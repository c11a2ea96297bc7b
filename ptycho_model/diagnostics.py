"""What happens inside a generator: per-block activation, weight, gradient and gate statistics.

Upstream learned why its FNO runs collapsed by dumping per-layer statistics of a collapsed
checkpoint by hand (a stable_hybrid whose zero-gamma InstanceNorm weights had stayed near 0, and a
LayerScale run whose norm weights were healthy while its output still went constant). This module
makes that a measurement of every epoch of every run, and of any saved model.

A *block* is a direct child of the generator, ModuleLists flattened: ``lifter``, ``encoder.i``,
``downsample.i``, ``bottleneck``, ``decoder.i``, ``head``. Per block:

``out_mean``, ``out_std``   mean of the block output; its spread over the val subset, per channel
                            (std over batch and space), averaged over channels
``rel_std``                 ``out_std`` over the output's per-channel RMS, averaged the same way:
                            0 for an output that no longer depends on the input or the position
``dead_fraction``           channels whose own relative spread is below ``flat_std`` (a unit that
                            answers every patch and pixel alike; GELU units never output exact 0)
``weight_norm``             L2 norm of the block's parameters
``grad_norm``, ``grad_norm_max``  the block's pre-clip gradient norm, mean and max over the steps
                            of the epoch (training only)
``layerscale_mean``, ``layerscale_max``  |gamma| of its LayerScale gates (stable blocks)
``norm_weight_mean``        the mean InstanceNorm weight (stable blocks)

A block is *flat* when ``rel_std < flat_std``, the same threshold as the collapse rule's flat
output (:mod:`ptycho_model.collapse`). No Ray or Optuna here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from . import names
from .optim import real_view

__all__ = ["GradTracker", "blocks", "first_flat", "layer_table", "model_layers", "param_stats",
           "record_outputs",
           "summary"]

EPS = 1e-12


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The generator's blocks by name, ModuleLists flattened (``encoder.0``, ``encoder.1``...),
    in definition order (forward order is what :func:`record_outputs` sees)."""
    out = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            out += [(f"{name}.{i}", m) for i, m in enumerate(child)]
        else:
            out.append((name, child))
    return out


def output_stats(y: torch.Tensor, flat_std: float) -> dict[str, float]:
    """Statistics of one block output ``(B, C, H, W)`` (any float dtype), see the module doc."""
    y = y.detach().float()
    per_c = y.transpose(0, 1).reshape(y.shape[1], -1)  # (C, B*H*W)
    std_c = per_c.std(dim=1, unbiased=False)
    rms_c = per_c.square().mean(dim=1).sqrt()
    out_std = float(std_c.mean())
    rms = float(rms_c.mean())
    return {
        "out_mean": float(y.mean()),
        "out_std": out_std,
        "rel_std": out_std / rms if rms > EPS else 0.0,
        "dead_fraction": float((std_c <= flat_std * rms_c + EPS).float().mean()),
    }


@contextmanager
def record_outputs(model: nn.Module, flat_std: float) -> Iterator[dict[str, dict[str, Any]]]:
    """Forward hooks on every block while the ``with`` body runs the model once: yields
    ``{block name: output_stats | {"kind": class name}}``, filled in forward order."""
    seen: dict[str, dict[str, Any]] = {}
    handles = []
    for name, mod in blocks(model):
        def hook(m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                seen[name] = {"kind": type(m).__name__, **output_stats(out, flat_std)}
        handles.append(mod.register_forward_hook(hook))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def param_stats(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per block: ``weight_norm``, and for stable blocks the LayerScale |gamma| mean and max and the
    mean InstanceNorm weight."""
    from .blocks import LayerScale

    out: dict[str, dict[str, float]] = {}
    for name, mod in blocks(model):
        sq = sum(float(torch.linalg.vector_norm(p.detach())) ** 2 for p in mod.parameters())
        d: dict[str, float] = {"weight_norm": math.sqrt(sq)}
        gammas = [m.gamma.detach().abs().float() for m in mod.modules()
                  if isinstance(m, LayerScale)]
        if gammas:
            g = torch.cat(gammas)
            d.update(layerscale_mean=float(g.mean()), layerscale_max=float(g.max()))
        norms = [m.weight.detach().float() for m in mod.modules()
                 if isinstance(m, nn.InstanceNorm2d) and m.weight is not None]
        if norms:
            d["norm_weight_mean"] = float(torch.cat(norms).mean())
        out[name] = d
    return out


class GradTracker:
    """Per-block pre-clip gradient norms over an epoch's steps: call :meth:`step` after each
    ``backward()``, read :meth:`stats` (mean and max per block) and :meth:`reset`.

    One ``_foreach_norm`` over every parameter per step, summed per block on the tensor side;
    nothing leaves the device until :meth:`stats`."""

    def __init__(self, model: nn.Module) -> None:
        self.names: list[str] = []
        self.params: list[nn.Parameter] = []
        owner: list[int] = []
        for i, (name, mod) in enumerate(blocks(model)):
            self.names.append(name)
            for p in mod.parameters():
                if p.requires_grad:
                    self.params.append(p)
                    owner.append(i)
        self.owner = torch.tensor(owner, dtype=torch.long)
        self.steps: list[torch.Tensor] = []

    def step(self) -> None:
        pairs = [(p.grad, i) for p, i in zip(self.params, self.owner.tolist(), strict=True)
                 if p.grad is not None]
        if not pairs:
            return
        norms = torch.stack(torch._foreach_norm([real_view(g) for g, _ in pairs])).float()
        idx = torch.tensor([i for _, i in pairs], device=norms.device)
        sq = torch.zeros(len(self.names), device=norms.device).index_add_(0, idx, norms.square())
        self.steps.append(sq)

    def stats(self) -> dict[str, dict[str, float]]:
        if not self.steps:
            return {}
        per_step = torch.stack(self.steps).sqrt().cpu()  # (steps, blocks)
        mean, top = per_step.mean(0).tolist(), per_step.max(0).values.tolist()
        return {n: {"grad_norm": m, "grad_norm_max": t}
                for n, m, t in zip(self.names, mean, top, strict=True)}

    def reset(self) -> None:
        self.steps.clear()


def layer_table(outputs: dict[str, dict[str, Any]], params: dict[str, dict[str, float]],
                grads: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """One row per block, in forward order (blocks that ran no forward after, by name)."""
    order = list(outputs) + [n for n in params if n not in outputs]
    rows = []
    for name in order:
        row: dict[str, Any] = {"name": name, **outputs.get(name, {}), **params.get(name, {})}
        row.update((grads or {}).get(name, {}))
        # non-finite (a diverged step's gradients) -> None: the table goes to JSON as it is
        rows.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                     for k, v in row.items()})
    return rows


def summary(table: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The per-epoch summary a Tune trial reports: the smallest block ``rel_std`` and the largest
    block ratio of the epoch's mean gradient norm to the weight norm (how far one step can move a
    block, up to the learning rate)."""
    rel = [r["rel_std"] for r in table if r.get("rel_std") is not None]
    ratios = [r["grad_norm"] / r["weight_norm"] for r in table
              if r.get("grad_norm") is not None and (r.get("weight_norm") or 0) > EPS]
    return {names.MIN_BLOCK_REL_STD: min(rel) if rel else math.nan,
            names.MAX_BLOCK_GRAD_RATIO: max(ratios) if ratios else math.nan}


def first_flat(history: Sequence[dict[str, Any]], flat_std: float, key: str = names.LAYERS
               ) -> tuple[str, int] | None:
    """(block, epoch) of the first block whose output went flat (``rel_std < flat_std``): the
    earliest epoch, and at that epoch the first block in forward order. None if none did."""
    for row in history:
        for layer in row.get(key) or ():
            if layer.get("rel_std") is not None and layer["rel_std"] < flat_std:
                return str(layer["name"]), int(row["epoch"])
    return None


@torch.no_grad()
def model_layers(model: nn.Module, x: torch.Tensor, flat_std: float) -> list[dict[str, Any]]:
    """The per-block table of ``model`` on inputs ``x`` (eval mode, one forward, no gradients)."""
    model.eval()
    with record_outputs(model, flat_std) as seen:
        model(x)
    return layer_table(dict(seen), param_stats(model))
