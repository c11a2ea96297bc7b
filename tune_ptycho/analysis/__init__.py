"""Offline analysis of one experiment directory: ``tune-ptycho analyze`` and ``tune-ptycho best``.

Reads Ray Tune's files (``trial_*/result.json``, ``params.json``, ``checkpoint_*/state.pt``, the
newest ``experiment_state-*.json`` for each trial's status) plus ``spec.json`` and the Optuna
study; needs no running Ray. Writes ``<experiment>/report/`` (the names are
:mod:`tune_ptycho.storage.layout`'s; the figures are its ``REPORT_FIGURES``):

``trials.csv``          one row per trial: outcome, searched parameters, final and best metrics,
                        node, start / end time, rank (``ranking.rank_key``)
``results.parquet``     every per-epoch result of every trial (config columns as ``config/a/b``)
``learning_curves.png`` val_loss per epoch per trial, coloured by outcome, stop epoch marked
``params_vs_loss.png``  best_val_loss against each searched parameter
``best_reconstruction.png``  the best trial's best-val_loss checkpoint on test image 0
``trials_per_node.png`` trials per node, and a timeline of trials
``collapse.png``        what collapses: P(collapse) per parameter, an outcome map, the spike
``layers.png``          inside the collapsed trials: each block's output spread per epoch
``crash_hunt.csv``      after ``tune-ptycho crash-hunt``: P_crash per configuration
``report.md``           the summary, with the figures linked

Every file is written whatever the experiment holds (errored trials, empty ``result.json``, no
completed trial): a figure without data says so, and so does the report.

Modules: ``load`` (the experiment and its trials), ``ranking`` (the rank), ``best`` (the best
trial, its checkpoint and weights), ``tables`` (trials.csv, results.parquet), ``plots`` (the
figures), ``collapses`` and ``collapse_plot`` (what collapses), ``layers`` (inside the collapsed
trials), ``crash_hunt`` and ``cliff`` (those commands' results), ``markdown`` (the report's
sections), ``report`` (``build_report`` and ``analyze``), ``remote`` (an ``s3://`` experiment).
Importing this package stays cheap (no pandas, matplotlib or torch): the CLI imports it.
"""

# What other packages import from here (the CLI and the tests); every other name is imported from
# its own module. None of the modules these import needs pandas, matplotlib or torch to load.
from .best import best_trial, export_best
from .load import load_experiment
from .report import analyze, build_report

__all__ = ["analyze", "best_trial", "build_report", "export_best", "load_experiment"]
