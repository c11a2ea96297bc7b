"""A static check of every pickle that ``Tuner.restore`` would load, before ``resume`` lets it.

Unpickling runs code: a pickle names callables (its *globals*) and the arguments to call them
with. Ray keeps pickles in an experiment (``tuner.pkl``, ``searcher-state-*.pkl``,
``search_gen_state-*.json``, ``callback-states-*.pkl``, a trial's ``error.pkl``) and cloudpickles,
hex-encoded, inside ``experiment_state-*.json``. Before ``resume`` hands an experiment to Ray,
:func:`check_trusted` reads each of them opcode by opcode (:func:`pickletools.genops`: nothing is
imported, called or built) and lists the globals it would look up. Every one must be a name the
service's own experiments reference (:data:`ALLOWED`, taken from real experiments of every
scheduler and tracker; ``tests/test_trust.py`` checks them). Anything else (``os.system``, a
function pickled by value, a name that is computed rather than written down) refuses the resume,
unless the user says ``--trust``.

Exact names, not module prefixes: a module's namespace holds what it imported (a prefix such as
``tune_ptycho.*`` would admit ``tune_ptycho.storage.fs.delete`` or a dotted ``os.system`` reached
through any module that imported ``os``), and a class or function of the service called with an
attacker's arguments is code run all the same.
"""

from __future__ import annotations

import binascii
import fnmatch
import json
import pickletools
import sys
from collections.abc import Iterator

import pyarrow.fs as pafs

from ptycho_model.errors import InputError

from .fs import _fs, is_remote, read_bytes
from .layout import ERROR_PICKLE, PICKLE_FILES, STATE_FILES

__all__ = ["ALLOWED", "UntrustedPickle", "check_trusted", "experiment_pickles", "scan_pickle"]


class UntrustedPickle(InputError):
    """A pickle in the experiment references a global the service never pickles."""


