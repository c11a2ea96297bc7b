"""The names of the files an experiment directory holds: defined once, imported everywhere.

Ours and Ray Tune's, side by side (docs/design.md, "Experiment directory")::

    <storage>/<name>/
        spec.json  dataset.json  study.json  optuna.db      ours (optuna.db unless --study-storage)
        driver_error.txt  mlflow.db  mlartifacts/           ours, when the driver failed / with
                                                            --log-to mlflow and no --mlflow-uri
        tuner.pkl  experiment_state-*.json  searcher-state-*.pkl  callback-states-*.pkl
        search_gen_state-*.json                             Ray Tune's: what Tuner.restore reads
        trial_*/result.json  progress.csv  params.json      Ray Tune's, per trial
        trial_*/error.txt  error.pkl                        Ray Tune's, a trial that errored
        trial_*/checkpoint_*/state.pt  history.json         the trainable's (ptycho_model.names)
        report/                                             ``analyze``: report.md, trials.csv,
                                                            results.parquet, the figures, and
                                                            crash_hunt.csv after a crash hunt
        crash_hunt/                                         a crash hunt: an experiment like any,
                                                            with crash_hunt.json beside its spec

A cliff map's directory holds ``cliff.json``, its rounds (``round_1/`` ..., experiments like any)
and ``report/`` with ``cliff.csv``, ``cliff.png`` and ``report.md``. ``diagnose`` writes
``diagnose.json`` and ``diagnose.png``; ``tune-ptycho train`` its own folder (no experiment).

Only names here: no imports, so any module may read them (:mod:`ptycho_model.names` holds the
checkpoint's file names and the metrics').
"""

from __future__ import annotations

# ---------------------------------------------------------------- ours, at the experiment's root
SPEC_FILE = "spec.json"  # the experiment's spec (tune_ptycho.spec)
DATASET_FILE = "dataset.json"  # the data fingerprint and checksums
STUDY_META = "study.json"  # where the Optuna study is
STUDY_FILE = "optuna.db"  # the study's own SQLite file, unless --study-storage names another
DRIVER_ERROR_FILE = "driver_error.txt"  # the driver's own tracebacks, in full (run.driver_errors)
MLFLOW_DB = "mlflow.db"  # --log-to mlflow's local tracking store, unless --mlflow-uri names one
MLFLOW_ARTIFACTS = "mlartifacts"  # the MLflow experiment's artifact root (run.trackers)

# ------------------------------------------------------------ Ray Tune's, at the experiment's root
TUNER_FILE = "tuner.pkl"  # the experiment Tuner.restore resumes
STATE_PREFIX, STATE_SUFFIX = "experiment_state-", ".json"  # Tune's snapshots, newest sorts last
STATE_FILES = f"{STATE_PREFIX}*{STATE_SUFFIX}"
# the other files Tune's restore unpickles (search_gen_state-*.json is a cloudpickle despite its
# name)
PICKLE_FILES = (TUNER_FILE, "searcher-state-*.pkl", "callback-states-*.pkl",
                "search_gen_state-*.json")

# ------------------------------------------------------------------ Ray Tune's, in a trial's dir
TRIAL_DIR_PREFIX = "trial_"  # trial_<trial id>/ (run.tuner names them)
CHECKPOINT_PREFIX = "checkpoint_"  # checkpoint_000012/: zero-padded, the newest sorts last
RESULT_FILE = "result.json"  # the trial's reported rows, one JSON object a line
PROGRESS_FILE = "progress.csv"  # the same rows as a table
PARAMS_FILE = "params.json"  # the trial's sampled parameters
ERROR_FILE = "error.txt"  # the traceback of a trial that errored
ERROR_PICKLE = "error.pkl"  # the same error, pickled

# ------------------------------------------------------------------------- ``analyze``'s report
REPORT_DIR = "report"
REPORT_MD = "report.md"
TRIALS_CSV = "trials.csv"
RESULTS_PARQUET = "results.parquet"
CRASH_HUNT_CSV = "crash_hunt.csv"
LEARNING_CURVES_PNG = "learning_curves.png"
PARAMS_VS_LOSS_PNG = "params_vs_loss.png"
BEST_RECONSTRUCTION_PNG = "best_reconstruction.png"
TRIALS_PER_NODE_PNG = "trials_per_node.png"
COLLAPSE_PNG = "collapse.png"
LAYERS_PNG = "layers.png"
# every figure the report writes: the one list (analysis.report draws and shows each)
REPORT_FIGURES = (LEARNING_CURVES_PNG, PARAMS_VS_LOSS_PNG, BEST_RECONSTRUCTION_PNG,
                  TRIALS_PER_NODE_PNG, COLLAPSE_PNG, LAYERS_PNG)

# ------------------------------------------------------------------------------ a crash hunt
CRASH_HUNT_DIR = "crash_hunt"  # the follow-up experiment, inside its parent
CRASH_HUNT_META = "crash_hunt.json"  # its plan, beside its spec.json

# ----------------------------------------------------------------------------- a cliff map
CLIFF_META = "cliff.json"  # the plan and its rounds
CLIFF_CSV = "cliff.csv"
CLIFF_PNG = "cliff.png"

# ---------------------------------------------------------------------- ``diagnose``'s output
DIAGNOSE_DIR = "diagnose"  # inside an experiment diagnosed whole: one folder per trial
DIAGNOSE_JSON = "diagnose.json"
DIAGNOSE_PNG = "diagnose.png"

# ------------------------------------------ ``tune-ptycho train``'s output folder (no experiment)
TRAIN_CONFIG = "config.json"  # the RunConfig (also beside a model.pt that ``diagnose`` reads)
TRAIN_METRICS = "metrics.json"
TRAIN_MODEL = "model.pt"  # the final weights, a plain state dict
TRAIN_BEST_MODEL = "model_best.pt"  # the lowest-val_loss epoch's weights
TRAIN_RECONSTRUCTION_PNG = "reconstruction.png"
TRAIN_HISTORY_PNG = "history.png"
