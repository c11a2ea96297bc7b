"""The best trial and its weights: ``tune-ptycho best``, ``--export``, the reconstruction's inputs.

Holds the best trial (lowest final objective, ties by best_val_loss: ``experiment.rank_key``),
the choice of its checkpoint (the newest kept one: every checkpoint stores the trial's best
weights so far as ``best_model``), loading those weights, writing them as a plain state dict,
and the test split to show it on. torch is imported where used.
Leaves out reading the experiment (``load``) and drawing the reconstruction (``plots``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ptycho_model import names
from ptycho_model.config import RunConfig
from ptycho_model.errors import InputError

from ..storage.layout import BEST_RECONSTRUCTION_PNG, CHECKPOINT_PREFIX, DATASET_FILE
from .load import Experiment, NoResults, TrialRecord, load_experiment


def best_checkpoint_dir(t: TrialRecord) -> Path | None:
    """The trial's newest kept checkpoint. Its state's ``best_model`` holds the weights of the
    lowest val_loss epoch up to it (the pre-collapse weights), also when checkpoints are written
    only every k-th epoch (``storage/checkpoint_every``); Ray always keeps the newest."""
    if t.dir is None:
        return None
    ckpts = sorted(p.parent  # zero-padded: the newest sorts last
                   for p in t.dir.glob(f"{CHECKPOINT_PREFIX}*/{names.STATE_FILE}"))
    return ckpts[-1] if ckpts else None


def shown_path(p: Path | None, root: Path, where: str) -> str | None:
    """``p`` (inside the experiment at ``root``) as the user knows it: under ``where``, a remote
    experiment's URI when ``root`` is its temporary local copy."""
    return None if p is None else f"{where.rstrip('/')}/{p.relative_to(root).as_posix()}"


def best_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The best-val_loss weights in a checkpoint's state (its own weights if none were kept)."""
    return state.get("best_model") or state["model"]


def best_epoch(state: dict[str, Any]) -> int | None:
    """The epoch of :func:`best_weights` (None when the state kept no best weights)."""
    if not state.get("best_model"):
        return int(state["epoch"]) if "epoch" in state else None
    return int((state.get("collapse") or {}).get("best_epoch", 0)) or None


def _best_record(exp: Experiment) -> TrialRecord:
    ranked = exp.ranked()
    if not ranked:
        raise NoResults(f"no trial of {str(exp.path)!r} reported a result, so there is no "
                        "best trial")
    return ranked[0]


def best_trial(path: str | Path) -> tuple[str, Path, Path | None, dict[str, Any]]:
    """(trial_id, trial_dir, best_checkpoint_dir, final metrics) of the best trial: the lowest
    final objective, ties broken by best_val_loss (:func:`experiment.rank_key`). The checkpoint
    is the one holding its best weights (None if none is left on disk)."""
    exp = load_experiment(path, with_study=False)
    t = _best_record(exp)
    return t.trial_id, t.dir, best_checkpoint_dir(t), dict(t.last)


class BadCheckpoint(InputError):
    """A checkpoint or weights file that cannot be read as one (exit 2, naming the file)."""


