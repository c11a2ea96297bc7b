"""What collapses: P(collapse) per searched parameter, the importance for collapse, the verdict.

A trial *collapsed* when the rule flagged it (``collapsed`` in its last row: outcome ratio or
flat). P(collapse) for a parameter is computed over the trials that have it (a conditional
parameter such as the warmup exists only where its condition held): per value for a choice,
in bins for a number (log-spaced where the range is log). The importance for collapse is
Optuna's ``get_param_importances`` with the collapse flag as the target; Optuna reads COMPLETE
trials only and skips a parameter absent from some of them, which is why collapsed trials stay
COMPLETE in the study. A *spike* is an epoch whose val_loss or train_loss exceeds
:data:`SPIKE_FACTOR` times the best val_loss before it: upstream's Stage A went 0.025 -> 17.
Every collapse count carries its Wilson 95% interval (:func:`wilson`; the crash hunt's P_crash and
the cliff map's too). The figure is :mod:`.collapse_plot`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ptycho_model import names

from ..outcomes import COLLAPSED, DIVERGED, FINISHED, STOPPED_EARLY, num
from .load import TrialRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SPIKE_FACTOR", "Bin", "collapse_bins", "collapse_epoch", "collapse_flag",
           "collapse_summary", "spike_epoch", "verdict_lines", "wilson"]

SPIKE_FACTOR = 10.0
WITH_RESULT = (FINISHED, STOPPED_EARLY, *COLLAPSED, DIVERGED)


def spike_epoch(t: TrialRecord) -> int | None:
    """The first epoch whose val_loss or train_loss is above SPIKE_FACTOR x the best val_loss of
    the epochs before it, or None."""
    best = math.inf
    for r in t.rows:
        e = num(r.get(names.EPOCH))
        losses = [num(r.get(names.VAL_LOSS)), num(r.get(names.TRAIN_LOSS))]
        if math.isfinite(best) and any(v > SPIKE_FACTOR * best for v in losses if math.isfinite(v)):
            return int(e)
        v = num(r.get(names.VAL_LOSS))
        if math.isfinite(v):
            best = min(best, v)
    return None


def collapse_epoch(t: TrialRecord) -> int | None:
    """The first epoch the rule flagged the trial collapsed, or None."""
    for r in t.rows:
        if num(r.get(names.COLLAPSED), 0.0) > 0:
            return int(num(r.get(names.EPOCH)))
    return None


@dataclass(frozen=True)
class Bin:
    param: str
    label: str  # a value, or a range "[lo, hi)"
    n: int  # trials with the parameter in this bin
    collapsed: int
    lo: float | None = None
    hi: float | None = None

    @property
    def p(self) -> float:
        return self.collapsed / self.n if self.n else math.nan


def _edges(x: list[float], log: bool, n_bins: int) -> list[float]:
    lo, hi = min(x), max(x)
    if lo == hi:
        return [lo, hi]
    if log and lo > 0:
        a, b = math.log10(lo), math.log10(hi)
        return [10 ** (a + (b - a) * i / n_bins) for i in range(n_bins + 1)]
    return [lo + (hi - lo) * i / n_bins for i in range(n_bins + 1)]


def collapse_bins(df: pd.DataFrame, kinds: dict[str, str], n_bins: int = 4) -> list[Bin]:
    """P(collapse) per parameter: per value (choices) or per bin (numbers), over the trials with
    a result that have the parameter."""
    import pandas as pd

    d = df[df["outcome"].isin(WITH_RESULT)]
    col = d["outcome"].isin(COLLAPSED)
    out: list[Bin] = []
    for p, kind in kinds.items():
        if p not in d:
            continue
        present = d[p].notna()
        if kind == "categorical":
            for v in sorted({str(x) for x in d.loc[present, p]}):
                m = present & (d[p].astype(str) == v)
                out.append(Bin(p, v, int(m.sum()), int((m & col).sum())))
            continue
        x = pd.to_numeric(d[p], errors="coerce")
        ok = x.notna()
        if not ok.any():
            continue
        edges = _edges(list(x[ok]), kind == "log", min(n_bins, max(1, int(ok.sum()) // 2)))
        for i in range(len(edges) - 1):
            lo, hi = edges[i], edges[i + 1]
            last = i == len(edges) - 2
            m = ok & (x >= lo) & ((x <= hi) if last else (x < hi))
            out.append(Bin(p, f"[{lo:.3g}, {hi:.3g}{']' if last else ')'}", int(m.sum()),
                           int((m & col).sum()), lo, hi))
    return out


def collapse_summary(finals: list[dict[str, Any]]) -> str:
    """One line over the trials' final metrics: how many collapsed, of which kind, after what
    best (``collapsed 3 of 16 (ratio 2, flat 1), after best val_loss 0.116-0.152 at epochs
    2-7``)."""
    done = [m for m in finals if m]
    col = [m for m in done if num(m.get(names.COLLAPSED), 0.0) > 0]
    if not col:
        return f"collapsed 0 of {len(done)}"
    kinds: dict[str, int] = {}
    for m in col:
        k = str(m.get(names.COLLAPSE_KIND))
        kinds[k] = kinds.get(k, 0) + 1
    best = [num(m.get(names.BEST_VAL_LOSS)) for m in col]
    ep = [int(num(m.get(names.BEST_EPOCH), 0)) for m in col]

    def span(xs: list, f) -> str:
        return f(min(xs)) if min(xs) == max(xs) else f"{f(min(xs))}-{f(max(xs))}"

    return (f"collapsed {len(col)} of {len(done)} ("
            + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
            + f"), after best val_loss {span(best, lambda v: f'{v:.3g}')} at epoch"
            + ("s " if len(set(ep)) > 1 else " ") + span(ep, str))


def collapse_flag(trial) -> float:
    """The importance target: 1 for a study trial the rule flagged collapsed, else 0."""
    return float(num(trial.user_attrs.get(names.COLLAPSED), 0.0) > 0)


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials (NaN, NaN for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def _count(k: int, n: int) -> str:
    """``3 of 4 [0.30, 0.95]``: a count with its Wilson 95% interval."""
    lo, hi = wilson(k, n)
    return f"{k} of {n} [{lo:.2f}, {hi:.2f}]"


def _decided(a: tuple[int, int], b: tuple[int, int]) -> str:
    """'' when the two counts' 95% intervals do not overlap; else the words that say so."""
    (alo, ahi), (blo, bhi) = wilson(*a), wilson(*b)
    return "" if ahi < blo or bhi < alo else " (the intervals overlap: not decided)"


