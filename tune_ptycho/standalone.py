"""``tune-ptycho train`` and ``tune-ptycho simulate``: one model or one dataset, no Ray.

``train`` writes its own folder (the names are :mod:`tune_ptycho.storage.layout`'s): the history,
metrics, config and weights, the reconstruction, and the loss figure (:func:`history_figure`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ptycho_model import names
from ptycho_model.collapse import signal_text
from ptycho_model.config import RunConfig
from ptycho_model.data import simulate
from ptycho_model.npz_io import save_datasets
from ptycho_model.train import Trainer, json_safe, save_history

from .analysis.canvas import plt, reconstruction_figure, save_figure
from .storage.dataset_cache import get_datasets
from .storage.layout import (
    TRAIN_BEST_MODEL,
    TRAIN_CONFIG,
    TRAIN_HISTORY_PNG,
    TRAIN_METRICS,
    TRAIN_MODEL,
    TRAIN_RECONSTRUCTION_PNG,
)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def run_simulate(cfg: RunConfig, out: Path) -> dict[str, Path]:
    ds = simulate(cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    save_datasets(ds, out)
    print(f"train {ds.train.diffraction.shape[0]} patches, val {ds.val.diffraction.shape[0]}, "
          f"test {ds.test.diffraction.shape[0]} (N={cfg.data.N}); wrote {out}")
    return {p.stem: p for p in out.glob("*.npz")}


def run_train(cfg: RunConfig, out: Path, threads: int | None = None) -> dict[str, Any]:
    """Train one model with a progress bar; write history, metrics, config, weights and figures."""
    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    data, fp, _ = get_datasets(cfg.data)
    write_json(out / TRAIN_CONFIG, cfg.to_dict())
    trainer = Trainer(cfg, data)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    print(f"{cfg.model.arch}: {n_params:,} parameters on {trainer.device}; dataset {fp}; "
          f"{data.train.diffraction.shape[0]} train / {data.val.diffraction.shape[0]} val patches")
    bar = tqdm(total=cfg.train.max_epochs, unit="epoch", dynamic_ncols=True)
    for m in trainer.epochs():
        bar.update(1)
        bar.set_postfix(val=f"{m[names.VAL_LOSS]:.4g}", best=f"{m[names.BEST_VAL_LOSS]:.4g}",
                        lr=f"{m[names.LR]:.2g}", std=f"{m[names.OUTPUT_STD]:.3g}")
        if m[names.COLLAPSED] and trainer.state.collapse_epoch == m[names.EPOCH]:
            bar.write(f"epoch {m[names.EPOCH]}: collapse flagged "
                      f"({signal_text(m[names.COLLAPSE_KIND], cfg.collapse)})")
    bar.close()
    history = [{k: v for k, v in h.items()} for h in trainer.history]
    final = history[-1]
    save_history(history, out / names.HISTORY_FILE)
    eval_keys = [k for k in final
                 if k in names.EVAL_METRICS or k.startswith(names.BEST_CKPT_PREFIX)]
    metrics = {k: final[k] for k in eval_keys}
    metrics.update({k: final[k] for k in (names.BEST_VAL_LOSS, names.BEST_EPOCH, names.VAL_LOSS,
                                          names.COLLAPSED, names.COLLAPSE_KIND, names.DIVERGED)})
    metrics["dataset"] = fp
    metrics["parameters"] = n_params
    write_json(out / TRAIN_METRICS, metrics)
    torch.save(trainer.model.state_dict(), out / TRAIN_MODEL)
    if trainer.best_model_state is not None:
        torch.save(trainer.best_model_state, out / TRAIN_BEST_MODEL)
    if trainer.last_eval is not None:
        pred, gt = trainer.last_eval
        reconstruction_figure(pred, gt, out / TRAIN_RECONSTRUCTION_PNG,
                              title=f"{cfg.model.arch}, epoch {final[names.EPOCH]}",
                              scores={k: metrics.get(k) for k in (names.AMP_SSIM, names.PHASE_SSIM,
                                                                  names.AMP_SSIM_TWIN,
                                                                  names.AMP_SSIM_CONSTANT)})
    history_figure(history, out / TRAIN_HISTORY_PNG, title=f"{cfg.model.arch} loss")
    status = "diverged" if final[names.DIVERGED] else (
        f"collapsed ({final[names.COLLAPSE_KIND]})" if final[names.COLLAPSED] else "ok")
    print(f"{status}: best val_loss {final[names.BEST_VAL_LOSS]:.4g} at epoch "
          f"{final[names.BEST_EPOCH]}; final val_loss {final[names.VAL_LOSS]:.4g}")
    if names.AMP_SSIM in metrics:
        print(f"amp SSIM {metrics[names.AMP_SSIM]:.3f} (twin {metrics[names.AMP_SSIM_TWIN]:.3f}, "
              f"constant-output fingerprint {metrics[names.AMP_SSIM_CONSTANT]:.3f}), "
              f"phase SSIM {metrics[names.PHASE_SSIM]:.3f}")
    print(f"wrote {out}")
    return metrics


def history_figure(history: list[dict], path: str | Path, title: str = "") -> Path:
    """One run's train and val loss per epoch (log scale) and its learning rate."""
    ep = [h[names.EPOCH] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for key in (names.TRAIN_LOSS, names.VAL_LOSS):
        a.plot(ep, [h[key] for h in history], label=key)
    a.set_yscale("log")
    a.set_xlabel("epoch")
    a.legend()
    a.set_title(title or "loss")
    b.plot(ep, [h[names.LR] for h in history])
    b.set_xlabel("epoch")
    b.set_title("learning rate")
    return save_figure(fig, path)
