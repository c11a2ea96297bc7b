"""Reading and writing grid_lines splits in the upstream NPZ format (docs/physics.md §2).

Holds :func:`save_split` / :func:`load_split` and the directory-level :func:`save_datasets` /
:func:`load_datasets`, with the shape / dtype / finiteness checks both directions share. Files are
written byte-deterministically (fixed zip timestamps, fixed key order, atomic rename), so one data
config always gives the same bytes; ``_metadata`` is stored as a numpy unicode scalar, so files load
with ``allow_pickle=False``. Upstream files (``_metadata`` as a pickled object scalar, read as
pickle opcodes, never unpickled, no ``probe_simulated``, sparse
metadata) still load: ``P_sim`` is recomputed with the ``set_probe``
rule and stride / n_side are inferred from the metadata or the patch count.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np

from ptycho_model.probes import ProbeError, simulation_probe
from ptycho_model.splits import SPLIT_NAMES, DataError, Datasets, Split
from ptycho_model.stitching import n_side as count_side

METADATA_KEY = "_metadata"
# key -> (rank, dtype); written in this order.
ARRAY_KEYS: dict[str, tuple[int, type]] = {
    "diffraction": (4, np.float32),
    "Y_I": (4, np.float32),
    "Y_phi": (4, np.float32),
    "coords_nominal": (4, np.float32),
    "coords_true": (4, np.float32),
    "YY_full": (4, np.complex64),
    "probeGuess": (2, np.complex64),
    "probe_simulated": (2, np.complex64),
    "YY_ground_truth": (3, np.complex64),
}
OPTIONAL_KEYS = ("probe_simulated", "YY_ground_truth", "norm_Y_I", METADATA_KEY)
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _check_array(arr: np.ndarray, key: str, where: str) -> np.ndarray:
    """Rank, numeric kind and finiteness of one array; returns it cast to the format dtype."""
    rank, dtype = ARRAY_KEYS[key]
    if arr.ndim != rank:
        raise DataError(f"{where}: key {key!r} must have rank {rank}, got shape={arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{where}: key {key!r} must be numeric, got dtype={arr.dtype}")
    if np.iscomplexobj(arr) and not np.issubdtype(dtype, np.complexfloating):
        raise DataError(f"{where}: key {key!r} must be real, got dtype={arr.dtype}")
    if not np.isfinite(arr).all():
        raise DataError(
            f"{where}: key {key!r} holds {int(arr.size - np.isfinite(arr).sum())} NaN/Inf values"
        )
    return arr.astype(dtype, copy=False)


def _check_shapes(a: dict[str, np.ndarray], where: str) -> None:
    """Cross-key shape consistency of a gridsize-1 split."""
    n, N = a["diffraction"].shape[0], a["diffraction"].shape[1]
    expect = {
        "diffraction": (n, N, N, 1),
        "Y_I": (n, N, N, 1),
        "Y_phi": (n, N, N, 1),
        "coords_nominal": (n, 1, 2, 1),
        "coords_true": (n, 1, 2, 1),
        "probeGuess": (N, N),
        "probe_simulated": (N, N),
    }
    for key, shape in expect.items():
        if key in a and a[key].shape != shape:
            hint = " (only gridsize 1, C = 1, is supported)" if key == "diffraction" else ""
            raise DataError(
                f"{where}: key {key!r} has shape={a[key].shape}, expected {shape}{hint}"
            )
    full = a["YY_full"].shape
    if full[-1] != 1 or full[1] != full[2] or full[1] < N or full[0] < 1:
        raise DataError(
            f"{where}: key 'YY_full' has shape={full}, expected (nimgs, size, size, 1) "
            f"with size >= N={N}"
        )
    gt = a.get("YY_ground_truth")
    if gt is not None and (gt.shape[-1] != 1 or gt.shape[0] != gt.shape[1]):
        raise DataError(f"{where}: key 'YY_ground_truth' has shape={gt.shape}, expected (H, H, 1)")


def _split_arrays(split: Split, where: str) -> dict[str, Any]:
    """The split as ``key -> checked array`` in file order (plus ``norm_Y_I`` and metadata)."""
    out: dict[str, Any] = {}
    for key in ARRAY_KEYS:
        value = getattr(split, key)
        if value is None:
            continue
        out[key] = _check_array(np.asarray(value), key, where)
    _check_shapes(out, where)
    if split.norm_Y_I is not None:
        out["norm_Y_I"] = np.asarray(_check_norm(split.norm_Y_I, where), dtype=np.float64)
    out[METADATA_KEY] = np.asarray(json.dumps(split.metadata, sort_keys=True))  # 0-d <U
    return out


def _check_norm(value: Any, where: str) -> float:
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise DataError(f"{where}: key 'norm_Y_I' must be one real number, got {arr!r}")
    norm = float(arr.reshape(()))
    if not (math.isfinite(norm) and norm > 0):
        raise DataError(f"{where}: key 'norm_Y_I'={norm!r} must be finite and > 0")
    return norm


def save_split(split: Split, path: str | Path) -> Path:
    """Write one split as an upstream-format NPZ at exactly ``path`` (no suffix added).

    Uncompressed, keys in :data:`ARRAY_KEYS` order then ``norm_Y_I`` and ``_metadata``, zip
    timestamps fixed (same split -> same bytes), written to a temporary file and renamed.

    Raises:
        DataError: the split is malformed (wrong rank / shape, NaN / Inf); names the key.
    """
    path = Path(path)
    arrays = _split_arrays(split, f"split {split.name!r} -> {str(path)!r}")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, arr in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as fh:
                    # np.ascontiguousarray would turn the 0-d scalars into shape (1,)
                    np.lib.format.write_array(fh, np.asarray(arr, order="C"), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# What numpy's pickle of an object array references, and nothing else: the reconstruction
# function (under numpy 1's and numpy 2's module names), ndarray and dtype. The pickle is never
# run: it is read as opcodes (pickletools), every global must be one of these, and the string it
# holds is taken from the opcode that pushes it. A pickle naming anything else (os.system,
# builtins.exec, pathlib, ...) is refused.
_ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"),
                    ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                    ("numpy", "dtype")}
_STRINGS = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}


def _string_in_pickle(data: bytes) -> str:
    """The last string numpy's pickle of a one-element object array pushes: its element (the
    strings before it are the dtype's code and byte order). Reads opcodes only; runs nothing."""
    import pickletools

    pushed: list[str | None] = []  # strings pushed, in order (a memo fetch pushes its value)
    memo: dict[int, str | None] = {}
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            module, _, name = str(arg).partition(" ")
            if (module, name) not in _ALLOWED_GLOBALS:
                raise ValueError(f"refused global {module}.{name}")
        elif op.name == "STACK_GLOBAL":  # protocol 4+: module and name are the last two pushed
            if len(pushed) < 2 or tuple(pushed[-2:]) not in _ALLOWED_GLOBALS:
                raise ValueError(f"refused global {pushed[-2:]}")
            del pushed[-2:]
        elif op.name in ("INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "PERSID", "BINPERSID", "EXT1",
                         "EXT2", "EXT4"):
            raise ValueError(f"refused opcode {op.name}")
        elif op.name in _STRINGS:
            pushed.append(str(arg))
        elif op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[cast(int, arg)] = pushed[-1] if pushed else None  # pickletools: an int
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(cast(int, arg)))
    strings = [x for x in pushed if isinstance(x, str)]
    if not strings:
        raise ValueError("no string in it")
    return strings[-1]


