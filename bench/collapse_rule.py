"""The collapse rule against labels from weights: the confusion matrix before and after, with
Wilson 95% intervals, thresholds chosen on one half of the labelled set and scored on the other.

Reads the runs ``bench/collapse_labels.py`` recorded (``docs/bench/collapse_runs.jsonl``), labels
each from what its weights output on the test image (never from a signal the rule reads), replays
the real rule (:func:`ptycho_model.collapse.update`) over each run's per-epoch signals, and writes
the per-run table (``docs/bench/collapse_labels.md``). Prints the matrices.

Labels (docs/calibration.md, "The collapse rule, measured"), with C the constant output's amp
SSIM on the test image:
* *constant at epoch e*: the test image's stitched amplitude has std/mean < ``CONST_STD`` and its
  amp SSIM is within ``CONST_SSIM`` of C;
* *learned*: the best checkpoint's amp SSIM >= C + ``LEARNED``;
* **collapsed** (learned, then collapsed): learned, and constant from some epoch to the end; that
  epoch is the labelled collapse epoch;
* **broke** (learned, then broke): learned, not constant at the end, but its amp SSIM below C
  from some epoch to the last: worse than a constant output (a blow-up it never left). Added
  after the first labelling, for one run that fit none of the other classes;
* **recovered**: learned, not constant at the end, but constant at some epoch, or its amp SSIM fell
  below half of its gain over C (a spike) after it learned;
* **healthy**: learned, and neither of those;
* **never learned**: not learned (a constant output from the start, or a fit through the phase).
The positives are the collapsed and broke runs, the negatives the healthy and recovered ones; a
never-learned run is listed with what the rule did and counted apart.

    python bench/collapse_rule.py
    python bench/collapse_rule.py --quick    # smoke: the recorded runs of seeds 0 and 1, the
                                             # table to a temp file (nothing written to docs/)
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import _common

from ptycho_model import collapse
from ptycho_model.config import CollapseConfig
from tune_ptycho.analysis.crash_hunt import wilson

RUNS = _common.REPO / "docs" / "bench" / "collapse_runs.jsonl"
TABLE = _common.REPO / "docs" / "bench" / "collapse_labels.md"

CONST_STD = 0.02  # test-image amplitude std/mean under which the amplitude is constant
CONST_SSIM = 0.01  # and amp SSIM this close to the constant output's
LEARNED = 0.10  # best checkpoint's amp SSIM at least this far above the constant's

COLLAPSED, BROKE, RECOVERED, HEALTHY, NEVER = (
    "collapsed", "broke", "recovered", "healthy", "never learned")
POSITIVE = (COLLAPSED, BROKE)
BEFORE = CollapseConfig(amp_flat_spread=0.0)  # the rule before the amp_flat kind


@dataclass
class Run:
    rec: dict
    label: str
    collapse_epoch: int  # labelled; 0 when not collapsed
    half: str  # "A" (choose) or "B" (held out)


def constant_at(row: dict) -> bool:
    std, ssim, c = row.get("test_amp_std"), row.get("amp_ssim"), row.get("amp_ssim_constant")
    if std is None or ssim is None or c is None:  # a diverged epoch: no output to score
        return False
    return std < CONST_STD and abs(ssim - c) <= CONST_SSIM


def label(rec: dict) -> tuple[str, int]:
    rows = rec["rows"]
    c = next(r["amp_ssim_constant"] for r in rows if r.get("amp_ssim_constant") is not None)
    best = rec.get("best_ckpt_amp_ssim")
    if best is None or best < c + LEARNED:
        return NEVER, 0
    const = [constant_at(r) for r in rows]
    below = [r.get("amp_ssim") is not None and r["amp_ssim"] < c - CONST_SSIM for r in rows]
    for cls, marks in ((COLLAPSED, const), (BROKE, below)):
        if marks[-1]:
            start = len(marks)
            while start > 1 and marks[start - 2]:
                start -= 1
            return cls, rows[start - 1]["epoch"]
    peak, fell = c, False
    for r in rows:
        s = r.get("amp_ssim")
        if s is None:
            fell = True
            continue
        if peak >= c + LEARNED and s - c < 0.5 * (peak - c):
            fell = True
        peak = max(peak, s)
    return (RECOVERED if any(const) or fell else HEALTHY), 0


def flag(rec: dict, cfg: CollapseConfig, stat: str = "amp_iqr") -> tuple[str, int]:
    """(kind, epoch) the real rule raises on this run's signals at ``cfg`` ("none", 0 if never);
    ``stat``: the amplitude spread the amp_flat kind reads (the rule's own is ``amp_iqr``;
    ``amp_std`` shows what std/mean would have done)."""
    s = collapse.CollapseState()
    grace = rec["grace"] if cfg.grace is None else cfg.grace
    for r in rec["rows"]:
        v = r["val_loss"] if r["val_loss"] is not None else float("inf")
        collapse.update(s, cfg, grace, r["epoch"], v, r["output_std"] or 0.0,
                        r[stat] if r[stat] is not None else 0.0)
        if s.collapsed:
            return s.kind, s.collapse_epoch
    return "none", 0


@dataclass
class Score:
    tp: int
    fn: int
    fp: int
    tn: int
    latencies: list[int]
    never_flagged: int
    never: int

    def line(self) -> str:
        pos, neg = self.tp + self.fn, self.fp + self.tn
        fnr, fpr = wilson(self.fn, pos), wilson(self.fp, neg)
        lat = (f"latency median {statistics.median(self.latencies):g}, max "
               f"{max(self.latencies)} epochs" if self.latencies else "no latency")
        return (f"TP {self.tp}  FN {self.fn}  FP {self.fp}  TN {self.tn}; "
                f"FN rate {self.fn}/{pos} = {self.fn / max(pos, 1):.0%} "
                f"[{fnr[0]:.0%}, {fnr[1]:.0%}], "
                f"FP rate {self.fp}/{neg} = {self.fp / max(neg, 1):.0%} "
                f"[{fpr[0]:.0%}, {fpr[1]:.0%}]; {lat}; never learned: {self.never_flagged} of "
                f"{self.never} flagged")


def score(runs: list[Run], cfg: CollapseConfig, stat: str = "amp_iqr") -> Score:
    tp = fn = fp = tn = nf = nn = 0
    lat = []
    for r in runs:
        kind, epoch = flag(r.rec, cfg, stat)
        if r.label == NEVER:
            nn += 1
            nf += kind != "none"
        elif r.label in POSITIVE:
            if kind != "none":
                tp += 1
                lat.append(epoch - r.collapse_epoch)
            else:
                fn += 1
        elif kind != "none":
            fp += 1
        else:
            tn += 1
    return Score(tp, fn, fp, tn, lat, nf, nn)


def candidates(base: CollapseConfig):
    for std, ratio, patience in itertools.product((1e-3, 3e-3, 1e-2, 3e-2, 0.1),
                                                  (1.0, 1.1, 1.2, 1.25, 1.3, 1.4, 1.5),
                                                  (2, 3)):
        yield replace(base, amp_flat_spread=std, amp_flat_ratio=ratio, patience=patience)


def choose(runs: list[Run], base: CollapseConfig) -> tuple[CollapseConfig, Score]:
    """Fewest errors on ``runs``; ties to the lower patience and latency, then the loosest
    amplitude threshold's neighbour-safe middle (the larger amp_flat_ratio: further from a fit)."""
    def key(item):
        cfg, s = item
        return (s.fn + s.fp, cfg.patience, sum(s.latencies), -cfg.amp_flat_ratio,
                abs(cfg.amp_flat_spread - 1e-2))

    scored = [(cfg, score(runs, cfg)) for cfg in candidates(base)]
    return min(scored, key=key)


