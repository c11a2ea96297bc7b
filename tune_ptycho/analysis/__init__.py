"""Offline analysis of one experiment directory: ``tune-ptycho analyze`` and ``tune-ptycho best``.

Reads Ray Tune's files (``trial_*/result.json``, ``params.json``, ``checkpoint_*/state.pt``, the
newest ``experiment_state-*.json`` for each trial's status) plus ``spec.json`` and the Optuna
study; needs no running Ray. Writes ``<experiment>/report/``:

``trials.csv``          one row per trial: outcome, searched parameters, final and best metrics,
                        node, start / end time, rank (``experiment.rank_key``)
``results.parquet``     every per-epoch result of every trial (config columns as ``config/a/b``)
``learning_curves.png`` val_loss per epoch per trial, coloured by outcome, stop epoch marked
``params_vs_loss.png``  best_val_loss against each searched parameter
``best_reconstruction.png``  the best trial's best-val_loss checkpoint on test image 0
``trials_per_node.png`` trials per node, and a timeline of trials
``collapse.png``        what collapses: P(collapse) per parameter, an outcome map, the spike
``report.md``           the summary, with the figures linked

Every file is written whatever the experiment holds (errored trials, empty ``result.json``, no
completed trial): a figure without data says so, and so does the report.

Modules: ``load`` (the experiment, its trials and their outcomes), ``best`` (the best trial, its
checkpoint and weights), ``tables`` (trials.csv, results.parquet), ``plots`` (the figures),
``markdown`` (the report's sections), ``report`` (``build_report`` and ``analyze``). Importing
this package stays cheap (no pandas, matplotlib or torch): every CLI command imports its errors.
"""

# Every public name of the former single module analysis.py, so importers need no change;
# ``__all__`` as it was. No submodule imports pandas, matplotlib or torch at module level.
from .best import (  # noqa: F401
    best_checkpoint_dir, best_trial, export_best, load_best_model,
)
from .load import (  # noqa: F401
    COLLAPSED_FLAT, COLLAPSED_RATIO, DIVERGED, ERROR, FINISHED, OUTCOME_LABELS, OUTCOMES,
    STOPPED_EARLY, UNFINISHED, Experiment, NoResults, NotAnExperiment, TrialRecord,
    load_experiment,
)
from .markdown import (  # noqa: F401
    counts, counts_line, importance_lines, node_table, spec_lines, varying_params,
)
from .plots import (  # noqa: F401
    COLORS, FIGURES, MARKERS, best_reconstruction_figure, collapse_figure, learning_curves_figure,
    params_vs_loss_figure, trials_per_node_figure,
)
from .report import REPORT_DIR, Report, analyze, build_report  # noqa: F401
from .tables import (  # noqa: F401
    STAT_COLUMNS, param_kinds, results_frame, searched_params, trials_frame,
)

__all__ = ["analyze", "build_report", "best_trial", "export_best", "load_experiment",
           "load_best_model", "best_checkpoint_dir", "NotAnExperiment", "NoResults", "OUTCOMES"]
