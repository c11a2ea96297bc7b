"""``tune-ptycho diagnose PATH``: per-layer statistics of a saved model; where a trial went flat.

PATH is a trial directory, a checkpoint directory, a ``state.pt``, a ``model.pt`` (a plain state
dict, as ``tune-ptycho train`` and ``best --export`` write, with its config in ``config.json`` or
``<file>.json`` beside it) or an experiment (then: its collapsed trials and its best one). The
model runs the fixed val subset of its own config's data once, with forward hooks on every block
(:func:`ptycho_model.diagnostics.model_layers`); the result goes to ``diagnose.json`` and
``diagnose.png`` in ``--out`` (default: the directory PATH names, or the one holding the file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptycho_model import names
from ptycho_model.collapse import signal_text
from ptycho_model.config import RunConfig
from ptycho_model.diagnostics import first_flat
from ptycho_model.errors import InputError
from ptycho_model.train import json_safe

from .storage.layout import (
    CHECKPOINT_PREFIX,
    DIAGNOSE_DIR,
    DIAGNOSE_JSON,
    DIAGNOSE_PNG,
    SPEC_FILE,
    TRAIN_CONFIG,
    TRAIN_MODEL,
)


class NotAModel(InputError):
    """PATH holds no model this command can read, or weights that do not fit their config."""


@dataclass
class Subject:
    """One model to diagnose: its config, its weights (final, and best when a checkpoint kept
    them), the per-epoch history with block tables, and where it came from."""

    source: Path
    cfg: RunConfig
    weights: dict[str, Any]
    best: dict[str, Any] | None = None
    best_epoch: int | None = None
    epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _torch_load(path: Path) -> Any:
    from .analysis.best import BadCheckpoint, load_torch_file

    try:
        return load_torch_file(path)
    except BadCheckpoint as e:
        raise NotAModel(str(e)) from None


def _from_state(path: Path) -> Subject:
    sd = _torch_load(path)
    if not isinstance(sd, dict) or "model" not in sd or "config" not in sd:
        raise NotAModel(f"{str(path)!r} is not a trainer checkpoint (no model and config in it)")
    try:
        best_epoch = int((sd.get("collapse") or {}).get("best_epoch") or 0) or None
        return Subject(source=path, cfg=RunConfig.from_dict(sd["config"]), weights=sd["model"],
                       best=sd.get("best_model"), best_epoch=best_epoch, epoch=int(sd["epoch"]),
                       history=[h for h in sd.get("history") or []
                                if isinstance(h, dict) and h.get(names.LAYERS)])
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - a checkpoint whose fields are not what we wrote
        raise NotAModel(f"{str(path)!r} is not a trainer checkpoint we can read "
                        f"({type(e).__name__}: {str(e)[:120]})") from None


def _from_weights(path: Path) -> Subject:
    import torch

    from ptycho_model.exported import config_path

    sd = _torch_load(path)
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor)
                                                     for v in sd.values()):
        raise NotAModel(f"{str(path)!r} is not a state dict of weights")
    for cfg_file in (config_path(path), path.parent / TRAIN_CONFIG):
        if cfg_file.is_file():
            break
    else:
        raise NotAModel(f"{str(path)!r}: no config beside it ({path.name}.json or {TRAIN_CONFIG}) "
                        "to build its model from")
    try:
        cfg = RunConfig.from_dict(json.loads(cfg_file.read_text()))
        hist_file = path.parent / names.HISTORY_FILE
        history = json.loads(hist_file.read_text()) if hist_file.is_file() else []
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - a config or history that is not JSON we wrote
        raise NotAModel(f"{str(cfg_file)!r} or its {names.HISTORY_FILE} cannot be read "
                        f"({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(history, list):
        history = []
    return Subject(source=path, cfg=cfg, weights=sd,
                   history=[h for h in history if isinstance(h, dict) and h.get(names.LAYERS)])


def subject(path: Path) -> Subject:
    """The model PATH names (a trial or checkpoint directory, ``state.pt`` or ``model.pt``)."""
    if path.is_file():
        return _from_state(path) if path.name == names.STATE_FILE else _from_weights(path)
    if (path / names.STATE_FILE).is_file():
        return _from_state(path / names.STATE_FILE)
    found = sorted(path.glob(f"{CHECKPOINT_PREFIX}*/{names.STATE_FILE}"))  # newest last
    if found:
        return _from_state(found[-1])
    if (path / TRAIN_MODEL).is_file():
        return _from_weights(path / TRAIN_MODEL)
    raise NotAModel(f"{str(path)!r} holds no checkpoint (no {names.STATE_FILE}, "
                    f"{CHECKPOINT_PREFIX}*/ or {TRAIN_MODEL})")


def layers_of(s: Subject, weights: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-block table of ``weights`` (built from ``s.cfg``) on the fixed val subset."""
    from ptycho_model.diagnostics import model_layers
    from ptycho_model.evaluate import to_input
    from ptycho_model.generators import build_generator

    from .storage.dataset_cache import get_datasets

    model = build_generator(s.cfg.model, N=s.cfg.data.N)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise NotAModel(f"{str(s.source)!r}: its weights do not fit the model of its config "
                        f"({s.cfg.model.arch}, width {s.cfg.model.width}, blocks "
                        f"{s.cfg.model.blocks}, modes {s.cfg.model.modes}): {first[:160]}"
                        ) from None
    data, _, _ = get_datasets(s.cfg.data, log=lambda _m: None)
    x = to_input(data.val.diffraction[: s.cfg.train.val_subset])
    return model_layers(model, x, s.cfg.collapse.flat_std)


