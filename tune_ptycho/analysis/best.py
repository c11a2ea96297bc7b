"""The best trial and its weights: ``tune-ptycho best``, ``--export``, the reconstruction's inputs.

Holds the best trial (lowest final objective, ties by best_val_loss: ``experiment.rank_key``),
the choice of its checkpoint (the kept one with the lowest val_loss), loading that model, writing
it as a plain state dict, and the test split to show it on. torch is imported where used.
Leaves out reading the experiment (``load``) and drawing the reconstruction (``plots``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ptycho_model import names
from ptycho_model.config import RunConfig

from ..experiment import DATASET_FILE
from .load import Experiment, NoResults, TrialRecord, load_experiment, num

STATE_FILE = "state.pt"  # trainables.ptycho.STATE_FILE (not imported: that module imports ray)


def _checkpoint_val_loss(ckpt: Path) -> float:
    import torch

    try:
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
        hist = state.get("history") or []
        return num(hist[-1].get(names.VAL_LOSS), math.inf) if hist else math.inf
    except Exception:  # noqa: BLE001
        return math.inf


def best_checkpoint_dir(t: TrialRecord) -> Path | None:
    """The trial's kept checkpoint whose reported val_loss is lowest (the pre-collapse weights)."""
    if t.dir is None:
        return None
    best: tuple[float, float, Path] | None = None
    for r in t.rows:
        name = r.get("checkpoint_dir_name")
        if not name or not (t.dir / name / STATE_FILE).exists():
            continue  # not checkpointed, or deleted by num_to_keep
        v = num(r.get(names.VAL_LOSS), math.inf)
        v = v if math.isfinite(v) else math.inf
        key = (v, num(r.get(names.EPOCH), 0.0), t.dir / name)
        if best is None or key[:2] < best[:2]:
            best = key
    if best is not None:
        return best[2]
    # result.json does not name them (an old or truncated file): ask the checkpoints themselves
    ckpts = sorted(p.parent for p in t.dir.glob(f"checkpoint_*/{STATE_FILE}"))
    if not ckpts:
        return None
    return min(ckpts, key=lambda c: (_checkpoint_val_loss(c), c.name))


def _best_record(exp: Experiment) -> TrialRecord:
    ranked = exp.ranked()
    if not ranked:
        raise NoResults(f"no trial of {str(exp.path)!r} reported a result, so there is no best trial")
    return ranked[0]


def best_trial(path: str | Path) -> tuple[str, Path, Path | None, dict[str, Any]]:
    """(trial_id, trial_dir, best_checkpoint_dir, final metrics) of the best trial: the lowest
    final objective, ties broken by best_val_loss (:func:`experiment.rank_key`). The checkpoint
    is the trial's kept one with the lowest val_loss (None if none is left on disk)."""
    exp = load_experiment(path, with_study=False)
    t = _best_record(exp)
    return t.trial_id, t.dir, best_checkpoint_dir(t), dict(t.last)


def _load_state(ckpt: Path) -> dict[str, Any]:
    import torch

    return torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)


def _model_config(t: TrialRecord, state: dict[str, Any], fallback: RunConfig) -> RunConfig:
    if t.cfg is not None:
        return t.cfg
    try:
        return RunConfig.from_dict(state["config"])
    except Exception:  # noqa: BLE001
        return fallback


def load_best_model(path: str | Path):
    """(model in eval mode on the CPU, its RunConfig, trial record, checkpoint dir)."""
    from ptycho_model.generators import build_generator

    exp = load_experiment(path, with_study=False)
    t = _best_record(exp)
    ckpt = best_checkpoint_dir(t)
    if ckpt is None:
        raise NoResults(f"best trial {t.trial_id} of {str(exp.path)!r} has no checkpoint left")
    state = _load_state(ckpt)
    cfg = _model_config(t, state, exp.spec.run)
    model = build_generator(cfg.model, N=cfg.data.N)
    model.load_state_dict(state["model"], strict=True)
    model.eval()
    return model, cfg, t, ckpt


def export_best(path: str | Path, file: str | Path) -> Path:
    """Write the best trial's best-checkpoint weights as a plain state dict (``torch.save``) and,
    beside it, ``<file>.json``: the trial's full RunConfig dict. Rebuild with::

        cfg = RunConfig.from_dict(json.load(open(file + ".json")))
        model = build_generator(cfg.model, N=cfg.data.N)
        model.load_state_dict(torch.load(file, weights_only=True))
    """
    import torch

    model, cfg, t, ckpt = load_best_model(path)  # proves the weights load strictly
    state = _load_state(ckpt)
    out = Path(file).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state["model"], out)
    Path(str(out) + ".json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str) + "\n")
    return out


def held_out_split(exp: Experiment, cfg: RunConfig):
    """(test split, note or None): the experiment's own dataset (its recorded cache entry, if it is
    still there and intact), else the cache / a fresh simulation of ``cfg.data`` — with a note
    when that differs from what the trials saw (the simulation code changed since)."""
    from ptycho_model.data import load_datasets

    from ..datasets import get_datasets, verify_entry

    try:
        manifest = json.loads((exp.path / DATASET_FILE).read_text())
    except (OSError, ValueError):
        manifest = {}
    recorded = manifest.get("fingerprint")
    entry = Path(str(manifest.get("cache_entry") or "")) if manifest.get("cache_entry") else None
    if entry is not None and entry.is_dir() and verify_entry(entry) is None:
        try:
            return load_datasets(entry, val_is_test=cfg.data.val_is_test).test, None
        except Exception:  # noqa: BLE001 - an entry the current loader cannot read
            pass
    logs: list[str] = []
    data, fp, _ = get_datasets(cfg.data, exp.spec.storage.dataset_cache or None, log=logs.append)
    note = None
    if recorded and fp != recorded:
        note = (f"best_reconstruction.png: the experiment's dataset {recorded} is gone and today's "
                f"code simulates {fp} for the same data config: its scores may differ from those "
                "reported during training")
    return data.test, note