# The globals the service's own pickles reference (Ray 2.60, Optuna, numpy, cloudpickle's by-
# reference helpers), from tiny studies with each scheduler (asha, hyperband, none), each tracker
# (tensorboard, mlflow, wandb), a study in the experiment, a journal file and PostgreSQL.
_ALLOWED_BY_MODULE: dict[str, str] = {
    "builtins": "bytearray complex frozenset object property range set slice type",
    "collections": "OrderedDict defaultdict deque",
    "copyreg": "_reconstructor",
    "datetime": "date datetime time timedelta timezone",
    "uuid": "UUID",
    "numpy": "dtype ndarray",
    "numpy._core.multiarray": "_reconstruct scalar",
    "numpy._core.numeric": "_frombuffer",
    "numpy.random._mt19937": "MT19937",
    "numpy.random._pcg64": "PCG64",
    "numpy.random._pickle": "__bit_generator_ctor __generator_ctor __randomstate_ctor",
    "optuna.distributions": "CategoricalDistribution FloatDistribution IntDistribution",
    "optuna.pruners._nop": "NopPruner",
    "optuna.samplers._lazy_random_state": "LazyRandomState",
    "optuna.samplers._random": "RandomSampler",
    "optuna.samplers._tpe.parzen_estimator": "_ParzenEstimator _ParzenEstimatorParameters",
    "optuna.samplers._tpe.sampler": "TPESampler default_weights",
    "optuna.search_space.group_decomposed": "_GroupDecomposedSearchSpace _SearchSpaceGroup",
    "optuna.search_space.intersection": "IntersectionSearchSpace",
    "optuna.storages._cached_storage": "_CachedStorage _StudyInfo",
    "optuna.storages._rdb.storage": "RDBStorage",
    "optuna.storages.journal._file":
        "JournalFileBackend JournalFileOpenLock JournalFileSymlinkLock",
    "optuna.storages.journal._storage": "JournalStorage",
    "optuna.study._study_direction": "StudyDirection",
    "optuna.study.study": "Study",
    "optuna.trial._frozen": "FrozenTrial",
    "optuna.trial._state": "TrialState",
    "optuna.trial._trial": "Trial",
    "pyarrow._fs": "FileSystem._from_uri",
    "pyarrow._s3fs": "S3FileSystem._reconstruct",
    "ray.air._internal.mlflow": "_MLflowLoggerUtil",
    "ray.air._internal.usage": "AirEntrypoint",
    "ray.air.integrations.mlflow": "MLflowLoggerCallback",
    # cloudpickle's helpers for what it pickles by value; _builtin_type, subimport and the code
    # objects they build are checked call by call (_reduce)
    "ray.cloudpickle.cloudpickle": "_builtin_type _class_setstate _function_setstate _make_cell "
                                   "_make_empty_cell _make_function _make_skeleton_class subimport",
    "ray.exceptions": "RayTaskError",
    "ray.train": "SyncConfig",
    "ray.train._internal.checkpoint_manager": "_CheckpointManager",
    "ray.train._internal.session": "_TrainingResult",
    "ray.train._internal.storage": "StorageContext _FilesystemSyncer _upload_to_fs_path",
    "ray.tune": "Checkpoint CheckpointConfig FailureConfig RunConfig",
    "ray.tune.execution.placement_groups": "PlacementGroupFactory",
    "ray.tune.experiment.experiment": "Experiment",
    "ray.tune.logger.csv": "CSVLoggerCallback",
    "ray.tune.logger.json": "JsonLoggerCallback",
    "ray.tune.logger.tensorboardx": "TBXLoggerCallback",
    "ray.tune.schedulers.async_hyperband": "_Bracket",
    "ray.tune.tune_config": "TuneConfig",
    "search_spaces.ranges": "DeclaredSpace Range",
    "search_spaces.sampler": "collapse_constraint",
    "tensorboardX.writer": "SummaryWriter",
    "tune_ptycho.run.disk_guard": "StorageGuard",
    "tune_ptycho.run.progress": "ProgressCallback",
    "tune_ptycho.run.ray_schedulers": "NoEarlyStop ValLossASHA ValLossHyperBand",
    "tune_ptycho.run.searcher": "ResumableOptunaSearch",
    "tune_ptycho.run.stoppers": "CollapseStopper",
    "tune_ptycho.run.trial_logs": "KeepLogsOnRetry",
    # the scheduler classes lived here before run.ray_schedulers: older tuner.pkl files name them
    "tune_ptycho.run.tuner": "NoEarlyStop ValLossASHA ValLossHyperBand _dirname",
    "tune_ptycho.run.wandb_keyless": "KeylessWandbCallback",
    "tune_ptycho.storage.study": "ExperimentStudyStorage",
}
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    (module, name) for module, names in _ALLOWED_BY_MODULE.items() for name in names.split())
_ALLOWED_NAMES = frozenset(f"{module}.{name}" for module, name in ALLOWED)
# ``error.pkl`` holds a trial's own error: besides these, any exception class of a module the
# service has already imported (read from the module's namespace, never imported for the check)

_CLOUDPICKLE_FALLBACK = "CLOUDPICKLE_FALLBACK"  # ray.tune.utils.serialization's marker
# Trial.__getstate__ hex-encodes these fields' cloudpickles (ray.tune.experiment.trial)
_TRIAL_HEX_FIELDS = ("results", "extra_arg", "placement_group_factory", "_resources",
                     "_default_placement_group_factory")
# The root files Tune's restore unpickles whole (layout.PICKLE_FILES: the newest of each
# pattern; all are scanned) and its snapshots (layout.STATE_FILES). Not a leftover ``tmp-*`` of a
# write a killed driver cut short: Tune never reads those.
_CONST_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
              "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "INT", "BININT",
              "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"}
_FIXED = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_TUPLES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_CLOUDPICKLE = "ray.cloudpickle.cloudpickle"
# cloudpickle's helpers whose calls are checked argument by argument (see _reduce)
_SUBIMPORT = f"{_CLOUDPICKLE}.subimport"  # imports a module by name
_BUILTIN_TYPE = f"{_CLOUDPICKLE}._builtin_type"  # getattr(types, name)
_SUBIMPORTS = frozenset({"numpy", "mlflow"})  # HyperBand's lambdas' np; MLflow's callback
# pyarrow's LocalFileSystem pickles as FileSystem._from_uri("file:///_"); another URI could reach
# out over the network as it is unpickled
_FROM_URI = "pyarrow._fs.FileSystem._from_uri"
_INVALID = "<not a valid pickle ("
_MARK = object()
_UNKNOWN = object()


