"""The experiment spec: a run config (the preset's defaults, overridden) plus how to search it.

Merged in this order, later wins: preset < ``--spec`` file (TOML, YAML or JSON) < flags <
``--set path=value``. Every bad value is refused here — before Ray starts — with a message naming
the path, the value and what is allowed. The written ``spec.json`` loads back through ``--spec``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ptycho_model.config import (
    LEGACY_STOP,
    ConfigError,
    RunConfig,
    build_dataclass,
    closest,
    set_path,
    unflatten,
)
from ptycho_model.presets import get_preset

from .run.schedulers import ASHA, DEFAULT, NONE, TRIAL_SCHEDULERS, trial_scheduler
from .storage.fs import is_remote

RUN_SECTIONS = tuple(f.name for f in fields(RunConfig))


@dataclass(frozen=True)
class SearchSpec:
    space: str = "full"
    num_samples: int = 12
    seed: int = 0  # seeds the sampler only; data seeds never follow it
    max_concurrent: int = 2  # trials at once (0: as many as resources allow)
    n_startup_trials: int = 6  # random trials before TPE models the space
    # Collapsed and diverged trials reach TPE as infeasible (Optuna's constraints_func), not
    # only as a bad objective (search_spaces.sampler.collapse_constraint)
    collapse_aware: bool = False
    seed_points: bool = True  # offer the upstream seed arms as points_to_evaluate
    # At most this many seed arms, never more than num_samples. None: at most half the trials
    # (num_samples // 2; a 1-trial study gets none), so even a small study has Optuna sample.
    seed_arms: int | None = None
    # search.params: {config path: range} laid over the named space (search_spaces.ranges)
    params: dict[str, Any] = field(default_factory=dict)
    # The space as searched (named space < preset ranges < params), recorded in spec.json:
    # ``resume`` searches the recorded space, not whatever the code's named space is by then.
    resolved: dict[str, Any] = field(default_factory=dict)
    # Explicit points to run, each a {config path: value} of the space (a crash hunt's
    # configurations x seeds); when given, they replace the seed arms.
    points: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SchedulerSpec:
    """The trial scheduler: early stopping beside the collapse rule (docs/design.md,
    "Schedulers"). ``name`` is one of :data:`tune_ptycho.run.schedulers.TRIAL_SCHEDULERS`, whose
    entries say how each decides. (``scheduler/`` is the study's trial scheduler; ``sched/`` is
    a run's LR schedule.)"""

    name: str = DEFAULT
    # ASHA, HyperBand: epochs before the first rung; None: the preset's, or default_grace_period
    grace_period: int | None = None
    reduction_factor: int = 3  # ASHA and HyperBand: the best 1/rf go on at each rung
    brackets: int = 1  # ASHA (HyperBand sizes its brackets from max_epochs and rf)


@dataclass(frozen=True)
class ResourcesSpec:
    cpus_per_trial: float = 1.0  # also the trial's torch threads
    gpus_per_trial: float = 0.0  # fractions share a GPU: 0.25 -> 4 trials per GPU
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    wait_for_nodes_s: float = 0.0  # let an autoscaling cluster grow before refusing a request


@dataclass(frozen=True)
class StorageSpec:
    path: str = "tune-ptycho-runs"  # local path, shared filesystem or s3://bucket/prefix
    name: str = ""  # default: <space>-<preset>-<UTC timestamp>
    study_storage: str = ""  # default: sqlite optuna.db inside a local experiment
    keep_checkpoints: int = 3  # best by val_loss per trial (Ray also keeps the newest)
    checkpoint_every: int = 1  # every k-th epoch and the trial's last; each holds the best weights
    dataset_cache: str = ""  # default: ~/.cache/tune-ptycho/datasets
    # experiment trackers, Ray Tune's logger callbacks: any of tensorboard, mlflow, wandb
    # (a comma-separated string too; [] or "none": result.json and progress.csv only)
    log_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    mlflow_uri: str = ""  # default: sqlite mlflow.db inside a local experiment

    def __post_init__(self) -> None:
        if isinstance(self.log_to, str):
            names = [t.strip() for t in self.log_to.split(",") if t.strip()]
            object.__setattr__(self, "log_to", [] if names == ["none"] else names)


SPEC_SECTIONS = {"search": SearchSpec, "scheduler": SchedulerSpec, "resources": ResourcesSpec,
                 "storage": StorageSpec}


@dataclass(frozen=True)
class ExperimentSpec:
    preset: str = "cpu"
    run: RunConfig = field(default_factory=RunConfig)
    search: SearchSpec = field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    storage: StorageSpec = field(default_factory=StorageSpec)

    @property
    def space(self):
        """The :class:`~search_spaces.ranges.DeclaredSpace` this study searches."""
        from search_spaces import DeclaredSpace, get_space

        return DeclaredSpace.from_dict(self.search.space, self.search.resolved,
                                       doc=get_space(self.search.space).doc)

    @property
    def seed_arm_limit(self) -> int:
        """How many seed arms this study may offer: ``search/seed_arms`` capped at its trials,
        or by default at most half of them (:func:`default_seed_arms`); 0 with seed points off."""
        s = self.search
        if not s.seed_points:
            return 0
        if s.seed_arms is None:
            return default_seed_arms(s.num_samples)
        return min(s.seed_arms, s.num_samples)

    @property
    def offered_arms(self) -> dict[str, dict[str, Any]]:
        """The seed arms this study enqueues (arm -> point): at most :attr:`seed_arm_limit`."""
        s = self.search
        if s.points:
            return {f"point_{i}": dict(p) for i, p in enumerate(s.points)}
        return dict(list(self.arm_projection.points.items())[:self.seed_arm_limit])

    def arms_line(self) -> str:
        """The one line ``run`` and ``spaces --show`` print: which seed arms are offered to how
        many trials, by which rule, how to ask for more, and how many trials Optuna samples."""
        s = self.search
        return self.arm_projection.summary(self.seed_arm_limit, trials=s.num_samples,
                                           asked=s.seed_arms, seed_points=s.seed_points)

    @property
    def arm_projection(self):
        """Every seed arm (the preset's own first, then upstream's) projected onto the space."""
        from search_spaces import project_arms

        return project_arms(self.space, self.run, get_preset(self.preset).arms)

    @property
    def grace_period(self) -> int:
        """The trial scheduler's grace period, the first rung of ASHA or HyperBand:
        ``scheduler/grace_period`` as the user or the preset gave it (a preset's fitted to a
        shorter run, :func:`_fit_preset_grace_period`), or :func:`default_grace_period`. Not the
        collapse rule's grace (``collapse/grace``, ``RunConfig.collapse_grace``)."""
        g = self.scheduler.grace_period
        return default_grace_period(self.run.train.max_epochs) if g is None else g

    def to_dict(self) -> dict[str, Any]:
        """Flat sections, as a spec file holds them: ``{"preset", "data", ..., "search", ...}``."""
        d: dict[str, Any] = {"preset": self.preset}
        d.update(self.run.to_dict())
        for name in SPEC_SECTIONS:
            d[name] = asdict(getattr(self, name))
        return d

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def default_seed_arms(num_samples: int) -> int:
    """Seed arms offered when ``search/seed_arms`` is not given: at most half the trials,
    rounded down (8 trials: 4; 4: 2; 1: none, so a 1-trial study is sampled), so that Optuna's
    sampler runs in every study of two trials or more and its importances rank sampled points,
    not only fixed ones."""
    return num_samples // 2


def default_grace_period(max_epochs: int) -> int:
    """The trial scheduler's first rung (``scheduler/grace_period``) when neither the user nor
    the preset sets one: a quarter of the run, at most 4 epochs, at least 1.

    A different knob from the collapse rule's grace (``collapse/grace``,
    ``ptycho_model.config.default_collapse_grace``: epochs before the ratio kind may count, at
    most 5, and 0 allowed), which decides when a collapse may be flagged, not when ASHA or
    HyperBand may first stop a trial for ranking low."""
    return max(1, min(4, max_epochs // 4))


def read_spec_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        what = "a directory, not a spec file" if p.is_dir() else "no such file"
        raise ConfigError(f"--spec {str(path)!r}: {what}")
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            d = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            d = yaml.safe_load(text) or {}
        elif p.suffix == ".json":
            d = json.loads(text)
        else:
            raise ConfigError(f"--spec {str(path)!r}: use a .toml, .yaml/.yml or .json file")
    except (ValueError, yaml.YAMLError) as e:  # tomllib/json errors are ValueErrors
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"--spec {str(path)!r} does not parse: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"--spec {str(path)!r} must hold a mapping of sections")
    return d


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v


def build_spec(spec_file: dict[str, Any] | None = None, flags: dict[str, Any] | None = None,
               sets: dict[str, Any] | None = None, recorded: bool = False) -> ExperimentSpec:
    """Merge preset < spec file < flags < sets (flags and sets are flat ``a/b`` paths).

    The searched space is resolved from the named space, the preset's ranges and
    ``search.params``, unless ``recorded``: an experiment's own ``spec.json`` keeps the space it
    searched (``search.resolved``)."""
    spec_file = legacy_sections(dict(spec_file or {}))
    flags = legacy_paths({k: v for k, v in (flags or {}).items() if v is not None})
    sets = legacy_paths(dict(sets or {}))
    preset = sets.pop("preset", flags.pop("preset", spec_file.pop("preset", "cpu")))
    get_preset(preset)  # an unknown name: ConfigError with the closest names
    merged = _defaults(preset)
    for key in spec_file:
        if key not in merged:
            raise ConfigError(f"unknown spec section {key!r}{closest(key, list(merged))}; "
                              f"allowed: preset, {', '.join(merged)}")
    _deep_merge(merged, spec_file)
    for layer in (flags, sets):
        for path, value in layer.items():
            top = path.split("/")[0]
            if top not in merged:
                raise ConfigError(f"unknown config path {path!r}"
                                  f"{closest(top, list(merged))}; sections: {', '.join(merged)}")
            set_path(merged, path, value)
    _fit_preset_grace_period(preset, merged)
    spec = _assemble(preset, merged)
    if not (recorded and spec.search.resolved):
        spec = _with_resolved_space(spec)
    validate(spec)
    if not recorded:  # a new study: its probe file is read now, before Ray starts
        from ptycho_model.probes import check_probe_spec

        check_probe_spec(spec.run.data.probe, spec.run.data.N)
    return spec


def legacy_sections(spec_file: dict[str, Any]) -> dict[str, Any]:
    """A spec's ``asha`` section (written before ``scheduler`` existed, as every older
    experiment's ``spec.json``) read as the ``scheduler`` section it now is."""
    if "asha" not in spec_file:
        return spec_file
    if "scheduler" in spec_file:
        raise ConfigError("the spec has both an 'asha' section (its old name) and a 'scheduler' "
                          f"section; keep 'scheduler' (scheduler.name = "
                          f"{'|'.join(TRIAL_SCHEDULERS)})")
    old = spec_file.pop("asha")
    if not isinstance(old, dict):
        raise ConfigError(f"spec section 'asha' must be a mapping, not {old!r}")
    old = dict(old)
    enabled = old.pop("enabled", True)
    spec_file["scheduler"] = {"name": ASHA if enabled else NONE, **old}
    return spec_file


def legacy_paths(flat: dict[str, Any]) -> dict[str, Any]:
    """``asha/x`` paths as ``scheduler/x``; ``asha/enabled=false`` is ``scheduler/name=none``."""
    out = {}
    for path, value in flat.items():
        if path == "asha/enabled":
            on = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            out["scheduler/name"] = ASHA if on else NONE
        elif path.startswith("asha/"):
            out["scheduler/" + path.removeprefix("asha/")] = value
        else:
            out[path] = value
    return out


def _fit_preset_grace_period(preset: str, merged: dict[str, Any]) -> None:
    """A preset's own ``scheduler/grace_period`` keeps its share of a run shorter than the
    preset's (the collapse rule's grace is not touched): the cpu
    preset's rung at epoch 10 of 14 comes at epoch 6 of ``--max-epochs 8`` (never before the
    default formula's). A plain quarter of the run would judge warmup schedules mid-warmup: at 8
    epochs, a rung at 2 stopped upstream's lr-1e-3 arms in favour of trials that then collapsed
    (``bench/vs_peers.py``: best objective 0.143 at grace 2, 0.089 at grace 6). A grace the user
    gave is validated as given."""
    p = get_preset(preset)
    own = p.study.get("scheduler/grace_period")
    sched, epochs = merged["scheduler"], merged["train"]["max_epochs"]
    if own is not None and sched.get("grace_period") == own and isinstance(epochs, int) \
            and 1 <= epochs < own:
        share = round(own * epochs / p.config().train.max_epochs)
        sched["grace_period"] = max(share, default_grace_period(epochs))


def _with_resolved_space(spec: ExperimentSpec) -> ExperimentSpec:
    from dataclasses import replace

    from search_spaces import resolve_space

    s = spec.search
    if not isinstance(s.params, dict):
        raise ConfigError(f"search.params={s.params!r} must map config paths to ranges")
    space = resolve_space(s.space, spec.run, get_preset(spec.preset).search, s.params)
    return replace(spec, search=replace(s, resolved=space.to_dict()))


def lenient_spec(spec_file: dict[str, Any]) -> ExperimentSpec:
    """preset < spec file, as :func:`build_spec`, without refusing unknown sections or validating
    the result: reads back an experiment's ``spec.json`` written under older rules."""
    spec_file = legacy_sections(dict(spec_file))
    preset = spec_file.pop("preset", "cpu")
    merged = _defaults(preset)
    _deep_merge(merged, spec_file)
    return _assemble(preset, merged)


def _defaults(preset: str | None) -> dict[str, Any]:
    """The preset's run config and every spec section's defaults, as one nested dict (None: the
    built-in defaults, before any preset)."""
    p = get_preset(preset) if preset is not None else None
    merged: dict[str, Any] = (p.config() if p else RunConfig()).to_dict()
    for name, cls in SPEC_SECTIONS.items():
        merged[name] = asdict(cls())
    for path, value in (p.study if p else {}).items():  # the preset's own study settings
        set_path(merged, path, value)
    return merged


@dataclass(frozen=True)
class SpecPath:
    """One path ``tune-ptycho run --set`` accepts (``tune-ptycho paths`` lists them)."""

    path: str
    default: Any
    group: str  # "model" (run, train, simulate), "study" (run only) or "legacy"
    choices: tuple[str, ...] = ()  # the registry's names the value is one (or a list) of
    note: str = ""


# A word on the spec paths whose value is not a plain scalar or whose null means something.
SPEC_PATH_NOTES = {
    "preset": "run's default preset: cpu (train and simulate: tiny)",
    "search/seed_arms": "null: at most half the trials (num_samples // 2)",
    "search/max_concurrent": "0: as many as resources allow",
    "search/params": "a mapping {config path: range} laid over the space; easier in a --spec file",
    "search/resolved": "written by the service (the space as searched); a new run resolves it anew",
    "search/points": "a list of {config path: value} run instead of the seed arms (crash-hunt, "
                     "cliff)",
    "search/collapse_aware": "true: collapsed and diverged trials reach TPE as infeasible",
    "scheduler/grace_period": "null: the preset's, or a quarter of train/max_epochs (at most 4)",
    "storage/log_to": "a list or comma-separated names; none: no tracker",
}


def spec_choices() -> dict[str, tuple[str, ...]]:
    """The choice-valued spec paths and the registries ``validate`` checks them against."""
    from ptycho_model.presets import PRESETS
    from search_spaces import SPACES

    from .run.trackers import TRACKERS

    return {"preset": tuple(PRESETS), "search/space": tuple(SPACES),
            "scheduler/name": tuple(TRIAL_SCHEDULERS), "storage/log_to": tuple(TRACKERS)}


def spec_paths(preset: str | None = None) -> list[SpecPath]:
    """Every path ``--set`` accepts for ``run``, from what :func:`build_spec` checks them
    against: ``preset``, the run config's sections (:data:`RUN_SECTIONS`), the spec's
    (:data:`SPEC_SECTIONS`), and the legacy ``asha/`` paths :func:`legacy_paths` maps. Defaults
    are ``preset``'s, or the built-in ones (None)."""
    from ptycho_model.config import REGISTRIES, choices, known_paths

    merged = _defaults(preset)
    named = spec_choices()

    def default(path: str) -> Any:
        node: Any = merged
        for part in path.split("/"):
            node = node[part]
        return node

    out = [SpecPath("preset", preset or "cpu", "study", named["preset"],
                    SPEC_PATH_NOTES["preset"])]
    out += [SpecPath(p, default(p), "model", choices(p) if p in REGISTRIES else ())
            for p in known_paths(RunConfig)]
    for name, cls in SPEC_SECTIONS.items():
        out += [SpecPath(p, default(p), "study", named.get(p, ()), SPEC_PATH_NOTES.get(p, ""))
                for p in known_paths(cls, name)]
    out += [SpecPath("asha/enabled", True, "legacy", (),
                     f"read as scheduler/name={ASHA} (true) or {NONE} (false)"),
            SpecPath("asha/<key>", None, "legacy", (), "read as scheduler/<key>"),
            SpecPath(LEGACY_STOP, False, "legacy", (),
                     "read as collapse/stop=true (true); false is dropped: collapse/stop decides")]
    return out


def _assemble(preset: str, merged: dict[str, Any]) -> ExperimentSpec:
    run = RunConfig.from_dict({k: merged[k] for k in RUN_SECTIONS})
    parts = {name: build_dataclass(cls, merged[name], name) for name, cls in SPEC_SECTIONS.items()}
    return ExperimentSpec(preset=preset, run=run, **parts)


def validate(spec: ExperimentSpec) -> None:
    from search_spaces import get_space  # the service, not the model core, knows the spaces

    s, a, r = spec.search, spec.scheduler, spec.resources
    get_space(s.space)  # an unknown name: ConfigError with the closest names
    if s.num_samples < 1:
        raise ConfigError(f"search/num_samples={s.num_samples} must be >= 1")
    if s.max_concurrent < 0:
        raise ConfigError(f"search/max_concurrent={s.max_concurrent} must be >= 0")
    if s.n_startup_trials < 0:
        raise ConfigError(f"search/n_startup_trials={s.n_startup_trials} must be >= 0")
    max_epochs = spec.run.train.max_epochs
    trial_scheduler(a.name)  # an unknown name: ConfigError with the closest names
    if a.grace_period is not None and not 1 <= a.grace_period <= max_epochs:
        raise ConfigError(f"scheduler/grace_period={a.grace_period} must be in [1, "
                          f"train/max_epochs={max_epochs}]")
    if s.seed_arms is not None and s.seed_arms < 0:
        raise ConfigError(f"search/seed_arms={s.seed_arms} must be >= 0")
    if a.reduction_factor < 2:
        raise ConfigError(f"scheduler/reduction_factor={a.reduction_factor} must be >= 2")
    if a.brackets < 1:
        raise ConfigError(f"scheduler/brackets={a.brackets} must be >= 1")
    if not r.cpus_per_trial > 0:
        raise ConfigError(f"resources/cpus_per_trial={r.cpus_per_trial} must be > 0")
    if r.gpus_per_trial < 0:
        raise ConfigError(f"resources/gpus_per_trial={r.gpus_per_trial} must be >= 0")
    if r.gpus_per_trial > 1 and r.gpus_per_trial != int(r.gpus_per_trial):
        raise ConfigError(f"resources/gpus_per_trial={r.gpus_per_trial}: above 1 it must be a "
                          "whole number (fractions share one GPU)")
    if r.max_failures < 0:
        raise ConfigError(f"resources/max_failures={r.max_failures} must be >= 0")
    if spec.storage.checkpoint_every < 1:
        raise ConfigError(f"storage/checkpoint_every={spec.storage.checkpoint_every} must be >= 1")
    if spec.storage.keep_checkpoints < 1:
        raise ConfigError(f"storage/keep_checkpoints={spec.storage.keep_checkpoints} must be >= 1")
    _check_urls(spec.storage)  # first: the messages below show storage/path
    if is_remote(spec.storage.path) and not spec.storage.study_storage:
        raise ConfigError(f"storage/path={spec.storage.path!r} is not a local disk: SQLite is "
                          "unsafe there, so give --study-storage (a database URL, or "
                          "journal:///mnt/nfs/path/study.log)")
    _validate_trackers(spec.storage)
    name = spec.storage.name
    if name and (("/" in name) or name.startswith(".")):
        raise ConfigError(f"storage/name={name!r} must be a plain directory name")


def _validate_trackers(st: StorageSpec) -> None:
    from .run.trackers import TRACKERS

    if not isinstance(st.log_to, list) or not all(isinstance(t, str) for t in st.log_to):
        raise ConfigError(f"storage/log_to={st.log_to!r} must be a list of tracker names "
                          f"({', '.join(TRACKERS)})")
    for t in st.log_to:
        if t not in TRACKERS:
            raise ConfigError(f"storage/log_to: unknown tracker {t!r}{closest(t, list(TRACKERS))}"
                              f"; known: {', '.join(TRACKERS)}")
    if len(set(st.log_to)) != len(st.log_to):
        raise ConfigError(f"storage/log_to={st.log_to!r} names a tracker twice")
    if "mlflow" in st.log_to and is_remote(st.path) and not st.mlflow_uri:
        raise ConfigError(f"storage/path={st.path!r} is not a local disk, where the default "
                          "MLflow store (SQLite in the experiment) cannot live: give --mlflow-uri")


def _check_urls(st: StorageSpec) -> None:
    """No URL the service takes holds a secret (:func:`.secrets.check_no_secret`), and the
    study storage is a database URL (``journal://`` paths aside)."""
    from .secrets import check_no_secret, redact

    urls = {"storage/study_storage": st.study_storage, "storage/mlflow_uri": st.mlflow_uri}
    if is_remote(st.path):
        urls["storage/path"] = st.path
    for path, url in urls.items():
        if not isinstance(url, str):
            raise ConfigError(f"{path}={url!r} must be a string")
        check_no_secret(path, url)
    url = st.study_storage
    if not url or url.startswith("journal://"):
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError:
        raise ConfigError(f"storage/study_storage={redact(url)!r} is not a database URL "
                          "(dialect://user@host/db, sqlite:///path or journal:///path)") from None


__all__ = ["ExperimentSpec", "SearchSpec", "SchedulerSpec", "ResourcesSpec",
           "StorageSpec", "SpecPath", "build_spec", "default_seed_arms", "spec_paths",
           "read_spec_file", "validate", "unflatten"]