def load_torch_file(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, the one loader of checkpoints and
    weights (``best``, ``best --export``, ``diagnose``): any failure, a file that is not one or a
    pickle that ``weights_only`` refuses, is a :class:`BadCheckpoint` naming the file."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a file that is not one
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise BadCheckpoint(f"{str(path)!r} is not a {what} torch can read "
                            f"({type(e).__name__}: {first})") from None


def _load_state(ckpt: Path) -> dict[str, Any]:
    path = ckpt / names.STATE_FILE
    state = load_torch_file(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise BadCheckpoint(f"{str(path)!r} is not a trainer checkpoint (no model weights in it)")
    return state


def _model_config(t: TrialRecord, state: dict[str, Any], fallback: RunConfig) -> RunConfig:
    if t.cfg is not None:
        return t.cfg
    try:
        return RunConfig.from_dict(state["config"])
    except Exception:  # noqa: BLE001
        return fallback


def load_best_model(path: str | Path, trial: TrialRecord | None = None):
    """(model in eval mode on the CPU holding the best trial's best weights — or ``trial``'s, a
    trial of the experiment at ``path`` — its RunConfig, the trial record, the checkpoint dir
    they came from, their epoch)."""
    from ptycho_model.generators import build_generator

    exp = load_experiment(path, with_study=False)
    t = trial or _best_record(exp)
    ckpt = best_checkpoint_dir(t)
    if ckpt is None:
        raise NoResults(f"best trial {t.trial_id} of {str(exp.path)!r} has no checkpoint left")
    state = _load_state(ckpt)
    cfg = _model_config(t, state, exp.spec.run)
    model = build_generator(cfg.model, N=cfg.data.N)
    try:
        model.load_state_dict(best_weights(state), strict=True)
    except Exception as e:  # noqa: BLE001 - weights that do not fit, or not weights at all
        first = (str(e).strip().splitlines() or [""])[-1].strip()[:160]
        raise BadCheckpoint(f"{str(ckpt / names.STATE_FILE)!r}: its weights do not fit the model "
                            f"of its config ({type(e).__name__}: {first})") from None
    model.eval()
    return model, cfg, t, ckpt, best_epoch(state)


def export_best(path: str | Path, file: str | Path, trial: TrialRecord | None = None) -> Path:
    """Write the best trial's best-checkpoint weights as a plain state dict (``torch.save``) and,
    beside it, ``<file>.json``: the trial's full RunConfig dict (``ptycho_model.exported.
    save_exported``). Read back, without this package, with::

        from ptycho_model import load_exported, reconstruct
        model, cfg = load_exported(file)  # eval mode, weights loaded strictly
        obj = reconstruct(model, diffraction)  # NPZ layout (B, N, N, 1) -> (B, N, N) complex
    """
    from ptycho_model.exported import save_exported

    model, cfg, t, ckpt, _ = load_best_model(path, trial)  # proves the weights load strictly
    return save_exported(best_weights(_load_state(ckpt)), cfg, file)


def held_out_split(exp: Experiment, cfg: RunConfig):
    """(test split, note or None): the experiment's own dataset (its recorded cache entry, if it is
    still there and intact), else the cache / a fresh simulation of ``cfg.data`` — with a note
    when that differs from what the trials saw (the simulation code changed since)."""
    from ptycho_model.npz_io import load_datasets

    from ..storage.dataset_cache import get_datasets, own_cache, own_entry, verify_entry

    try:
        manifest = json.loads((exp.path / DATASET_FILE).read_text())
    except (OSError, ValueError):
        manifest = {}
    if not isinstance(manifest, dict):
        manifest = {}
    recorded = manifest.get("fingerprint")
    named = str(manifest.get("cache_entry") or "")
    entry = own_entry(named)  # only inside this user's own cache: a shared experiment is data
    if entry is not None and entry.is_dir() and verify_entry(entry) is None:
        try:
            return load_datasets(entry, val_is_test=cfg.data.val_is_test).test, None
        except Exception:  # noqa: BLE001 - an entry the current loader cannot read
            pass
    logs: list[str] = []
    data, fp, _ = get_datasets(cfg.data, own_cache(exp.spec.storage.dataset_cache) or None,
                               log=logs.append)
    notes = []
    if named and entry is None:
        notes.append(f"{BEST_RECONSTRUCTION_PNG}: {DATASET_FILE}'s cache_entry={named!r} is "
                     "outside this user's dataset cache and was not read; the data were rebuilt "
                     "from the spec")
    if recorded and fp != recorded:
        notes.append(f"{BEST_RECONSTRUCTION_PNG}: the experiment's dataset {recorded} is gone and "
                     f"today's code simulates {fp} for the same data config: its scores may "
                     "differ from those reported during training")
    return data.test, "; ".join(notes) or None