class _Global(str):
    """A global pushed on the symbolic stack."""


class _CodeType:
    """``types.CodeType``, from ``_builtin_type("CodeType")``."""


def _findings(data: bytes) -> list[str]:
    """What the pickle ``data`` would look up and build that can run code, in order: every
    global as ``module.name`` (``<computed>`` when its name is not a constant in the stream),
    ``subimport:NAME`` and ``builtin_type:NAME`` for those cloudpickle helpers' calls, and
    ``code:QUALNAME`` for a code object (a function pickled by value) that is one of the known
    ones, ``<code object ...>`` for any other. A stream that is not a valid pickle ends the list
    with ``<not a valid pickle (why)>``.

    A symbolic run of the unpickler's stack that tracks constants, tuples and globals; the
    stack effect of every other opcode comes from :mod:`pickletools`' own table. The helpers
    above (and pyarrow's ``FileSystem._from_uri``, for a local URI only) may only ever be called
    by REDUCE: any other use of them is reported."""
    found: list[str] = []
    stack: list[object] = []
    memo: dict[int, object] = {}
    special_pushed = special_called = 0

    def push(v: object) -> None:
        nonlocal special_pushed
        if _special(v):
            special_pushed += 1
        stack.append(v)

    def pop() -> object:
        return stack.pop() if stack else _UNKNOWN

    stopped = False
    ops = pickletools.genops(data)
    while True:
        try:
            op, arg, _pos = next(ops)
        except StopIteration:
            break
        except Exception as e:  # noqa: BLE001 — genops raises ValueError, struct.error, ...
            found.append(f"{_INVALID}{e})>")  # what came before it would still have run
            return found
        name = op.name
        if name in _CONST_OPS:
            push(arg)
        elif name in _FIXED:
            push(_FIXED[name])
        elif name in _TUPLES:
            items = [pop() for _ in range(_TUPLES[name])][::-1]
            push(tuple(items))
        elif name == "TUPLE":
            items = []
            while stack and stack[-1] is not _MARK:
                items.append(stack.pop())
            pop()
            push(tuple(items[::-1]))
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else _UNKNOWN
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1] if stack else _UNKNOWN
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            push(memo.get(arg, _UNKNOWN))
        elif name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.append(f"{module}.{attr}")
            if name == "INST":
                _pop_mark(stack)
            push(_Global(f"{module}.{attr}") if name == "GLOBAL" else _UNKNOWN)
        elif name == "STACK_GLOBAL":
            attr, module = pop(), pop()
            ok = type(module) is str and type(attr) is str
            found.append(f"{module}.{attr}" if ok else "<computed>")
            push(_Global(f"{module}.{attr}") if ok else _UNKNOWN)
        elif name == "REDUCE":
            args, func = pop(), pop()
            if _special(func):
                special_called += 1
            push(_reduce(func, args, found))
        elif name in ("EXT1", "EXT2", "EXT4"):  # copyreg's extension registry: unknown names
            found.append(f"<extension code {arg}>")
            push(_UNKNOWN)
        elif name == "STOP":
            stopped = True
            break
        else:
            _effect(op, stack)
    if not stopped:
        found.append(f"{_INVALID}no STOP opcode)>")
    if special_pushed != special_called:
        found.append("<a checked helper (cloudpickle's, pyarrow's) used other than by a call>")
    return found


def _special(v: object) -> bool:
    return isinstance(v, _CodeType) or (isinstance(v, _Global) and v in (_SUBIMPORT,
                                                                           _BUILTIN_TYPE,
                                                                           _FROM_URI))


