"""The ``tune-ptycho`` command line. ``main(argv)`` returns the exit code (:mod:`.exits`).

Every error of input a user can fix is a :class:`ptycho_model.errors.InputError`: it is printed
on one line and the command exits 2. Choices offered by the flags come from the registries that
build them (``GENERATORS``, ``PRESETS``, ``SPACES``, ``TRIAL_SCHEDULERS``), never from a list
kept here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ptycho_model.config import RunConfig, parse_scalar
from ptycho_model.errors import InputError
from ptycho_model.presets import PRESETS, preset_config

from .exits import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK
from .run.schedulers import NONE as NO_SCHEDULER, TRIAL_SCHEDULERS, help_text as scheduler_help


class UsageError(InputError):
    """A flag's value that cannot be used (a missing file, a malformed ``--set``)."""


def parse_sets(items: list[str] | None) -> dict[str, object]:
    """``["optim/lr=3e-4", "model/arch=hybrid"]`` -> ``{"optim/lr": 0.0003, ...}``."""
    out: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected path=value, e.g. --set optim/lr=3e-4")
        key, _, value = item.partition("=")
        out[key.strip()] = parse_scalar(value)
    return out


def out_dir(path: str | Path, flag: str) -> Path:
    """``path`` as a directory that exists and can be written (made if missing), or UsageError."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {str(path)!r}: cannot create that directory "
                         f"({e.strerror})") from None
    if not os.access(p, os.W_OK):
        raise UsageError(f"{flag} {str(path)!r}: not writable")
    return p


def _run_config(args: argparse.Namespace, defaults: dict[str, object] | None = None) -> RunConfig:
    """The preset's config < ``defaults`` (the command's own) < ``--set`` < the flags."""
    updates = {**(defaults or {}), **parse_sets(args.set)}
    if getattr(args, "arch", None):
        updates["model/arch"] = args.arch
    if getattr(args, "probe_npz", None):
        if not Path(args.probe_npz).is_file():
            what = ("a directory, not an NPZ file" if Path(args.probe_npz).is_dir()
                    else "no such file")
            raise UsageError(f"--probe-npz {args.probe_npz!r}: {what}")
        updates["data/probe"] = str(Path(args.probe_npz).resolve())
    if getattr(args, "set_phi", None) is not None:
        updates["data/set_phi"] = args.set_phi
    return preset_config(args.preset, updates)


def train_config(args: argparse.Namespace) -> RunConfig:
    """``train``'s config. A collapse flag ends the run only when asked (``--stop-on-collapse``,
    or ``--set collapse/stop=true``): ``collapse/stop``, true for a Tune trial, is false here
    unless given, so ``train`` reports the flags and trains on (a divergence always ends it)."""
    cfg = _run_config(args, defaults={"collapse/stop": False})
    if args.stop_on_collapse:
        cfg = cfg.with_updates({"collapse/stop": True})
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from .standalone import run_train
    from .storage.experiment import utc_stamp

    cfg = train_config(args)
    out = out_dir(args.out or f"tune-ptycho-runs/train-{args.preset}-{utc_stamp()}", "--out")
    # a diverged or collapsed run is a result, not an error
    run_train(cfg, out, threads=args.threads)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from .standalone import run_simulate

    cfg = _run_config(args)
    run_simulate(cfg, out_dir(args.out, "--out"))
    return EXIT_OK


RUN_FLAGS = {  # flag dest -> spec path
    "preset": "preset", "space": "search/space", "num_samples": "search/num_samples",
    "seed": "search/seed", "max_concurrent": "search/max_concurrent",
    "max_epochs": "train/max_epochs", "cpus_per_trial": "resources/cpus_per_trial",
    "gpus_per_trial": "resources/gpus_per_trial", "max_failures": "resources/max_failures",
    "wait_for_nodes": "resources/wait_for_nodes_s", "storage": "storage/path",
    "name": "storage/name", "study_storage": "storage/study_storage",
    "checkpoint_every": "storage/checkpoint_every", "log_to": "storage/log_to",
    "mlflow_uri": "storage/mlflow_uri",
    "scheduler": "scheduler/name", "grace_period": "scheduler/grace_period",
    "reduction_factor": "scheduler/reduction_factor",
    "collapse_ratio": "collapse/ratio", "collapse_patience": "collapse/patience",
    "collapse_grace": "collapse/grace", "flat_std": "collapse/flat_std",
}


def spec_from_args(args: argparse.Namespace):
    from .spec import build_spec, read_spec_file

    spec_file = read_spec_file(args.spec) if args.spec else None
    flags = {path: getattr(args, dest) for dest, path in RUN_FLAGS.items()}
    if args.no_asha:
        if args.scheduler not in (None, NO_SCHEDULER):
            from ptycho_model.errors import ConfigError

            raise ConfigError(f"--no-asha is --scheduler none; it contradicts --scheduler "
                              f"{args.scheduler}")
        flags["scheduler/name"] = NO_SCHEDULER
    if args.no_collapse_stop:
        flags["collapse/stop"] = False
    return build_spec(spec_file, flags, parse_sets(args.set))


def cmd_run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)  # every bad value exits 2 here, before Ray starts
    from .run.launch import run

    return run(spec, address=args.address, dashboard=not args.no_dashboard,
               progress=not args.no_progress)


def cmd_resume(args: argparse.Namespace) -> int:
    from .run.crash_hunt import is_crash_hunt, report_parent
    from .run.launch import resume
    from .storage.fs import is_remote

    code = resume(args.path, address=args.address, dashboard=not args.no_dashboard,
                  trust=args.trust)
    uri = args.path if is_remote(args.path) else str(Path(args.path).expanduser().resolve())
    if is_crash_hunt(uri):  # its results live in the parent experiment's report
        report_parent(uri)
    return code


def cmd_crash_hunt(args: argparse.Namespace) -> int:
    from .run.crash_hunt import crash_hunt

    return crash_hunt(args.path, args.top, args.seeds, address=args.address,
                      dashboard=not args.no_dashboard, progress=not args.no_progress)


def cmd_cliff(args: argparse.Namespace) -> int:
    from .run.cliff import DEFAULT_ARMS, DEFAULT_AXIS, CliffRefused, Plan, fill_arms, log_values
    from .storage.fs import is_remote

    if args.storage and is_remote(args.storage):
        raise CliffRefused(f"--storage {args.storage}: the cliff map runs on local or shared "
                           "filesystem storage only")
    sets = parse_sets(args.set)
    axis = args.axis or DEFAULT_AXIS
    if args.values:
        try:
            values = sorted(int(v) if v.strip().lstrip("-").isdigit() else float(v)
                            for v in args.values.split(","))
        except ValueError:
            raise CliffRefused(f"--values {args.values!r}: give numbers separated by commas"
                               ) from None
        if len(values) < 2 or len(set(values)) != len(values) or min(values) <= 0:
            raise CliffRefused(f"--values {args.values!r}: give at least 2 distinct positive "
                               "values")
    else:
        values = log_values(args.low, args.high, args.points)
    names_ = args.arms.split(",") if args.arms else list(DEFAULT_ARMS)
    arms = fill_arms(args.preset, names_, axis, sets)
    for flag, v, lo in (("--seeds", args.seeds, 1), ("--max-seeds", args.max_seeds, 1)):
        if v < lo:
            raise CliffRefused(f"{flag} {v}: give at least {lo}")
    if not 0 < args.halfwidth <= 0.5:
        raise CliffRefused(f"--halfwidth {args.halfwidth:g}: give a Wilson half-width in (0, 0.5]")
    from ptycho_model.presets import preset_config

    base_seed = preset_config(args.preset, {k: v for k, v in sets.items() if "/" in k}
                              ).train.seed
    plan = Plan(preset=args.preset, axis=axis, values=values, arms=arms, seeds=args.seeds,
                halfwidth=args.halfwidth, max_seeds=max(args.max_seeds, args.seeds),
                base_seed=base_seed, sets=sets, rounds=[])
    root = Path(args.storage or "tune-ptycho-runs").expanduser().resolve() / args.name
    from .run.cliff import cliff

    return cliff(root, plan, address=args.address, dashboard=not args.no_dashboard,
                 progress=not args.no_progress)


def cmd_spaces(args: argparse.Namespace) -> int:
    from search_spaces import DESCRIPTIONS, SPACES

    if not args.show:
        for name in SPACES:
            print(f"{name:10s} {DESCRIPTIONS.get(name, '')}")
        print("(tune-ptycho spaces --show NAME [--preset P] [--spec F] prints one as searched)")
        return EXIT_OK
    from .spec import build_spec, read_spec_file

    sets: dict[str, object] = {"search/space": args.show}
    if args.preset:
        sets["preset"] = args.preset
    spec = build_spec(read_spec_file(args.spec) if args.spec else None, sets=sets)
    print(describe_space(spec))
    return EXIT_OK


def describe_space(spec) -> str:
    """The space a study searches, one range a line, and the seed arms it starts from."""
    s = spec.search
    lines = [f"space {s.space} at preset {spec.preset} ({spec.run.train.max_epochs} epochs): "
             f"{spec.space.doc}", *spec.space.lines()]
    if not s.points:
        lines.append(spec.arms_line())
    return "\n".join(lines)


def cmd_presets(args: argparse.Namespace) -> int:
    for name, p in PRESETS.items():
        print(f"{name:18s} {p.summary}")
    return EXIT_OK


PATH_GROUPS = {
    "model": "the model config: tune-ptycho run, train and simulate (--set PATH=VALUE)",
    "study": "the study: tune-ptycho run only (--set PATH=VALUE, or a --spec file's sections)",
    "legacy": "legacy: older names (an older spec's asha section, train/stop_on_collapse), "
              "still read",
}


def set_text(value: object) -> str:
    """``value`` as ``--set PATH=...`` writes it: :func:`parse_scalar` reads it back as is."""
    import json

    if isinstance(value, str):
        try:
            if value and parse_scalar(value) == value:
                return value
        except InputError:
            pass
    return json.dumps(value)


def paths_markdown(preset: str | None = None) -> str:
    """``tune-ptycho paths --markdown``: the same listing as Markdown, a table per group.
    docs/design.md holds it between ``<!-- paths:begin -->`` and ``<!-- paths:end -->``
    (``python docs/gen_paths.py`` rewrites it there; tests/test_docs_paths.py compares)."""
    from .spec import spec_paths

    def cell(text: str) -> str:  # a table cell's text: | and <key> escaped
        return text.replace("|", "\\|").replace("<", "\\<")

    entries = spec_paths(preset)
    out = []
    for group, title in PATH_GROUPS.items():
        out += ["", f"*{cell(title[0].upper() + title[1:])}*", ""]
        if group == "legacy":  # a rule, not a value
            out += ["| path | read as |", "| --- | --- |"]
            out += [f"| `{e.path}` | {cell(e.note)} |" for e in entries if e.group == group]
            continue
        out += ["| path | default | names | note |", "| --- | --- | --- | --- |"]
        for e in (e for e in entries if e.group == group):
            many = "any of " if isinstance(e.default, list) else ""
            names = (many + ", ".join(f"`{c}`" for c in e.choices)) if e.choices else ""
            out.append(f"| `{e.path}` | `{set_text(e.default)}` | {names} | {cell(e.note)} |")
    return "\n".join(out[1:]) + "\n"


def cmd_paths(args: argparse.Namespace) -> int:
    from .spec import spec_paths

    if args.markdown:
        print(paths_markdown(args.preset), end="")
        return EXIT_OK
    entries = spec_paths(args.preset)
    print("# every path `tune-ptycho run --set PATH=VALUE` accepts, with its default "
          + (f"at preset {args.preset}" if args.preset else
             "before any preset (--preset P: P's; run's default preset is cpu)"))
    for group, title in PATH_GROUPS.items():
        print(f"# {title}")
        for e in (e for e in entries if e.group == group):
            if group == "legacy":  # a rule, not a value
                print(f"{e.path:28s} {e.note}")
                continue
            value, many = set_text(e.default), isinstance(e.default, list)
            allowed = (f"  ({'any of ' if many else ''}{' | '.join(e.choices)})"
                       if e.choices else "")
            note = f"  # {e.note}" if e.note else ""
            print(f"{e.path:28s} {value}{allowed}{note}")
    return EXIT_OK


def cmd_validate_cluster(args: argparse.Namespace) -> int:
    import warnings

    from .cluster.cluster_file import summary, validate_cluster_file

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = validate_cluster_file(args.file)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(summary(args.file, cfg))
    return EXIT_OK


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import build_report
    from .storage.fs import is_remote
    from .storage.layout import CLIFF_CSV, CLIFF_META, CLIFF_PNG, REPORT_MD

    if args.out:
        out_dir(args.out, "--out")
    if is_remote(args.path):
        from .analysis import analyze

        out = analyze(args.path, args.out, args.study_storage)
        print(f"report: {out / REPORT_MD}")
        return EXIT_OK
    if (Path(args.path) / CLIFF_META).is_file():  # a cliff map: its rounds, one report
        from .analysis.cliff import write_report

        out = write_report(args.path, args.out)
        print(f"report: {out / REPORT_MD}, {out / CLIFF_CSV}, {out / CLIFF_PNG}")
        return EXIT_OK
    rep = build_report(args.path, args.out, study_storage=args.study_storage)
    print(f"report: {rep.dir / REPORT_MD}")
    print(rep.summary)
    for note in rep.notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def cmd_best(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from .analysis.remote import local_copy
    from .storage.fs import is_remote

    if args.export:
        export = Path(args.export).expanduser()
        if export.is_dir():
            raise UsageError(f"--export {args.export!r} is a directory; name the file to write")
        out_dir(export.parent, "--export")
    remote = is_remote(args.path)
    with local_copy(args.path) if remote else nullcontext(Path(args.path)) as local:
        return _print_best(local, args.path if remote else None, args.export, args.single)


def _print_best(path: Path, shown_as: str | None, export: str | None,
                single: bool = False) -> int:
    """The best trial of the experiment at ``path`` (named ``shown_as`` when a remote one)."""
    from .analysis import best_trial, export_best
    from .analysis.best import shown_path
    from .analysis.ranking import best_lines

    trial_id, trial_dir, ckpt, m = best_trial(path)

    def shown(p: Path | None) -> str | None:
        return shown_path(p, path, shown_as) if shown_as else (None if p is None else str(p))

    print("\n".join(best_lines(trial_id, m.get("config") or {}, m, shown(ckpt),
                                trial_dir=shown(trial_dir))))
    from .analysis.crash_hunt import load_crash_hunt

    hunt = load_crash_hunt(path)
    winner = hunt.winner if hunt is not None else None
    if winner is not None:
        r, run = winner.row(), winner.best_run
        print(f"robust winner (crash hunt, worst seed's final objective): the configuration of "
              f"{winner.source_trial}: {r['collapsed']}/{r['runs']} runs crashed "
              f"(P_crash {r['p_crash']:.2f}, 95% CI [{r['p_crash_low']:.2f}, "
              f"{r['p_crash_high']:.2f}]), robust objective {r['robust_objective']:.4g}, "
              f"mean best_val_loss {r['mean_best_val_loss']:.4g}; best seed run {run.trial_id} "
              f"(train/seed={run.params.get('train/seed')})")
    if export:
        if winner is not None and not single:
            out = export_best(hunt.path, export, trial=winner.best_run)
            print(f"exported weights: {out}: the robust winner's configuration "
                  f"({winner.source_trial}) with the best weights of its best seed run "
                  f"{winner.best_run.trial_id} (config: {out}.json; --single exports the single "
                  "best trial instead)")
        else:
            out = export_best(path, export)
            print(f"exported weights: {out} (state dict for ptycho_model.load_exported; config: "
                  f"{out}.json)")
    return EXIT_OK


def cmd_diagnose(args: argparse.Namespace) -> int:
    from .diagnose import diagnose, summary_line

    if args.out:
        out_dir(args.out, "--out")
    for where, doc in diagnose(args.path, args.out):
        print(summary_line(where, doc))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tune-ptycho",
        description="Hyperparameter studies for PtychoPINN FNO generators on Ray Tune + Optuna.")
    sub = p.add_subparsers(dest="command", required=True)

    def add_model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                        help="full set of defaults (tune-ptycho presets lists them)")
        sp.add_argument("--set", action="append", metavar="PATH=VALUE",
                        help="override a config path, e.g. --set optim/lr=3e-4 (repeatable)")
        sp.add_argument("--probe-npz", metavar="FILE",
                        help="an NPZ holding probeGuess (N, N) complex: use a real probe")

    t = sub.add_parser("train", help="train one model, no Ray")
    add_model_args(t)
    t.add_argument("--arch", help="model/arch: the generator (tune-ptycho paths lists the names)")
    t.add_argument("--out", metavar="DIR", help="output directory (default: a new timestamped one)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--stop-on-collapse", action="store_true",
                   help="stop when the collapse rule fires, as collapse/stop=true (default: "
                        "report and go on)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("simulate", help="simulate a grid_lines dataset to NPZ files")
    add_model_args(s)
    s.add_argument("--set-phi", dest="set_phi", action=argparse.BooleanOptionalAction, default=None,
                   help="give the object a phase (default: the preset's)")
    s.add_argument("--out", metavar="DIR", required=True)
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser("run", help="run a hyperparameter study on Ray Tune")
    r.add_argument("--spec", metavar="FILE", help="settings as TOML/YAML/JSON (flags override)")
    r.add_argument("--preset", help="defaults for data, model and training (default: cpu)")
    r.add_argument("--space", help="search space (tune-ptycho spaces; default: full)")
    r.add_argument("--num-samples", type=int, help="trials in the study")
    r.add_argument("--max-epochs", type=int, help="epochs per trial (ASHA's max_t)")
    r.add_argument("--max-concurrent", type=int, help="trials at once (0: no limit)")
    r.add_argument("--cpus-per-trial", type=float, help="CPUs per trial = its torch threads")
    r.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; 0.25 -> 4 share a GPU")
    r.add_argument("--storage", help="results root: local path, shared filesystem or s3://...")
    r.add_argument("--name", help="experiment name (default: <space>-<preset>-<UTC time>)")
    r.add_argument("--address", help="join an existing Ray cluster (e.g. auto)")
    r.add_argument("--seed", type=int, help="sampler seed")
    r.add_argument("--set", action="append", metavar="PATH=VALUE",
                   help="override any spec path, e.g. --set optim/lr=3e-4 or --set "
                        "search/seed_arms=4 (repeatable; tune-ptycho paths lists them)")
    r.add_argument("--no-dashboard", action="store_true", help="embedded Ray without dashboard")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--max-failures", type=int, help="retries of a crashed trial")
    r.add_argument("--checkpoint-every", type=int, metavar="K",
                   help="checkpoint every K-th epoch and a trial's last (default 1; a stage_a "
                        "checkpoint is ~1 GB); a retried trial redoes up to K-1 epochs")
    r.add_argument("--study-storage", help="Optuna storage URL (required for s3:// storage)")
    r.add_argument("--log-to", metavar="TRACKERS",
                   help="experiment trackers, comma-separated: tensorboard (the default), mlflow, "
                        "wandb; 'none' for none (mlflow and wandb need: "
                        'pip install -e ".[trackers]")')
    r.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite mlflow.db in the "
                                        "experiment)")
    r.add_argument("--wait-for-nodes", type=float, metavar="SECONDS",
                   help="let an autoscaling cluster add a node that fits a trial")
    r.add_argument("--scheduler", choices=tuple(TRIAL_SCHEDULERS), help=scheduler_help())
    r.add_argument("--grace-period", type=int,
                   help="ASHA and HyperBand: epochs before the first rung")
    r.add_argument("--reduction-factor", type=int,
                   help="ASHA and HyperBand: keep the best 1/rf at each rung")
    r.add_argument("--no-asha", action="store_true",
                   help="the same as --scheduler none (the collapse rule stays)")
    r.add_argument("--collapse-ratio", type=float, help="val_loss / best_val_loss threshold")
    r.add_argument("--collapse-patience", type=int, help="epochs above threshold before stop")
    r.add_argument("--collapse-grace", type=int, help="epochs before the ratio rule applies")
    r.add_argument("--flat-std", type=float, help="output std/mean below this is flat")
    r.add_argument("--no-collapse-stop", action="store_true",
                   help="flag collapses but stop no trial for them (see which recover)")
    r.set_defaults(func=cmd_run)

    rs = sub.add_parser("resume", help="continue an interrupted experiment")
    rs.add_argument("path", help="the experiment directory (or s3:// URI)")
    rs.add_argument("--address", help="join an existing Ray cluster")
    rs.add_argument("--no-dashboard", action="store_true")
    rs.add_argument("--trust", action="store_true",
                    help="resume even if its pickles reference what the service never pickles "
                         "(unpickling runs code: only for an experiment you trust)")
    rs.set_defaults(func=cmd_resume)

    an = sub.add_parser("analyze", help="write a report of a finished (or partial) experiment")
    an.add_argument("path", help="the experiment directory (or s3:// URI)")
    an.add_argument("--out", metavar="DIR", help="report folder (default: PATH/report)")
    an.add_argument("--study-storage", metavar="URL",
                    help="read the Optuna study at URL (a database server, or a file outside "
                         "the experiment); by default only the experiment's own study file is "
                         "read, read-only")
    an.set_defaults(func=cmd_analyze)

    b = sub.add_parser("best", help="the best trial: config, scores, where its best weights are")
    b.add_argument("path", help="the experiment directory (or s3:// URI)")
    b.add_argument("--export", metavar="FILE",
                   help="write its best weights as a plain state dict (+ FILE.json: its config); "
                        "after a crash hunt, the robust winner's best seed run")
    b.add_argument("--single", action="store_true",
                   help="with --export after a crash hunt: the single best trial instead")
    b.set_defaults(func=cmd_best)

    ch = sub.add_parser("crash-hunt", help="rerun the best configurations over new seeds: "
                                           "P_crash, and a robust winner")
    ch.add_argument("path", help="the experiment directory (or s3:// URI)")
    ch.add_argument("--top", type=int, default=3,
                    help="configurations: the trials with the lowest best_val_loss (default 3)")
    ch.add_argument("--seeds", type=int, default=3, help="new train/seed values each (default 3)")
    ch.add_argument("--address", help="join an existing Ray cluster")
    ch.add_argument("--no-dashboard", action="store_true")
    ch.add_argument("--no-progress", action="store_true")
    ch.set_defaults(func=cmd_crash_hunt)

    cl = sub.add_parser("cliff", help="P(collapse) along one axis (peak LR by default) per arm, "
                                      "seeds added in rounds until each interval is narrow")
    cl.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                    help="defaults for data, model and training (default: cpu)")
    cl.add_argument("--axis", help="the config path to vary (default: optim/lr, the peak LR of "
                                   "a warmup schedule)")
    cl.add_argument("--values", help="the axis values, comma-separated (default: --points "
                                     "log-spaced values from --low to --high)")
    cl.add_argument("--low", type=float, default=5e-3, help="default 5e-3")
    cl.add_argument("--high", type=float, default=5e-2, help="default 5e-2")
    cl.add_argument("--points", type=int, default=6, help="default 6")
    cl.add_argument("--arms", help="comma-separated (default: cliff,cliff_agc,stable_layerscale; "
                                   "'plain' is the preset as it is)")
    cl.add_argument("--seeds", type=int, default=4, help="seeds per point per round (default 4)")
    cl.add_argument("--halfwidth", type=float, default=0.25,
                    help="add rounds until each point's Wilson 95%% half-width is at most this "
                         "(default 0.25)")
    cl.add_argument("--max-seeds", type=int, default=12,
                    help="at most this many runs a point (default 12)")
    cl.add_argument("--name", default="cliff", help="the map's folder under --storage "
                                                   "(default: cliff); the same name continues it")
    cl.add_argument("--storage", help="results root (default: tune-ptycho-runs)")
    cl.add_argument("--set", action="append", metavar="PATH=VALUE",
                    help="override a config or spec path for every run (repeatable)")
    cl.add_argument("--address", help="join an existing Ray cluster")
    cl.add_argument("--no-dashboard", action="store_true")
    cl.add_argument("--no-progress", action="store_true")
    cl.set_defaults(func=cmd_cliff)

    dg = sub.add_parser("diagnose", help="per-layer statistics of a model; where a trial went flat")
    dg.add_argument("path", help="a trial or checkpoint dir, a state.pt, a model.pt, or an "
                                 "experiment (its collapsed trials and its best one)")
    dg.add_argument("--out", metavar="DIR",
                    help="where diagnose.json and diagnose.png go (default: beside PATH)")
    dg.set_defaults(func=cmd_diagnose)

    sp = sub.add_parser("spaces", help="list search spaces, or show one as a study searches it")
    sp.add_argument("--show", metavar="NAME", help="print this space's ranges as searched")
    sp.add_argument("--preset", help="with --show: the preset whose ranges apply (default: cpu)")
    sp.add_argument("--spec", metavar="FILE", help="with --show: a spec file (search.params)")
    sp.set_defaults(func=cmd_spaces)
    sub.add_parser("presets", help="list presets").set_defaults(func=cmd_presets)
    pa = sub.add_parser("paths", help="list every path --set accepts (config and study), with "
                                      "its default and allowed names")
    pa.add_argument("--preset", choices=sorted(PRESETS),
                    help="show this preset's defaults (default: the built-in ones)")
    pa.add_argument("--markdown", action="store_true",
                    help="print Markdown tables (docs/design.md's list of config paths)")
    pa.set_defaults(func=cmd_paths)
    vc = sub.add_parser("validate-cluster",
                        help="check a `ray up` cluster file offline (Ray's validator + ours)")
    vc.add_argument("file", help="the cluster YAML, e.g. cluster.yaml")
    vc.set_defaults(func=cmd_validate_cluster)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as e:
        print(f"tune-ptycho: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("tune-ptycho: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
