"""The exported model: the weights ``tune-ptycho best --export FILE`` writes, read back and run.

An export is two files: ``FILE``, the generator's plain state dict (``torch.save``), and
``FILE.json``, the trial's full :class:`~ptycho_model.config.RunConfig` as a dict.
:func:`save_exported` writes them, :func:`load_exported` rebuilds the model from them (no search
library, no experiment directory needed) and :func:`reconstruct` runs it on diffraction in the NPZ
layout ``(B, N, N, 1)`` (``diffraction`` in a dataset NPZ, docs/design.md), returning the complex
object patches ``(B, N, N)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import RunConfig
from .errors import InputError
from .evaluate import predict_objects, to_input
from .generators import build_generator

__all__ = ["ExportedModelError", "config_path", "load_exported", "reconstruct", "save_exported"]


class ExportedModelError(InputError):
    """An exported model that cannot be loaded or run; the message names the file and why."""


def config_path(path: str | os.PathLike) -> Path:
    """The config file that goes with the exported weights at ``path``: ``<path>.json``."""
    return Path(str(Path(path).expanduser()) + ".json")


def save_exported(weights: Mapping[str, torch.Tensor], cfg: RunConfig,
                  path: str | os.PathLike) -> Path:
    """Write ``weights`` (a generator state dict) to ``path`` and ``cfg`` to ``<path>.json``.

    The pair is what :func:`load_exported` reads. Creates the parent directory; -> ``path``.
    """
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(weights), out)
    config_path(out).write_text(json.dumps(cfg.to_dict(), indent=2, default=str) + "\n")
    return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(exc).__name__)


def _read_config(weights: Path) -> RunConfig:
    where = config_path(weights)
    if not where.is_file():
        raise ExportedModelError(f"{str(where)!r}: the config of the exported weights "
                                 f"{str(weights)!r} is missing (an export writes it beside them)")
    try:
        d = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExportedModelError(f"{str(where)!r}: not a JSON config ({_one_line(exc)})") from exc
    if not isinstance(d, dict):
        raise ExportedModelError(f"{str(where)!r}: expected a JSON object (a RunConfig dict), "
                                 f"got {type(d).__name__}")
    try:
        return RunConfig.from_dict(d)
    except InputError as exc:
        raise ExportedModelError(f"{str(where)!r}: not a valid RunConfig: {exc}") from exc


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is not one
        why = ("torch.load(weights_only=True) refused its contents"
               if "weights only load failed" in str(exc).lower()
               else f"torch.load: {type(exc).__name__}: {_one_line(exc)}")
        raise ExportedModelError(f"{str(path)!r}: not a torch weights file ({why})") from exc
    if not isinstance(sd, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ExportedModelError(f"{str(path)!r}: not a state dict (name -> tensor), got "
                                 f"{type(sd).__name__}")
    return dict(sd)


def _mismatch(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> str:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(own)
              if k in sd and sd[k].shape != own[k].shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes)):
        if items:
            parts.append(f"{len(items)} {label} (first: {items[0]})")
    return "; ".join(parts)


def load_exported(path: str | os.PathLike, device: torch.device | str = "cpu"
                  ) -> tuple[nn.Module, RunConfig]:
    """(model, cfg) from the export at ``path`` (``tune-ptycho best --export path``).

    ``cfg`` is the :class:`RunConfig` in ``<path>.json``; the model is
    ``build_generator(cfg.model, N=cfg.data.N)`` with the weights of ``path`` loaded strictly
    (``torch.load(..., weights_only=True)``), in eval mode on ``device``. It takes the torch
    layout ``(B, 1, N, N)`` float32 and returns ``(B, N, N, 1, 2)`` [real, imag]; to run it on the
    NPZ layout ``(B, N, N, 1)`` use :func:`reconstruct`.

    Raises:
        ExportedModelError (an :class:`~ptycho_model.errors.InputError`): ``path`` missing or not a
            torch state dict, ``<path>.json`` missing or not a valid RunConfig, or weights that do
            not fit the model that config builds; the one-line message names the file.
    """
    weights = Path(path).expanduser()
    if not weights.is_file():
        raise ExportedModelError(f"{str(weights)!r}: exported weights file not found"
                                 + (" (it is a directory)" if weights.is_dir() else ""))
    cfg = _read_config(weights)
    sd = _read_weights(weights)
    try:
        model = build_generator(cfg.model, N=cfg.data.N)
    except (InputError, ValueError) as exc:
        raise ExportedModelError(f"{str(config_path(weights))!r}: builds no generator "
                                 f"({_one_line(exc)})") from exc
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        why = _mismatch(model, sd) or _one_line(exc)
        raise ExportedModelError(f"{str(weights)!r}: the weights do not fit the "
                                 f"{cfg.model.arch} generator of {str(config_path(weights))!r}: "
                                 f"{why}") from exc
    return model.to(device).eval(), cfg


def reconstruct(model: nn.Module, diffraction: Any, batch_size: int = 64) -> np.ndarray:
    """Complex object patches ``(B, N, N)`` for diffraction in the NPZ layout.

    ``diffraction``: a numpy array or tensor ``(B, N, N, 1)`` — the ``diffraction`` key of a
    dataset NPZ — or ``(B, N, N)``. It is moved to the torch layout ``(B, 1, N, N)`` float32 on the
    model's device and run under ``torch.no_grad`` in eval mode (the model's own mode is restored),
    in batches of ``batch_size``, as the evaluation does (:func:`ptycho_model.evaluate.to_input`,
    :func:`~ptycho_model.evaluate.predict_objects`). Returns a numpy complex64 array
    ``(B, N, N)``, in the normalized scale the model was trained in (times the NPZ's ``norm_Y_I``
    for the ground-truth scale; ``ptycho_model.data.stitch_patches`` stitches raster-ordered
    patches into an image).

    Raises:
        InputError: ``diffraction`` has another rank, no patch, another N than the model's, or
            more than one channel.
    """
    arr = diffraction.detach().cpu().numpy() if isinstance(diffraction, torch.Tensor) \
        else np.asarray(diffraction)
    if arr.ndim == 3:
        arr = arr[..., None]
    N = getattr(model, "N", None)
    if arr.ndim != 4 or arr.shape[-1] != 1 or arr.shape[1] != arr.shape[2] or not arr.shape[0]:
        raise InputError(f"reconstruct: diffraction must be (B, N, N, 1) or (B, N, N) as in a "
                         f"dataset NPZ, got shape {tuple(np.shape(diffraction))}")
    if N is not None and arr.shape[1] != N:
        raise InputError(f"reconstruct: diffraction patches are {arr.shape[1]} x {arr.shape[2]}, "
                         f"the model takes N={N}")
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    x = to_input(arr, device)  # (B, 1, N, N)
    return predict_objects(model, x, batch_size)[:, 0].cpu().numpy()