def _reduce(func: object, args: object, found: list[str]) -> object:
    """REDUCE of ``func(*args)``: the checked helpers' calls, and what they push."""
    if isinstance(func, _Global) and func == _BUILTIN_TYPE:
        what = args[0] if isinstance(args, tuple) and len(args) == 1 else _UNKNOWN
        found.append(f"builtin_type:{what if type(what) is str else '<computed>'}")
        return _CodeType() if what == "CodeType" else _UNKNOWN
    if isinstance(func, _Global) and func == _SUBIMPORT:
        what = args[0] if isinstance(args, tuple) and len(args) == 1 else _UNKNOWN
        found.append(f"subimport:{what if type(what) is str else '<computed>'}")
    elif isinstance(func, _Global) and func == _FROM_URI:
        what = args[0] if isinstance(args, tuple) and len(args) == 1 else _UNKNOWN
        if not (type(what) is str and what.startswith("file://")):
            found.append(f"<{_FROM_URI} of {what if type(what) is str else 'a computed URI'}>")
    elif isinstance(func, _CodeType):
        found.append(_code_finding(args))
    return _UNKNOWN


def _known_functions() -> list:
    """The functions the service's own pickles hold by value (cloudpickle pickles a function it
    cannot import by its code): the lambdas Ray's ``HyperBandScheduler`` sets in its ``__init__``
    (``_get_n0``, ``_get_r0``; ``tuner.pkl``), and the methods of the class Ray's
    ``RayTaskError`` makes to be an instance of a trial's own error too (``error.pkl``)."""
    from ray.exceptions import RayTaskError
    from ray.tune.schedulers.hyperband import HyperBandScheduler

    sched = HyperBandScheduler()
    funcs = [sched._get_n0, sched._get_r0]
    for cause in (ValueError("x"), ExceptionGroup("x", [ValueError("x")])):
        dual = type(RayTaskError("f", "tb", cause).as_instanceof_cause())
        for v in vars(dual).values():
            parts = (v.fget, v.fset, v.fdel) if isinstance(v, property) else (v,)
            funcs.extend(f for f in parts if hasattr(f, "__code__"))
    return funcs


def _known_code() -> list[tuple[int, tuple, str]]:
    """(index of the file name, the rest, qualname) of the cloudpickle ``CodeType`` arguments of
    every known code object; the file name is where Ray is installed, so it is not compared."""
    from ray.cloudpickle.cloudpickle import _code_reduce

    out = []
    for f in _known_functions():
        code = f.__code__
        _, args = _code_reduce(code)
        i = args.index(code.co_filename)
        out.append((i, args[:i] + args[i + 1:], code.co_qualname))
    return out


_KNOWN_CODE: list[list[tuple[int, tuple, str]]] = []


def _code_finding(args: object) -> str:
    """``code:QUALNAME`` when ``args`` (cloudpickle's ``CodeType`` arguments) build one of the
    known code objects, whatever its file name; otherwise what it is."""
    if not _KNOWN_CODE:
        _KNOWN_CODE.append(_known_code())
    if isinstance(args, tuple):
        for i, known, qualname in _KNOWN_CODE[0]:
            if len(args) == len(known) + 1 and args[:i] + args[i + 1:] == known:
                return f"code:{qualname}"
        i = _KNOWN_CODE[0][0][0] + 2 if _KNOWN_CODE[0] else -1  # co_qualname follows co_name
        if 0 <= i < len(args) and type(args[i]) is str:
            return f"<code object {args[i]} (a function pickled by value)>"
    return "<code object (a function pickled by value)>"


def _pop_mark(stack: list[object]) -> None:
    while stack:
        if stack.pop() is _MARK:
            return


def _effect(op: pickletools.OpcodeInfo, stack: list[object]) -> None:
    before = op.stack_before
    if pickletools.markobject in before:  # pops everything down to the mark, and the mark
        _pop_mark(stack)
        before = [b for b in before
                  if b is not pickletools.markobject and b is not pickletools.stackslice]
    for _ in before:
        if stack:
            stack.pop()
    for a in op.stack_after:
        stack.append(_MARK if a is pickletools.markobject else _UNKNOWN)


