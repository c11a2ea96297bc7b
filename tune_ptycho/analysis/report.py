"""``tune-ptycho analyze``: the report folder, ``report.md`` and the files beside it.

:func:`build_report` writes ``trials.csv``, ``results.parquet``, the figures (the one list:
:data:`tune_ptycho.storage.layout.REPORT_FIGURES`; each guarded: a figure that fails becomes a
placeholder and a note) and ``report.md``; :func:`analyze` does so for a local or a remote
(``s3://``) experiment. Leaves out what goes into them: the tables (``tables``), figures
(``plots``, ``collapse_plot``, ``layers``) and Markdown sections (``markdown``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ptycho_model import names

from ..outcomes import ERROR, FINISHED, OUTCOME_LABELS
from ..storage.fs import is_remote
from ..storage.layout import (
    BEST_RECONSTRUCTION_PNG,
    COLLAPSE_PNG,
    CRASH_HUNT_CSV,
    LAYERS_PNG,
    LEARNING_CURVES_PNG,
    PARAMS_VS_LOSS_PNG,
    REPORT_DIR,
    REPORT_FIGURES,
    REPORT_MD,
    RESULTS_PARQUET,
    TRIALS_CSV,
    TRIALS_PER_NODE_PNG,
)
from .best import best_checkpoint_dir, shown_path
from .collapse_plot import collapse_figure
from .collapses import collapse_bins, collapse_flag
from .crash_hunt import load_crash_hunt, section_lines, write_csv
from .layers import inside_lines, inside_rows, layers_figure, trial_history
from .load import load_experiment
from .markdown import (
    counts_line,
    fmt,
    importance_lines,
    md_table,
    node_table,
    param_importance,
    params_text,
    spec_lines,
    varying_params,
    what_collapses_lines,
)
from .plots import (
    best_reconstruction_figure,
    learning_curves_figure,
    params_vs_loss_figure,
    placeholder,
    trials_per_node_figure,
)
from .ranking import scores_line
from .tables import param_kinds, results_frame, searched_params, trials_frame, write_parquet

if TYPE_CHECKING:  # pandas is imported where used: every CLI command imports this package
    import pandas as pd

# The figures report.md shows in its closing "Figures" section, with their alt text: those of
# REPORT_FIGURES that no section of their own shows (collapse.png is in "What collapses",
# layers.png in "Inside the collapsed trials").
SHOWN_IN_SECTIONS = (COLLAPSE_PNG, LAYERS_PNG)
FIGURE_ALT = {LEARNING_CURVES_PNG: "learning curves", PARAMS_VS_LOSS_PNG: "parameters vs loss",
              BEST_RECONSTRUCTION_PNG: "best reconstruction",
              TRIALS_PER_NODE_PNG: "trials per node"}


@dataclass
class Report:
    dir: Path
    trials: pd.DataFrame
    best_trial_id: str | None
    summary: str
    notes: list[str]


def build_report(path: str | Path, out: str | Path | None = None,
                 shown_as: str | None = None, study_storage: str | None = None) -> Report:
    """``shown_as``: where the report says the experiment lies (a remote experiment's URI when
    ``path`` is its temporary local copy)."""
    import pandas as pd
    exp = load_experiment(path, study_storage=study_storage)
    where = shown_as or str(exp.path)
    report_dir = Path(out).expanduser() if out else exp.path / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    df = trials_frame(exp)
    df.to_csv(report_dir / TRIALS_CSV, index=False)
    res = results_frame(exp)
    write_parquet(res, report_dir / RESULTS_PARQUET)
    params = searched_params(exp)
    kinds = param_kinds(exp, params, df)

    def guarded(name: str, fn, *args) -> None:
        p = report_dir / name
        try:
            fn(*args, p)
        except Exception as e:  # noqa: BLE001 - the report must build; say what failed
            notes.append(f"{name}: {type(e).__name__}: {e}")
            traceback.print_exc()
            placeholder(p, name, f"figure failed: {type(e).__name__}: {e}"[:200])

    guarded(LEARNING_CURVES_PNG, learning_curves_figure, exp)
    guarded(PARAMS_VS_LOSS_PNG, params_vs_loss_figure, exp, df, kinds)
    guarded(TRIALS_PER_NODE_PNG, trials_per_node_figure, exp, df)
    _, rec_note = best_reconstruction_figure(exp, report_dir / BEST_RECONSTRUCTION_PNG)

    ranked = exp.ranked()
    best = ranked[0] if ranked else None
    lines = [f"# tune-ptycho report: {exp.info.name}", "",
             f"Experiment: `{where}`  ",
             f"Written: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}", "",
             "## Spec", *spec_lines(exp)]
    if exp.spec.run.data.val_is_test:
        lines += ["", "> **Note:** `data/val_is_test` is true: trials were validated on the test "
                      "split, as upstream — val_loss and the test metrics are not independent."]
    lines += ["", "## Outcomes", counts_line(df), ""]
    if not ranked:
        lines += ["**No trial reported a result**: there is no best trial and the figures are "
                  "empty.", ""]
    n_complete = int(df["outcome"].isin([FINISHED]).sum())
    if ranked and n_complete == 0:
        lines += ["No trial ran to max_epochs (every trial was stopped, collapsed, diverged or "
                  "errored).", ""]
    if best is not None:
        weights = shown_path(best_checkpoint_dir(best), exp.path, where) or "none left"
        lines += [f"**Best trial: `{best.trial_id}`** ({OUTCOME_LABELS[best.outcome]}) — "
                  f"{scores_line(best.last)}; its best weights are the `best_model` of "
                  f"`{weights}/{names.STATE_FILE}`. Export them with "
                  f"`tune-ptycho best {where} --export best.pt`.", ""]
        lines += ["## Best trials (lowest final objective, ties by best_val_loss)", ""]
        top = df[df["rank"].notna()].head(5)
        key_params = varying_params(df, params)
        rows = []
        dagger = False
        for _, r in top.iterrows():
            amp = r.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM)
            twin = r.get(names.BEST_CKPT_PREFIX + names.AMP_SSIM_TWIN)
            if amp is None or pd.isna(amp):  # no best-checkpoint eval: the latest eval instead
                amp, twin = r.get(names.AMP_SSIM), r.get(names.AMP_SSIM_TWIN)
                if amp is not None and not pd.isna(amp):
                    amp = f"{fmt(amp)} †"
                    dagger = True
            rows.append([r["rank"], f"`{r['trial_id']}`", params_text(r, key_params),
                         r.get(names.OBJECTIVE), r.get(names.BEST_VAL_LOSS),
                         r.get(names.BEST_EPOCH), r.get("last_epoch"),
                         OUTCOME_LABELS.get(r["outcome"], r["outcome"]), amp, twin,
                         r.get(names.AMP_SSIM_CONSTANT)])
        lines += md_table(["rank", "trial", "params", "objective", "best_val_loss", "best epoch",
                           "stop epoch", "outcome", "amp SSIM (best ckpt)", "twin SSIM",
                           "constant SSIM"], rows)
        if dagger:
            lines += ["", "† no best-checkpoint eval (the trial did not end on its own: ASHA "
                          "stopped it, or it errored): the SSIMs of its latest eval epoch, "
                          "current weights."]
        fixed = [p for p in params if p not in key_params]
        lines += ["", "params: those that differ between trials"
                  + (" (the same in every trial: "
                     f"{', '.join(f'{p}={fmt(df[p].iloc[0], 3)}' for p in fixed)})"
                     if fixed else "") + ". amp SSIM near the constant-output SSIM means a flat "
                  "(collapsed) reconstruction; twin SSIM above amp SSIM means the twin image was "
                  "learnt."]
    errs = df[df["outcome"] == ERROR]
    if len(errs):
        lines += ["", "## Errored trials", ""]
        lines += md_table(["trial", "status", "results", "error"],
                          [[f"`{r['trial_id']}`", r.get("status"), r.get("n_results"),
                            r.get("error")] for _, r in errs.iterrows()])
    hunt = load_crash_hunt(exp.path)
    if hunt is not None:
        write_csv(hunt, report_dir / CRASH_HUNT_CSV)
        lines += ["", "## Crash hunt", "",
                  *section_lines(hunt, best.trial_id if best is not None else None)]
    bins = collapse_bins(df, kinds)
    for_collapse = param_importance(exp, target=collapse_flag)
    lines += ["", "## What collapses", "",
              *what_collapses_lines(exp, df, kinds, bins, for_collapse)]
    try:
        collapse_figure(exp, df, kinds, bins, for_collapse.values, report_dir / COLLAPSE_PNG)
    except Exception as e:  # noqa: BLE001 - a figure must not cost the report
        placeholder(report_dir / COLLAPSE_PNG, "what collapses", f"not drawn: {e}")
        notes.append(f"{COLLAPSE_PNG}: not drawn ({type(e).__name__}: {e})")
    inside = inside_rows(exp)
    lines += ["", "## Inside the collapsed trials", "", *inside_lines(inside)]
    healthy = (best.trial_id, trial_history(best)) if best is not None else None
    guarded(LAYERS_PNG, layers_figure, inside, healthy, exp.spec.run.collapse.flat_std)
    lines += ["", "## Parameter importance", "", *importance_lines(exp)]
    lines += ["", "## Trials per node", "", *node_table(df)]
    lines += ["", "## Figures"]
    for f in REPORT_FIGURES:
        if f not in SHOWN_IN_SECTIONS:
            lines += ["", f"![{FIGURE_ALT[f]}]({f})"]
    if exp.spec_note:
        notes.append(exp.spec_note)
    if rec_note and ranked:
        notes.append(rec_note if rec_note.startswith(BEST_RECONSTRUCTION_PNG)
                     else f"{BEST_RECONSTRUCTION_PNG}: {rec_note}")
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    lines += ["", f"Files: `{TRIALS_CSV}` (one row per trial), `{RESULTS_PARQUET}` (one row per "
                  "trial and epoch, config as `config/...` columns)."]
    (report_dir / REPORT_MD).write_text("\n".join(lines) + "\n")

    summary = counts_line(df)
    if best is not None:
        summary += (f"\nbest trial: {best.trial_id} ({OUTCOME_LABELS[best.outcome]}), "
                    f"{scores_line(best.last)}")
    else:
        summary += "\nno trial reported a result"
    return Report(dir=report_dir, trials=df, best_trial_id=best.trial_id if best else None,
                  summary=summary, notes=notes)


def analyze(path: str, out: str | None = None, study_storage: str | None = None) -> Path:
    """Write the report folder (default ``<experiment>/report/``) and return its path.

    An ``s3://`` (or other remote) experiment is copied to a temporary local directory first;
    its report is written to ``out`` (default ``./<name>-report``), returned, and when ``out`` is
    not given also uploaded to ``<experiment>/report/``.
    """
    if is_remote(str(path)):
        return _analyze_remote(str(path), out, study_storage)
    return build_report(path, out, study_storage=study_storage).dir


def _analyze_remote(uri: str, out: str | None, study_storage: str | None) -> Path:
    import pyarrow.fs as pafs

    from .remote import local_copy

    with local_copy(uri) as local:
        rep = build_report(local, out or Path.cwd() / f"{local.name}-report", shown_as=uri,
                           study_storage=study_storage)
        if not out:
            fs, root = pafs.FileSystem.from_uri(uri)
            pafs.copy_files(str(rep.dir), root.rstrip("/") + "/" + REPORT_DIR,
                            source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        return rep.dir