def _read_pickled_metadata(path: Path, where: str) -> str:
    """Upstream's ``_metadata``: a pickled 0-d object array holding a JSON str, read from the
    ``.npy`` member as opcodes (:func:`_string_in_pickle`); nothing in it is ever run."""
    member = METADATA_KEY + ".npy"
    try:
        with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            if not dtype.hasobject or math.prod(shape) != 1:
                raise ValueError(f"expected one pickled object, got shape={shape} dtype={dtype}")
            return _string_in_pickle(fh.read())
    except Exception as exc:  # noqa: BLE001 - a refused global, a broken pickle or zip member
        raise DataError(
            f"{where}: pickled metadata refused ({type(exc).__name__}: {exc}); only a pickled "
            "string is read from a dataset file. Rewrite the file with _metadata as a plain "
            "string (np.savez(..., _metadata=np.asarray(json_text)))") from None


def _read_metadata(npz: Any, path: Path) -> dict[str, Any]:
    where = f"{str(path)!r}, key {METADATA_KEY!r}"
    try:
        raw = npz[METADATA_KEY]
    except ValueError:  # upstream stores a pickled 0-d object array: read, never run
        raw = _read_pickled_metadata(path, where)
    raw = raw.item() if isinstance(raw, np.ndarray) and raw.size == 1 else raw
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    if not isinstance(raw, str):
        raise DataError(f"{where}: expected a JSON string, got {type(raw).__name__}")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    return meta


