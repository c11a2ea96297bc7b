"""Where and in which precision a model trains: the ``train/device`` and ``train/precision`` names.

``DEVICES`` maps each accepted ``train/device`` to the torch device it resolves to; ``PRECISIONS``
maps each ``train/precision`` to the autocast dtype of the generator on CUDA (``None``: fp32). The
physics and the loss always stay fp32; on the CPU every precision runs as fp32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import lookup

__all__ = ["DEVICES", "PRECISIONS", "autocast_dtype", "resolve_device"]


def _auto() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise RuntimeError("train/device='cuda' but torch sees no CUDA device")
    return torch.device("cuda")


DEVICES: dict[str, Callable[[], torch.device]] = {
    "auto": _auto,
    "cpu": lambda: torch.device("cpu"),
    "cuda": _cuda,
}

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_device(name: str) -> torch.device:
    """The torch device ``train/device=name`` trains on."""
    return lookup(DEVICES, name, "train/device")()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The generator's autocast dtype for ``train/precision`` on ``device`` (None: no autocast)."""
    dtype = lookup(PRECISIONS, precision, "train/precision")
    return dtype if device.type == "cuda" else None