def diagnose_subject(s: Subject, out: Path, title: str = "") -> dict[str, Any]:
    """Write ``diagnose.json`` and ``diagnose.png`` for one model into ``out``; return the JSON."""
    flat_std = s.cfg.collapse.flat_std
    doc: dict[str, Any] = {"source": str(s.source), "arch": s.cfg.model.arch, "epoch": s.epoch,
                           "flat_std": flat_std, "layers": layers_of(s, s.weights)}
    if s.best is not None and s.best_epoch != s.epoch:
        doc["best_epoch"] = s.best_epoch
        doc["best_layers"] = layers_of(s, s.best)
    doc["flat_layers"] = [lay["name"] for lay in doc["layers"] if lay["rel_std"] < flat_std]
    flagged = next((h for h in s.history if h.get(names.COLLAPSED)), None)
    if flagged is not None:  # which signal of the collapse rule fired, and when
        kind = str(flagged.get(names.COLLAPSE_KIND))
        doc["collapse"] = {"kind": kind, "epoch": flagged.get(names.EPOCH),
                           "signal": signal_text(kind, s.cfg.collapse)}
    if s.history:
        flat = first_flat(s.history, flat_std)
        doc["first_flat"] = {"block": flat[0], "epoch": flat[1]} if flat else None
        doc["epochs"] = [{names.EPOCH: h[names.EPOCH], names.VAL_LOSS: h.get(names.VAL_LOSS),
                          names.LAYERS: h[names.LAYERS]} for h in s.history]
    out.mkdir(parents=True, exist_ok=True)
    (out / DIAGNOSE_JSON).write_text(json.dumps(json_safe(doc), indent=1) + "\n")
    diagnose_figure(doc, s.history, out / DIAGNOSE_PNG, title or str(s.source))
    return doc


def diagnose_figure(doc: dict[str, Any], history: list[dict[str, Any]], path: Path,
                    title: str) -> Path:
    """Per-layer relative output spread (final weights, and the best weights when kept), and the
    block x epoch map when the history has it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .analysis.layers import block_map

    fig, axes = plt.subplots(1, 2 if history else 1, figsize=(12 if history else 6.5, 4),
                             squeeze=False)
    ax = axes[0, 0]
    layer_names = [lay["name"] for lay in doc["layers"]]
    floor = 1e-9

    def curve(layers: list[dict[str, Any]], label: str, color: str) -> None:
        ax.plot(range(len(layers)), [max(lay["rel_std"], floor) for lay in layers], "o-",
                color=color, label=label)

    if "best_layers" in doc:
        curve(doc["best_layers"], f"best weights (epoch {doc['best_epoch']})", "tab:green")
    curve(doc["layers"], f"final weights (epoch {doc['epoch']})" if doc.get("epoch")
          else "these weights", "tab:red")
    ax.axhline(doc["flat_std"], color="grey", ls="--", lw=1, label="flat threshold")
    ax.set_yscale("log")
    ax.set_xticks(range(len(layer_names)), layer_names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("relative output spread on the val subset")
    ax.set_title("per-layer output spread (forward order)", fontsize=9)
    ax.legend(fontsize=8)
    if history:
        im = block_map(axes[0, 1], history, "each block per epoch", doc["flat_std"])
        fig.colorbar(im, ax=axes[0, 1], label="log10 relative spread")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def diagnose(path: str | Path, out: str | Path | None = None) -> list[tuple[Path, dict]]:
    """Diagnose PATH (see the module doc); returns (output dir, diagnose.json) per model."""
    p = Path(path).expanduser()
    if not p.exists():
        raise NotAModel(f"{str(path)!r}: no such file or directory")
    if p.is_dir() and (p / SPEC_FILE).is_file():
        return _diagnose_experiment(p, Path(out) if out else p / DIAGNOSE_DIR)
    s = subject(p)
    target = Path(out) if out else (p if p.is_dir() else p.parent)
    return [(target, diagnose_subject(s, target))]


def _diagnose_experiment(root: Path, out: Path) -> list[tuple[Path, dict]]:
    from .analysis.layers import COLLAPSED
    from .analysis.load import load_experiment

    exp = load_experiment(root, with_study=False)
    ranked = exp.ranked()
    chosen = [t for t in exp.trials if t.outcome in COLLAPSED and t.dir is not None]
    if ranked and ranked[0] not in chosen and ranked[0].dir is not None:
        chosen.append(ranked[0])
    if not chosen:
        raise NotAModel(f"{str(root)!r}: no trial with a checkpoint to diagnose")
    done = []
    for t in chosen:
        try:
            s = subject(t.dir)
        except NotAModel:
            continue  # a trial whose checkpoints are gone
        label = "best trial" if ranked and t is ranked[0] else t.outcome
        where = out / t.dir.name  # as the trial's own directory is named
        done.append((where, diagnose_subject(s, where, f"{t.trial_id} ({label})")))
    return done


def summary_line(where: Path, doc: dict[str, Any]) -> str:
    """One line per diagnosed model, as printed."""
    last = doc["layers"][-1]
    flat = doc.get("first_flat")
    head = (f"first flat block: {flat['block']} at epoch {flat['epoch']}" if flat
            else "no block went flat" if "first_flat" in doc else
            f"flat now: {', '.join(doc['flat_layers']) or 'none'}")
    col = doc.get("collapse")
    if col:
        head = f"flagged at epoch {col['epoch']} ({col['signal']}); {head}"
    return (f"{where}: {head}; last layer ({last['name']}) relative spread "
            f"{last['rel_std']:.3g}; wrote {DIAGNOSE_JSON}, {DIAGNOSE_PNG}")
