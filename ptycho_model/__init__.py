"""The model core: simulation, physics, generators, training (torch, numpy; no search library).

Two calls are offered at the package level and imported on first use, so ``import ptycho_model``
stays light: :func:`load_exported` (the model ``tune-ptycho best --export`` wrote) and
:func:`reconstruct` (run it on diffraction in the NPZ layout); see :mod:`ptycho_model.exported`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .exported import ExportedModelError, load_exported, reconstruct

__all__ = ["ExportedModelError", "load_exported", "reconstruct"]
_LAZY = {"ExportedModelError", "load_exported", "reconstruct"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import exported

        return getattr(exported, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
