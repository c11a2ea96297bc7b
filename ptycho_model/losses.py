"""PINN losses between the predicted and the measured diffraction amplitude (no labels).

Both are divided by the (detached) batch mean of the measured amplitude, as upstream's
``PtychoPINN_Lightning.compute_loss`` does (docs/physics.md §5.1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import lookup

_EPS = 1e-8
_LOG_EPS = 1e-12


def mae_loss(pred_amp: torch.Tensor, meas_amp: torch.Tensor) -> torch.Tensor:
    """mean |A_pred - X| / (mean(X) + 1e-8). Both (B, C, N, N) float32."""
    return (pred_amp - meas_amp).abs().mean() / (meas_amp.mean().detach() + _EPS)


def poisson_loss(pred_amp: torch.Tensor, meas_amp: torch.Tensor) -> torch.Tensor:
    """Poisson NLL with rate lambda = A_pred^2 and (float) observation k = X^2, summed over
    (C, N, N), averaged over the batch, divided by mean(X)."""
    rate = pred_amp.square()
    k = meas_amp.square()
    nll = -(k * torch.log(rate + _LOG_EPS) - rate - torch.lgamma(k + 1.0))
    per_sample = nll.flatten(1).sum(dim=1)
    return per_sample.mean() / (meas_amp.mean().detach() + _EPS)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mae": mae_loss,
    "poisson": poisson_loss,
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lookup(LOSSES, name, "train/loss")
