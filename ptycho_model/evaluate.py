"""Predict the test patches, stitch test image 0 and score it against its ground truth.

Upstream scores test image 0 only (docs/physics.md §3, §6); so do we, and add the score of the
twin orientation (each predicted patch replaced by conj(psi(-r)) before stitching — gridsize-1
data with a centrosymmetric probe cannot tell the two apart, docs/calibration.md) and the collapse
fingerprint (the score a constant-amplitude prediction gets on this same ground truth).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import names
from .data import Split, ground_truth_image, stitch_patches
from .generators import to_complex
from .metrics import constant_fingerprint, eval_reconstruction
from .physics import twin


def to_input(diffraction: np.ndarray | torch.Tensor, device: torch.device | str = "cpu"
             ) -> torch.Tensor:
    """(n, N, N, C) channel-last array -> (n, C, N, N) float32 tensor on ``device``."""
    t = torch.as_tensor(np.asarray(diffraction, dtype=np.float32))
    return t.permute(0, 3, 1, 2).contiguous().to(device)


@torch.no_grad()
def predict_objects(model: nn.Module, x: torch.Tensor, batch_size: int = 64,
                    autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Object patches for inputs ``x`` (n, C, N, N): (n, C, N, N) complex64, on x's device."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size]
        with torch.autocast(xb.device.type, dtype=autocast_dtype,
                            enabled=autocast_dtype is not None):
            y = model(xb)
        out.append(to_complex(y.float()))
    model.train(was_training)
    return torch.cat(out)


def evaluate_test_image(model: nn.Module, test: Split, device: torch.device | str = "cpu",
                        batch_size: int = 64, autocast_dtype: torch.dtype | None = None
                        ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Score test image 0. Returns (metrics, stitched prediction, ground truth), both (H, W)
    complex.

    Metrics carry the names of :mod:`ptycho_model.names`, including ``amp_ssim_twin`` and
    ``amp_ssim_constant`` (the collapse fingerprint of this ground truth).
    """
    n0 = test.n_side * test.n_side  # test patches are in raster order; image 0 comes first
    x = to_input(test.diffraction[:n0], device)
    obj = predict_objects(model, x, batch_size, autocast_dtype)[:, 0].cpu().numpy()  # (n0, N, N)
    norm = float(test.norm_Y_I) if test.norm_Y_I is not None else 1.0
    pred = stitch_patches(obj, test.stride) * norm
    pred_twin = stitch_patches(twin(obj), test.stride) * norm
    gt = ground_truth_image(test)
    metrics = eval_reconstruction(pred, gt)
    metrics[names.AMP_SSIM_TWIN] = eval_reconstruction(pred_twin, gt)[names.AMP_SSIM]
    metrics[names.AMP_SSIM_CONSTANT] = constant_fingerprint(gt)[names.AMP_SSIM_CONSTANT]
    return metrics, pred, gt