def _allowed(finding: str) -> bool:
    if finding.startswith("code:"):  # only _code_finding writes it, for a known code object
        return True
    if finding.startswith("subimport:"):
        return finding[len("subimport:"):] in _SUBIMPORTS
    if finding.startswith("builtin_type:"):
        return finding == "builtin_type:CodeType"
    return finding in _ALLOWED_NAMES or _loaded_exception(finding)


def _loaded_exception(finding: str) -> bool:
    """Whether the global ``module.name`` is an exception class of a module already imported
    here: read from the namespaces (no import, no ``__getattr__``)."""
    module, _, attr = finding.rpartition(".")
    namespace = getattr(sys.modules.get(module), "__dict__", {})
    obj = namespace.get(attr)
    return isinstance(obj, type) and issubclass(obj, BaseException)


def scan_pickle(data: bytes) -> list[str]:
    """What ``data`` would look up or build that the service never pickles: a global as
    ``module.name``, a module cloudpickle would import (``subimport:NAME``), a function pickled by
    value (``<code object NAME ...>``), or why it is not a valid pickle. Empty for a pickle the
    service could have written. Nothing is imported or unpickled."""
    findings = _findings(data)
    out: list[str] = []
    for f in findings:
        if not _allowed(f) and f not in out:
            out.append(f)
    return out


def _decoded(text: str, where: str) -> Iterator[tuple[str, bytes]]:
    """The cloudpickles Tune would unpickle decoding the JSON ``text`` (its decoder's
    ``object_hook`` unpickles each ``{"_type": "CLOUDPICKLE_FALLBACK", "value": hex}`` as the
    parser meets it, so a document broken further on has run those already)."""
    met: list[dict] = []

    def hook(obj: dict) -> dict:
        if obj.get("_type") == _CLOUDPICKLE_FALLBACK:
            met.append(obj)
        return obj

    try:
        doc = json.JSONDecoder(object_hook=hook).decode(text)
    except ValueError:  # Tune's decoder stops there too, after unpickling what it met
        for i, obj in enumerate(met):
            yield f"{where} (embedded #{i})", _unhex(obj.get("value"))
        return
    yield from _embedded(doc, where)


def _embedded(doc: object, where: str) -> Iterator[tuple[str, bytes]]:
    """The cloudpickles in a decoded Tune document, named by where they are: the
    ``CLOUDPICKLE_FALLBACK`` objects, those of the trials and run metadata Tune keeps as JSON
    strings within the document, and a trial's hex-encoded fields."""
    if isinstance(doc, dict):
        if doc.get("_type") == _CLOUDPICKLE_FALLBACK:
            yield where, _unhex(doc.get("value"))
            return
        for k, v in doc.items():
            if k in _TRIAL_HEX_FIELDS and isinstance(v, str) and "trainable_name" in doc:
                yield f"{where}/{k}", _unhex(v)
            else:
                yield from _embedded(v, f"{where}/{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _embedded(v, f"{where}[{i}]")
    elif isinstance(doc, str) and doc.lstrip()[:1] in ("{", "["):  # a trial's JSON
        yield from _decoded(doc, where)


def _unhex(value: object) -> bytes:
    try:
        return binascii.unhexlify(value)  # type: ignore[arg-type]
    except (binascii.Error, TypeError, ValueError):
        return b"not hex"  # scan_pickle names it as an invalid pickle


def _listing(uri: str) -> list[tuple[str, bool]]:
    """(name, is_dir) of the entries directly in ``uri``."""
    fs, path = _fs(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path))
    except (OSError, FileNotFoundError):
        return []
    return sorted((i.base_name, i.type == pafs.FileType.Directory) for i in infos)


