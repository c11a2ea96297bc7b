"""The grid_lines datasets: the :class:`Split` record (one upstream NPZ), simulation, cache key.

Holds :func:`simulate` (docs/physics.md §1.2-§1.4: lines objects -> VALID patches -> probe ->
far-field amplitude -> Poisson noise) and :func:`data_fingerprint`. The :class:`Split` /
:class:`Datasets` records live in :mod:`ptycho_model.splits` (a leaf that every data module
imports), file I/O in :mod:`ptycho_model.npz_io` and geometry / stitching in
:mod:`ptycho_model.stitching`; the records and the geometry are re-exported here. Gridsize 1 only.

Simulation uses :func:`ptycho_model.physics.predicted_amplitude` — the very function the PINN loss
uses — on CPU in complex64, so simulation and training share one FFT convention.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptycho_model.config import ConfigError, DataConfig, build_dataclass
from ptycho_model.objects import make_objects
from ptycho_model.physics import CONSTANTS, intensity_scale, predicted_amplitude
from ptycho_model.probes import PROBES, make_probe, simulation_probe, smooth_probe
from ptycho_model.splits import SPLIT_NAMES, DataError, Datasets, Split
from ptycho_model.stitching import (
    clip_ground_truth,
    ground_truth_image,
    n_side,
    patch_count,
    stitch_border,
    stitch_patches,
    stitched_size,
    test_image0_patches,
)

# Bump when a change alters simulated bytes for an unchanged DataConfig (invalidates caches).
CODE_VERSION = "grid_lines-sim-1"
STREAMS = {name: i for i, name in enumerate(SPLIT_NAMES)}  # object and noise stream per split
_CHUNK = 1024  # patches per FFT / Poisson batch (bounds peak memory); part of the noise stream
_WORKERS = min(
    4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
)

__all__ = [
    "CODE_VERSION",
    "DataError",
    "Datasets",
    "Split",
    "clip_ground_truth",
    "data_fingerprint",
    "extract_patches",
    "ground_truth_image",
    "n_side",
    "patch_count",
    "simulate",
    "stitch_border",
    "stitch_patches",
    "stitched_size",
    "test_image0_patches",
]


def extract_patches(images: np.ndarray, N: int, stride: int) -> np.ndarray:
    """VALID ``N x N`` windows at ``stride``: raster order within an image, images in order (§1.3).

    Args:
        images: ``(nimgs, size, size)`` any dtype.

    Returns:
        ``(nimgs * n_side**2, N, N)`` contiguous copy, same dtype.
    """
    nimgs, size = images.shape[0], images.shape[1]
    side = n_side(size, N, stride)
    out = np.empty((nimgs * side * side, N, N), dtype=images.dtype)
    for k in range(nimgs):
        windows = np.lib.stride_tricks.sliding_window_view(images[k], (N, N))[::stride, ::stride]
        out[k * side * side : (k + 1) * side * side] = windows.reshape(side * side, N, N)
    return out


def data_fingerprint(cfg: DataConfig) -> str:
    """Short stable sha256 hex of the data config plus :data:`CODE_VERSION` (a dataset cache key).

    When ``data/probe`` is an NPZ path, the file's own sha256 is included too, so editing the
    probe file invalidates the cache although the config did not change.
    """
    data = dataclasses.asdict(cfg)
    if not data["phase_only"]:  # added later: the caches of every other object keep their keys
        del data["phase_only"]
    payload: dict[str, Any] = {"data": data, "code_version": CODE_VERSION}
    if cfg.probe not in PROBES and Path(cfg.probe).is_file():
        payload["probe_sha256"] = hashlib.sha256(Path(cfg.probe).read_bytes()).hexdigest()
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _validated(cfg: DataConfig) -> DataConfig:
    """Re-run the config's range checks (a DataConfig may be built directly) plus our own."""
    if not isinstance(cfg, DataConfig):
        raise TypeError(f"simulate: cfg must be a DataConfig, got {type(cfg).__name__}")
    cfg = build_dataclass(DataConfig, dataclasses.asdict(cfg), "data")
    for name in ("object_seed", "noise_seed"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"data/{name}={getattr(cfg, name)} must be >= 0")
    if cfg.stride_test > cfg.N:
        raise ConfigError(
            f"data/stride_test={cfg.stride_test} must be <= data/N={cfg.N} (stitching)"
        )
    return cfg