def commit_of(path: Path) -> str:
    try:
        return subprocess.run(["git", "log", "-1", "--format=%h %cs", "--", str(path)],
                              capture_output=True, text=True, cwd=_common.REPO).stdout.strip()
    except OSError:
        return "?"


def write_table(runs: list[Run], after: CollapseConfig, path: Path, source: Path) -> None:
    head = ["run", "half", "label", "best-ckpt amp SSIM", "final amp SSIM", "constant's",
            "final test amp std/mean", "labelled collapse epoch", "rule before", "rule after",
            "final val/best", "s"]
    lines = ["# The labelled set of the collapse rule", "",
             f"{len(runs)} real cpu-preset runs (14 epochs, no fault hook, never stopped), "
             "recorded "
             f"by `bench/collapse_labels.py` into `{source.name}` (last changed in commit "
             f"{commit_of(source) or 'not yet committed'}); labels and rules by "
             "`bench/collapse_rule.py`. Labels read only the test image's output (docs/"
             "calibration.md, \"The collapse rule, measured\"). Rule cells: kind@epoch.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        rows, rec = r.rec["rows"], r.rec
        last = rows[-1]
        b, a = flag(rec, BEFORE), flag(rec, after)
        best_v = min(x["val_loss"] for x in rows if x["val_loss"] is not None)
        cells = [rec["run"], r.half, r.label, _f(rec.get("best_ckpt_amp_ssim")),
                 _f(last.get("amp_ssim")), _f(last.get("amp_ssim_constant")),
                 _f(last.get("test_amp_std")), r.collapse_epoch or "",
                 f"{b[0]}@{b[1]}" if b[1] else "none", f"{a[0]}@{a[1]}" if a[1] else "none",
                 _f((last["val_loss"] or float("nan")) / best_v, 2), rec["seconds"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def _f(v, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--table", type=Path, default=None, help=f"default {TABLE}; --quick: a temp "
                                                             "file")
    ap.add_argument("--seeds", type=int, default=0,
                    help="read only the runs of training seeds below this (0: all)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: the recorded runs of seeds 0 and 1 (both halves), the "
                         "table to a temp file")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds = 2
        args.table = args.table or Path(tempfile.mkdtemp(prefix="tp-rule-quick-")) / "labels.md"
    args.table = args.table or TABLE
    return args


def main(argv: list[str] | None = None) -> int:
    """Label the recorded runs, score the rule before and after, write the table; 0."""
    args = parse(argv)
    _common.banner("collapse rule against labels", vars(args))
    recs = [json.loads(x) for x in args.runs.read_text().splitlines() if x.strip()]
    if args.seeds:
        recs = [r for r in recs if r["seed"] < args.seeds]
    if not recs:
        raise SystemExit(f"{args.runs}: no recorded run" + (f" of a seed below {args.seeds}"
                                                            if args.seeds else ""))
    runs = []
    for rec in sorted(recs, key=lambda r: r["run"]):
        lab, ep = label(rec)
        runs.append(Run(rec, lab, ep, "A" if rec["seed"] % 2 == 0 else "B"))
    counts = {k: sum(r.label == k for r in runs)
              for k in (COLLAPSED, BROKE, RECOVERED, HEALTHY, NEVER)}
    print(f"{len(runs)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for arm in sorted({r.rec["arm"] for r in runs}):
        mine = [r.label for r in runs if r.rec["arm"] == arm]
        print(f"  {arm:26s} " + ", ".join(f"{mine.count(k)} {k}" for k in counts if mine.count(k)))
    a = [r for r in runs if r.half == "A"]
    b = [r for r in runs if r.half == "B"]
    print(f"\nhalf A (even training seeds, to choose): {len(a)} runs; half B (odd, held out): "
          f"{len(b)} runs\n")
    after, sa = choose(a, CollapseConfig())
    print(f"chosen on A: amp_flat_spread={after.amp_flat_spread:g}, amp_flat_ratio="
          f"{after.amp_flat_ratio:g}, patience={after.patience} (ratio {after.ratio:g}, "
          f"flat_std {after.flat_std:g})")
    defaults = CollapseConfig()
    for name, cfg in (("before (ratio 2, flat 1e-3, no amp_flat)", BEFORE),
                      ("after (chosen on A)", after),
                      (f"the shipped defaults (amp_flat_spread={defaults.amp_flat_spread:g}, "
                       f"amp_flat_ratio={defaults.amp_flat_ratio:g}, patience "
                       f"{defaults.patience})", defaults)):
        print(f"\n{name}")
        for half, rs in (("A", a), ("B held out", b), ("all", runs)):
            print(f"  {half:11s} {score(rs, cfg).line()}")
    print("\nthe same rule reading std/mean (amp_std) instead of the interquartile spread, at the "
          "chosen thresholds")
    for half, rs in (("A", a), ("B held out", b), ("all", runs)):
        print(f"  {half:11s} {score(rs, after, 'amp_std').line()}")
    print("\nmisjudged at the shipped defaults:")
    for r in runs:
        if r.label == NEVER:
            continue
        kind, ep = flag(r.rec, defaults)
        if (kind != "none") != (r.label in POSITIVE):
            print(f"  {r.rec['run']:28s} {r.label:10s} rule {kind}@{ep}")
    write_table(runs, defaults, args.table, args.runs)
    print(f"\nwrote {args.table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