def experiment_pickles(uri: str) -> Iterator[tuple[str, bytes]]:
    """(name relative to the experiment, bytes) of every pickle Tune's restore, fit and
    ResultGrid would load from the experiment at ``uri`` (a local path or ``s3://``): the root
    pickles (``tuner.pkl``, ``searcher-state-*.pkl``, ``callback-states-*.pkl`` and
    ``search_gen_state-*.json``, a cloudpickle despite its name), the cloudpickles embedded in
    each ``experiment_state-*.json``, and the trials' ``error.pkl``."""
    root = uri.rstrip("/") if is_remote(uri) else str(uri).rstrip("/") or "/"
    for name, is_dir in _listing(root):
        where = f"{root}/{name}"
        if is_dir:
            if any(n == ERROR_PICKLE and not d for n, d in _listing(where)):
                yield f"{name}/{ERROR_PICKLE}", read_bytes(f"{where}/{ERROR_PICKLE}")
        elif any(fnmatch.fnmatchcase(name, p) for p in PICKLE_FILES):
            yield name, read_bytes(where)
        elif fnmatch.fnmatchcase(name, STATE_FILES):
            try:
                text = read_bytes(where).decode()
            except UnicodeDecodeError:  # Tune's reader fails before it parses anything
                continue
            for inner, data in _decoded(text, ""):
                yield f"{name}:{inner}", data


def _string_after(data: bytes, key: str) -> object:
    """The constant pushed right after the string ``key`` in the pickle ``data`` (a dict's value
    for that key), read from the opcodes; ``_UNKNOWN`` when it is not a plain constant."""
    memo: dict[int, object] = {}
    last: object = _UNKNOWN
    after_key = False
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                memo[len(memo) if op.name == "MEMOIZE" else arg] = last
                continue
            if op.name in _CONST_OPS:
                value = arg
            elif op.name in _FIXED:
                value = _FIXED[op.name]
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                value = memo.get(arg, _UNKNOWN)
            else:
                value = _UNKNOWN
            if after_key:
                return value
            after_key = value == key
            last = value
    except Exception:  # noqa: BLE001 — an invalid stream is reported by scan_pickle
        pass
    return _UNKNOWN


def _plain_name(value: object) -> bool:
    return (isinstance(value, str) and value not in ("", ".", "..") and "/" not in value
            and "\\" not in value)


def _trial_files_outside(uri: str) -> Iterator[str]:
    """Why a trial's file Tune would unpickle is not one this module scans: Tune reads a trial's
    error from ``<trial_dir_name>/<pickled_error_filename>``, both taken from the experiment
    state; each must be the plain name Tune writes."""
    root = uri.rstrip("/")
    for name, is_dir in _listing(root):
        if is_dir or not fnmatch.fnmatchcase(name, STATE_FILES):
            continue
        try:
            trials = json.loads(read_bytes(f"{root}/{name}")).get("trial_data") or []
        except (ValueError, AttributeError):
            continue
        for i, entry in enumerate(trials):
            docs = [json.loads(e) if isinstance(e, str) and e[:1] == "{" else e
                    for e in (entry if isinstance(entry, list) else [entry])]
            for doc in (d for d in docs if isinstance(d, dict)):
                err = doc.get("pickled_error_filename")
                if err not in (None, ERROR_PICKLE):
                    yield f"{name}: trial {i} names its pickled error {err!r}"
                storage = doc.get("storage")
                if isinstance(storage, dict) and storage.get("_type") == _CLOUDPICKLE_FALLBACK:
                    d = _string_after(_unhex(storage.get("value")), "trial_dir_name")
                    if d is not None and not _plain_name(d):
                        yield f"{name}: trial {i} has its directory at {d!r}"


def check_trusted(uri: str, trust: bool = False) -> None:
    """Refuse (:class:`UntrustedPickle`) an experiment any of whose pickles references a global
    the service never pickles; ``trust`` skips the check."""
    if trust:
        return
    for name, data in experiment_pickles(uri):
        if not data and name.endswith("/" + ERROR_PICKLE):
            continue  # a full disk's leftover: resume drops it
        bad = scan_pickle(data)
        if not bad:
            continue
        what = next((b for b in bad if not b.startswith(_INVALID)), None)
        why = (f"references {what}, which the service never pickles" if what else
               f"is not a valid pickle{bad[0][len(_INVALID) - 2:-1]}")
        raise UntrustedPickle(f"refusing to resume: {name} {why}; resume only experiments you "
                              f"trust (--trust to override)")
    for why in _trial_files_outside(uri):
        raise UntrustedPickle(f"refusing to resume: {why}, not the name Tune writes; resume "
                              f"only experiments you trust (--trust to override)")
