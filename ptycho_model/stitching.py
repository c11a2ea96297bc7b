"""Patch-grid geometry and stitching of raster-ordered test patches (docs/physics.md §1.3, §3).

Holds the counting functions (patches per side, patches per image, stitched size), the stitcher
(upstream ``ptycho/data_preprocessing.py`` ``stitch_predictions`` at gridsize 1) and the matching
clipped ground truth. Pure numpy; knows nothing about files or training. Gridsize 1 only.

Geometry at the Stage A test setting (size 392, N 64, stride 10): 33 x 33 patches per image,
``border = (N - stride) / 2 = 27``, stitched and ground-truth images 330 x 330.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ptycho_model.splits import Split


def n_side(size: int, N: int, stride: int) -> int:
    """Patches per image side for VALID N-windows at ``stride``: ``(size - N) // stride + 1``."""
    if N > size:
        raise ValueError(f"patch size N={N} exceeds the object size={size}")
    if stride < 1:
        raise ValueError(f"stride={stride} must be >= 1")
    return (size - N) // stride + 1


def patch_count(size: int, N: int, stride: int, nimgs: int = 1) -> int:
    """Patches in a split, ``nimgs * n_side**2`` (6,889 per 392 image at N 64, stride 4)."""
    return nimgs * n_side(size, N, stride) ** 2


def stitch_border(N: int, stride: int) -> int:
    """Pixels dropped on each side of a patch when stitching: ``(N - stride) / 2`` (§3)."""
    if stride > N or (N - stride) % 2:
        raise ValueError(
            f"stitching needs stride <= N and N - stride even; got N={N}, stride={stride}"
        )
    return (N - stride) // 2


def stitched_size(size: int, N: int, stride: int) -> int:
    """Side of a stitched image and of its ground truth: ``n_side * stride`` (330 at Stage A)."""
    stitch_border(N, stride)
    return n_side(size, N, stride) * stride


def stitch_patches(patches: np.ndarray, stride: int) -> np.ndarray:
    """Stitch one image's raster-ordered patches from their central ``stride``-px squares (§3).

    Patch ``k = i * n_side + j`` (row ``i``, column ``j``) contributes
    ``patches[k, b:b+stride, b:b+stride]`` at ``[i*stride, j*stride]`` with ``b = (N - stride)/2``.
    Multiply by ``norm_Y_I`` to compare with the ground truth when the patches are normalised.

    Args:
        patches: ``(n_side**2, N, N)`` (or ``(n_side**2, N, N, 1)``), any dtype, raster order.
        stride: the test stride; ``N - stride`` must be even.

    Returns:
        ``(n_side * stride, n_side * stride)``, same dtype as ``patches``.
    """
    patches = np.asarray(patches)
    if patches.ndim == 4 and patches.shape[-1] == 1:
        patches = patches[..., 0]
    if patches.ndim != 3 or patches.shape[1] != patches.shape[2]:
        raise ValueError(
            f"stitch_patches: patches must be (n_side**2, N, N), got shape={patches.shape}"
        )
    count, N = patches.shape[0], patches.shape[1]
    side = int(round(np.sqrt(count)))
    if side * side != count or count == 0:
        raise ValueError(
            f"stitch_patches: patch count={count} is not a positive square (n_side**2)"
        )
    b = stitch_border(N, stride)
    centres = patches[:, b : b + stride, b : b + stride]  # (side*side, stride, stride)
    grid = centres.reshape(side, side, stride, stride).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(grid.reshape(side * stride, side * stride))


def clip_ground_truth(image: np.ndarray, N: int, stride: int) -> np.ndarray:
    """The region of a full object image that stitching covers (§3).

    Drops ``(size - N) % stride`` trailing rows / columns (no patch reaches them), then
    ``(N - stride) / 2`` pixels per side: 392 -> 384 -> 330 at Stage A.

    Args:
        image: ``(size, size)`` or ``(size, size, 1)``, any dtype.

    Returns:
        ``(n_side * stride, n_side * stride)``, same dtype.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"clip_ground_truth: image must be (size, size), got shape={image.shape}")
    size = image.shape[0]
    keep = size - (size - N) % stride
    b = stitch_border(N, stride)
    return np.ascontiguousarray(image[b : keep - b, b : keep - b])


def test_image0_patches(split: Split) -> slice:
    """The patches of the split's first image: ``slice(0, n_side**2)`` (raster order, §2)."""
    return slice(0, split.n_side**2)


test_image0_patches.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def ground_truth_image(split: Split) -> np.ndarray:
    """Clipped ground truth of the split's image 0, shaped like its stitched patches.

    Returns:
        ``(n_side * stride, n_side * stride)`` complex64 (330 x 330 at Stage A).
    """
    return clip_ground_truth(split.YY_full[0, :, :, 0], split.N, split.stride).astype(np.complex64)
