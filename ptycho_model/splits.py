"""The dataset records: :class:`Split` (one upstream grid_lines NPZ) and :class:`Datasets`.

A leaf module: simulation (:mod:`ptycho_model.data`), NPZ I/O (:mod:`ptycho_model.npz_io`) and
stitching (:mod:`ptycho_model.stitching`) all import it and it imports none of them. The NPZ
format is docs/physics.md §2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ptycho_model.errors import InputError

__all__ = ["SPLIT_NAMES", "DataError", "Datasets", "Split"]

SPLIT_NAMES = ("train", "test", "val")


class DataError(InputError):
    """A dataset that cannot be used; the message names the file and the key at fault."""


@dataclass(eq=False)
class Split:
    """One split, exactly the contents of an upstream grid_lines NPZ (§2); gridsize 1 (C = 1).

    Attributes:
        diffraction: ``(n, N, N, 1)`` float32, normalised measured amplitude ``X`` (§1.4).
        Y_I: ``(n, N, N, 1)`` float32, illuminated amplitude label ``Y_I * |P_sim|``.
        Y_phi: ``(n, N, N, 1)`` float32, object phase patch (probe phase not included).
        coords_nominal, coords_true: ``(n, 1, 2, 1)`` float32, relative offsets (0 at gridsize 1).
        YY_full: ``(nimgs, size, size, 1)`` complex64, full objects ``A exp(i phi)`` (raw scale).
        probeGuess: ``(N, N)`` complex64, the transformed probe (before ``set_probe``).
        probe_simulated: ``(N, N)`` complex64, ``P_sim``, the probe the simulation used.
        metadata: the ``_metadata`` JSON (schema 1.0.0); ``additional_parameters`` holds at least
            ``split``, ``stride`` and ``n_side``.
        YY_ground_truth: test split only, ``(H', W', 1)`` complex64, clipped ground truth, image 0.
        norm_Y_I: test split only, the split's amplitude norm (stitched patches x norm = object).
    """

    diffraction: np.ndarray
    Y_I: np.ndarray
    Y_phi: np.ndarray
    coords_nominal: np.ndarray
    coords_true: np.ndarray
    YY_full: np.ndarray
    probeGuess: np.ndarray
    probe_simulated: np.ndarray
    metadata: dict[str, Any]
    YY_ground_truth: np.ndarray | None = None
    norm_Y_I: float | None = None

    @property
    def params(self) -> dict[str, Any]:
        """``metadata["additional_parameters"]``."""
        return self.metadata.setdefault("additional_parameters", {})

    @property
    def name(self) -> str:
        return str(self.params.get("split", "unknown"))

    @property
    def N(self) -> int:
        return int(self.diffraction.shape[1])

    @property
    def n(self) -> int:
        return int(self.diffraction.shape[0])

    @property
    def nimgs(self) -> int:
        return int(self.YY_full.shape[0])

    @property
    def size(self) -> int:
        return int(self.YY_full.shape[1])

    @property
    def stride(self) -> int:
        return int(self.params["stride"])

    @property
    def n_side(self) -> int:
        return int(self.params["n_side"])


@dataclass(eq=False)
class Datasets:
    """The three splits; ``val is test`` when ``data/val_is_test`` (upstream parity)."""

    train: Split
    val: Split
    test: Split

    @property
    def val_is_test(self) -> bool:
        return self.val is self.test
