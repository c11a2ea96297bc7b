"""The on-disk dataset cache: simulate once per data config, reuse everywhere after.

``<cache>/<fingerprint>/`` holds ``train.npz``, ``val.npz`` (unless val = test), ``test.npz`` and
``manifest.json`` with each file's sha256. A file whose checksum disagrees with the manifest
(truncated, corrupted) is never used: the entry is rebuilt and the event reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ptycho_model.config import DataConfig
from ptycho_model.data import Datasets, data_fingerprint, simulate
from ptycho_model.npz_io import load_datasets, save_datasets

MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    env = os.environ.get("TUNE_PTYCHO_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tune-ptycho" / "datasets"


def _same_or_inside(path: Path, root: Path) -> tuple[bool, bool]:
    """(same, inside): ``path`` vs ``root``, both with symlinks resolved."""
    try:
        p, r = path.expanduser().resolve(), root.expanduser().resolve()
    except (OSError, RuntimeError):
        return False, False
    return p == r, p.is_relative_to(r)


def own_entry(recorded: str | Path) -> Path | None:
    """A cache entry recorded in an experiment (``dataset.json``'s ``cache_entry``; a relative one
    resolves against the working directory), resolved, when it lies inside this user's own cache
    (:func:`default_cache_dir`); None otherwise. A shared experiment may name any directory: its
    files are not this user's, so only their own cache is read."""
    if not str(recorded):
        return None
    root = default_cache_dir()
    same, inside = _same_or_inside(Path(recorded), root)
    return Path(recorded).expanduser().resolve() if inside and not same else None


def own_cache(recorded: str) -> str:
    """A ``storage/dataset_cache`` recorded in an experiment's spec, kept only when it is this
    user's own cache; else ``""`` (the user's default cache)."""
    if recorded and _same_or_inside(Path(recorded), default_cache_dir())[0]:
        return recorded
    return ""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CacheError(RuntimeError):
    pass


def verify_entry(entry: Path) -> str | None:
    """None when every file matches the manifest; else a message naming the bad file."""
    man = entry / MANIFEST
    if not man.exists():
        return f"{man} is missing"
    try:
        files = json.loads(man.read_text())["files"]
    except (ValueError, KeyError) as e:
        return f"{man} is unreadable ({e})"
    for name, digest in files.items():
        f = entry / name
        if not f.exists():
            return f"{f} is missing"
        if sha256_file(f) != digest:
            return f"{f} does not match its checksum in {MANIFEST} (corrupted or truncated)"
    return None


def get_datasets(cfg: DataConfig, cache_dir: str | Path | None = None,
                 log: Callable[[str], None] = print) -> tuple[Datasets, str, Path]:
    """(datasets, fingerprint, cache entry): load from the cache, or simulate and store."""
    fp = data_fingerprint(cfg)
    entry = Path(cache_dir or default_cache_dir()) / fp
    if entry.exists():
        problem = verify_entry(entry)
        if problem is None:
            return load_datasets(entry, val_is_test=cfg.val_is_test), fp, entry
        log(f"dataset cache: {problem}; rebuilding {entry}")
        shutil.rmtree(entry, ignore_errors=True)
    log(f"simulating dataset {fp} ...")
    ds = simulate(cfg)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{fp}-", dir=entry.parent))
    try:
        save_datasets(ds, tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.glob("*.npz"))}
        (tmp / MANIFEST).write_text(json.dumps(
            {"fingerprint": fp, "data_config": cfg.__dict__, "files": files}, indent=2,
            default=str))
        try:
            os.replace(tmp, entry)  # atomic: a concurrent writer loses the race harmlessly
        except OSError:
            if verify_entry(entry) is not None:
                raise CacheError(f"could not store dataset cache entry {entry}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # What was stored, read back: a run must see the same bits whether the cache was cold or warm
    # (the NPZ files hold float32; the simulation's own arrays differ in the last digits, and past
    # the learning-rate cliff that alone changes a trajectory).
    return load_datasets(entry, val_is_test=cfg.val_is_test), fp, entry


def slim_for_trials(ds: Datasets) -> Datasets:
    """What trials need, for the object store: labels (Y_I, Y_phi) of train and val dropped —
    the PINN loss never reads them; the test split is kept whole for the metrics."""
    def slim(s):
        return replace(s, Y_I=s.Y_I[:0], Y_phi=s.Y_phi[:0])

    test = ds.test
    val = test if ds.val_is_test else slim(ds.val)
    return Datasets(train=slim(ds.train), val=val, test=test)