def _metadata(
    cfg: DataConfig, name: str, nimgs: int, stride: int, fingerprint: str
) -> dict[str, Any]:
    """The ``_metadata`` record of one split (§2 schema 1.0.0 plus this project's fields)."""
    return {
        "schema": CONSTANTS.schema,
        "physics_parameters": {"nphotons": cfg.nphotons, "gridsize": 1, "N": cfg.N},
        "training_parameters": {},
        "additional_parameters": {
            "split": name,
            "size": cfg.size,
            "offset": CONSTANTS.offset,
            "outer_offset_train": 2 * cfg.stride_train,
            "outer_offset_test": 2 * cfg.stride_test,
            "nimgs": nimgs,
            "nimgs_train": cfg.n_train,
            "nimgs_test": cfg.n_test,
            "nimgs_val": 0 if cfg.val_is_test else cfg.n_val,
            "val_is_test": cfg.val_is_test,
            "probe": cfg.probe,
            "probe_smoothing_sigma": CONSTANTS.probe_smoothing_sigma,
            "probe_scale_mode": "pad_preserve",
            "set_phi": cfg.set_phi,
            "phase_only": cfg.phase_only,
            "coords_type": "relative",
            "stride": stride,
            "n_side": n_side(cfg.size, cfg.N, stride),
            "object_seed": cfg.object_seed,
            "noise_seed": cfg.noise_seed,
            "data_fingerprint": fingerprint,
            "code_version": CODE_VERSION,
        },
    }


def _diffract(
    y_i: np.ndarray, phi: np.ndarray, p_sim: np.ndarray, scale: float, seed: tuple[int, int]
) -> np.ndarray:
    """Noisy normalised amplitudes ``X = sqrt(Poisson(amp^2)) / s`` (§1.4).

    ``amp = |fftshift(fft2(s * Y_I * exp(i phi) * P_sim, norm="ortho"))|``; Poisson drawn by
    ``Generator.poisson`` on float64 expected counts. Work is cut into fixed chunks of
    :data:`_CHUNK` patches, chunk ``k`` drawing from ``default_rng([*seed, k])``, and the chunks run
    on a few threads (numpy's Poisson sampler and torch's FFT release the GIL): the bytes do not
    depend on the thread count or scheduling. Inputs ``(n, N, N)`` float32; returns the same.
    """
    probe = torch.from_numpy(p_sim)
    out = np.empty(y_i.shape, dtype=np.float32)
    inv_scale = 1.0 / scale

    def run(k: int) -> None:
        sl = slice(k * _CHUNK, (k + 1) * _CHUNK)
        obj = torch.polar(torch.from_numpy(y_i[sl]) * scale, torch.from_numpy(phi[sl]))
        amp = predicted_amplitude(obj[:, None], probe)[:, 0].numpy()  # (b, N, N) float32
        counts = np.random.default_rng([*seed, k]).poisson(np.square(amp, dtype=np.float64))
        np.multiply(np.sqrt(counts), inv_scale, out=out[sl], casting="same_kind")

    n_chunks = -(-y_i.shape[0] // _CHUNK)
    workers = max(1, min(_WORKERS, n_chunks))
    if workers == 1:
        for k in range(n_chunks):
            run(k)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(n_chunks)))  # list() re-raises any chunk's exception
    return out