def _split_sentence(p: str, x: list[tuple[float, bool]]) -> tuple[float, str] | None:
    """The threshold on a numeric parameter that best separates collapsed trials from the rest."""
    x = sorted(x)
    best: tuple[float, str] | None = None
    for i in range(1, len(x)):
        if x[i][0] == x[i - 1][0]:
            continue
        t = math.sqrt(x[i][0] * x[i - 1][0]) if x[i - 1][0] > 0 else (x[i][0] + x[i - 1][0]) / 2
        above = [c for v, c in x if v > t]
        below = [c for v, c in x if v <= t]
        if len(above) < 2 or len(below) < 2:  # a split on one trial says little
            continue
        pa, pb = sum(above) / len(above), sum(below) / len(below)
        gap = abs(pa - pb)
        if best is None or gap > best[0]:
            hi_side, lo_side = (above, below) if pa >= pb else (below, above)
            word = "above" if pa >= pb else "at or below"
            other = "below" if pa >= pb else "above"
            hi, lo = (sum(hi_side), len(hi_side)), (sum(lo_side), len(lo_side))
            best = (gap, f"{p} {word} {t:.3g} collapsed {_count(*hi)} trials; {other} it, "
                         f"{_count(*lo)}{_decided(hi, lo)}")
    return best


def _flat_amplitude_unflagged(d: pd.DataFrame) -> int:
    """Trials whose best weights scored above the constant output's amp SSIM and whose final
    weights score it (within 0.01): the collapse fingerprint, read from weights, not flags."""
    import pandas as pd

    cols = (names.AMP_SSIM, names.BEST_CKPT_PREFIX + names.AMP_SSIM, names.AMP_SSIM_CONSTANT)
    if any(c not in d for c in cols):
        return 0
    end, best, const = (pd.to_numeric(d[c], errors="coerce") for c in cols)
    return int(((end - const).abs() < 0.01).where(best > const + 0.05, False).sum())


def verdict_lines(df: pd.DataFrame, kinds: dict[str, str], bins: list[Bin]) -> list[str]:
    """The section's verdict in words, from the numbers: the split that best separates collapsed
    trials, and the settings under which none collapsed."""
    import pandas as pd

    d = df[df["outcome"].isin(WITH_RESULT)]
    col = d["outcome"].isin(COLLAPSED)
    n, k = len(d), int(col.sum())
    missed = _flat_amplitude_unflagged(d[~col])
    miss = (f" {missed} trial(s) the rule did not flag learned and then ended with the constant "
            "output's amp SSIM (within 0.01), read from weights (docs/calibration.md, \"The "
            "collapse rule, measured\").") if missed else ""
    if k == 0:
        return [f"No trial of {n} was flagged by the collapse rule.{miss}"]
    splits = []
    for p, kind in kinds.items():
        if p in d and kind != "categorical":
            x = pd.to_numeric(d[p], errors="coerce")
            pts = [(float(v), bool(c)) for v, c in zip(x, col, strict=True) if pd.notna(v)]
            if len(pts) >= 3 and (s := _split_sentence(p, pts)):
                splits.append(s)
    lines = [f"{k} of {n} trials collapsed (95% intervals in brackets, Wilson's).{miss}"]
    if splits:
        lines.append(max(splits)[1] + ".")
    safe = [b for b in bins if b.lo is None and b.n >= 2 and b.collapsed == 0]
    risky = [b for b in bins if b.lo is None and b.n >= 2 and b.p >= 0.5]
    if safe:
        safest = sorted(safe, key=lambda b: -b.n)[:3]
        lines.append("No collapse with " + ", ".join(
            f"{b.param}={b.label} ({_count(0, b.n)})" for b in safest) + ".")
    if risky:
        lines.append("Most collapses with " + ", ".join(
            f"{b.param}={b.label} ({_count(b.collapsed, b.n)})"
            for b in sorted(risky, key=lambda b: -b.p)[:3]) + ".")
    if safe or risky or splits:
        lines.append("A setting moves P(collapse) only where its interval clears the other's; "
                     "with this many trials these are leads, not findings (the cliff map and "
                     "the crash hunt count seeds).")
    return [" ".join(lines)]