def _infer_geometry(meta: dict[str, Any], a: dict[str, np.ndarray], path: Path) -> None:
    """Fill ``split``, ``size``, ``stride`` and ``n_side`` in ``additional_parameters``.

    Stride from, in order: ``stride``; ``outer_offset_{train|test}`` / 2 (val uses train's); the
    smallest stride consistent with the patch count. Whatever the source, it must reproduce
    ``n = nimgs * n_side**2``.
    """
    ap = meta.setdefault("additional_parameters", {})
    phys = meta.setdefault("physics_parameters", {})
    n, N = a["diffraction"].shape[0], a["diffraction"].shape[1]
    nimgs, size = a["YY_full"].shape[0], a["YY_full"].shape[1]
    phys.setdefault("N", N)
    phys.setdefault("gridsize", 1)
    name = ap.get("split") or (path.stem if path.stem in SPLIT_NAMES else "unknown")
    ap["split"] = name
    ap.setdefault("size", size)
    ap.setdefault("nimgs", nimgs)
    per = n // nimgs
    side = math.isqrt(per)
    if per * nimgs != n or side * side != per:
        raise DataError(
            f"{str(path)!r}: key 'diffraction' holds n={n} patches, not nimgs * n_side**2 for "
            f"nimgs={nimgs} (key 'YY_full'); raster-ordered gridsize-1 patches expected"
        )
    stride = ap.get("stride")
    offset_key = "outer_offset_test" if name == "test" else "outer_offset_train"
    if stride is None and isinstance(ap.get(offset_key), (int, float)):
        stride = int(ap[offset_key]) // 2
    if stride is None:
        stride = (size - N) // side + 1 if side > 1 else size - N + 1
    if not isinstance(stride, int) or stride < 1 or count_side(size, N, stride) != side:
        raise DataError(
            f"{str(path)!r}: key '_metadata' stride={stride!r} does not give the {side} x {side} "
            f"patches per image found in 'diffraction' (size={size}, N={N})"
        )
    ap["stride"] = stride
    ap["n_side"] = side


def load_split(path: str | Path) -> Split:
    """Read one split written by :func:`save_split` or by upstream ``save_split_npz``.

    Raises:
        DataError: not an NPZ, a required key missing, wrong rank / shape, non-numeric, NaN / Inf,
            or bad metadata; the message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{str(path)!r}: dataset file not found")
    try:
        npz = np.load(path, allow_pickle=False)
        files = set(npz.files)
    except Exception as exc:
        raise DataError(f"{str(path)!r}: not a readable NPZ file ({exc})") from exc
    with npz:
        required = [k for k in ARRAY_KEYS if k not in OPTIONAL_KEYS]
        for key in required:
            if key not in files:
                raise DataError(
                    f"{str(path)!r}: required key {key!r} missing; the file holds {sorted(files)}"
                )
        arrays: dict[str, np.ndarray] = {}
        for key in ARRAY_KEYS:
            if key not in files:
                continue
            where = f"{str(path)!r}"
            try:
                raw = npz[key]
            except Exception as exc:
                raise DataError(f"{where}: key {key!r} cannot be read ({exc})") from exc
            arrays[key] = _check_array(raw, key, where)
        norm = _check_norm(npz["norm_Y_I"], str(path)) if "norm_Y_I" in files else None
        meta = _read_metadata(npz, path) if METADATA_KEY in files else {}
    _check_shapes(arrays, repr(str(path)))
    _infer_geometry(meta, arrays, path)
    if "probe_simulated" not in arrays:  # upstream file: recompute P_sim (Quirk B, §8)
        try:
            arrays["probe_simulated"] = simulation_probe(arrays["probeGuess"])
        except ProbeError as exc:
            raise DataError(f"{str(path)!r}: key 'probeGuess' unusable ({exc})") from exc
        meta["additional_parameters"]["probe_simulated_recomputed"] = True
    return Split(
        diffraction=arrays["diffraction"],
        Y_I=arrays["Y_I"],
        Y_phi=arrays["Y_phi"],
        coords_nominal=arrays["coords_nominal"],
        coords_true=arrays["coords_true"],
        YY_full=arrays["YY_full"],
        probeGuess=arrays["probeGuess"],
        probe_simulated=arrays["probe_simulated"],
        metadata=meta,
        YY_ground_truth=arrays.get("YY_ground_truth"),
        norm_Y_I=norm,
    )


def save_datasets(ds: Datasets, out_dir: str | Path) -> list[Path]:
    """Write ``train.npz``, ``test.npz`` and (unless ``val is test``) ``val.npz``; -> the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [save_split(ds.train, out / "train.npz"), save_split(ds.test, out / "test.npz")]
    if not ds.val_is_test:
        paths.append(save_split(ds.val, out / "val.npz"))
    return paths


def load_datasets(data_dir: str | Path, val_is_test: bool = False) -> Datasets:
    """Read a directory from :func:`save_datasets` (or upstream's ``train.npz`` / ``test.npz``).

    With ``val_is_test`` the test split doubles as validation and ``val.npz`` is not read.
    """
    d = Path(data_dir)
    train = load_split(d / "train.npz")
    test = load_split(d / "test.npz")
    if val_is_test:
        return Datasets(train=train, val=test, test=test)
    if not (d / "val.npz").is_file():
        raise DataError(
            f"{str(d / 'val.npz')!r}: no validation split; simulate one (data/n_val >= 1) or "
            "set data/val_is_test=true to validate on the test split"
        )
    return Datasets(train=train, val=load_split(d / "val.npz"), test=test)