def _build_split(
    name: str,
    objects: np.ndarray,
    stride: int,
    cfg: DataConfig,
    probe_guess: np.ndarray,
    p_sim: np.ndarray,
    fingerprint: str,
    scale: float | None,
) -> tuple[Split, float]:
    """Simulate one split; ``scale=None`` computes ``s`` from this split (train). -> (split, s)."""
    amps = extract_patches(np.abs(objects).astype(np.float32), cfg.N, stride)  # (n, N, N)
    phi = extract_patches(np.angle(objects).astype(np.float32), cfg.N, stride)
    norm = float(np.mean(amps.max(axis=(1, 2))))  # §1.3: mean over patches of max(A_patch)
    if not norm > 0:
        raise DataError(f"split {name!r}: amplitude norm norm_Y_I={norm!r} must be > 0")
    amps /= np.float32(norm)  # now Y_I
    if scale is None:
        scale = intensity_scale(amps, p_sim, cfg.nphotons)
    x = _diffract(amps, phi, p_sim, scale, (cfg.noise_seed, STREAMS[name]))
    amps *= np.abs(p_sim).astype(np.float32)  # stored label: Y_I * |P_sim|
    if name == "train":  # upstream sklearn shuffle(random_state=0): RandomState(0) permutation
        perm = np.random.RandomState(CONSTANTS.train_shuffle_seed).permutation(x.shape[0])
        x, amps, phi = x[perm], amps[perm], phi[perm]
    zeros = np.zeros((x.shape[0], 1, 2, 1), dtype=np.float32)
    split = Split(
        diffraction=x[..., None],
        Y_I=amps[..., None],
        Y_phi=phi[..., None],
        coords_nominal=zeros,
        coords_true=zeros.copy(),
        YY_full=objects[..., None].astype(np.complex64),
        probeGuess=probe_guess.copy(),  # each split owns its arrays
        probe_simulated=p_sim.copy(),
        metadata=_metadata(cfg, name, objects.shape[0], stride, fingerprint),
    )
    if name == "test":
        split.YY_ground_truth = clip_ground_truth(objects[0], cfg.N, stride)[..., None]
        split.norm_Y_I = norm
    return split, scale


def simulate(cfg: DataConfig) -> Datasets:
    """Simulate train / val / test grid_lines splits from a data config (§1.2-§1.4).

    Deterministic: objects from ``data/object_seed`` (streams 0 train, 1 test, 2 val), Poisson
    noise from ``data/noise_seed`` (same streams), train order shuffled with seed 0; test and val
    stay in raster order. The intensity scale ``s`` comes from train and is reused for val / test.
    Train and val use ``stride_train``, test ``stride_test``. The probe is
    ``probeGuess = smooth_probe(make_probe(data/probe, N))``, and
    ``P_sim = simulation_probe(probeGuess)``.

    Returns:
        :class:`Datasets`; ``val is test`` when ``data/val_is_test``.
    """
    cfg = _validated(cfg)
    fingerprint = data_fingerprint(cfg)
    probe_guess = smooth_probe(make_probe(cfg.probe, cfg.N))
    p_sim = simulation_probe(probe_guess)

    def objects(name: str, count: int) -> np.ndarray:
        obj = make_objects(cfg.size, count, cfg.object_seed, STREAMS[name], cfg.set_phi,
                           cfg.n_lines)
        if cfg.phase_only:  # (n, H, W): each image's mean amplitude, its own phase
            amp = np.abs(obj).mean(axis=(1, 2), keepdims=True)
            obj = (amp * np.exp(1j * np.angle(obj))).astype(obj.dtype)
        return obj

    common: dict[str, Any] = dict(cfg=cfg, probe_guess=probe_guess, p_sim=p_sim,
                                  fingerprint=fingerprint)
    train, scale = _build_split(
        "train", objects("train", cfg.n_train), cfg.stride_train, scale=None, **common
    )
    test, _ = _build_split(
        "test", objects("test", cfg.n_test), cfg.stride_test, scale=scale, **common
    )
    if cfg.val_is_test:
        val = test
    else:
        val, _ = _build_split(
            "val", objects("val", cfg.n_val), cfg.stride_train, scale=scale, **common
        )
    return Datasets(train=train, val=val, test=test)
