"""BENCHMARKS.md's summary table cannot go stale.

(a) The block between ``<!-- summary:begin -->`` and ``<!-- summary:end -->`` is exactly what
``python bench/summary.py`` renders from ``docs/bench/results/*.json`` (so it is never edited by
hand), and no script keeps a hand-written row once it has a result.
(b) Every result was measured on today's code: its commit is the last commit touching any of its
``modules`` or a descendant of it (``git merge-base --is-ancestor``), on a clean tree, and not a
``--quick`` smoke. Without git, or in a clone that lacks a result's commit (a shallow one), this
fails and says so: it never skips.
(c) The verdict rule of ``bench/_results.figure``: met / missed / not resolvable / reported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import _results  # noqa: E402
import summary  # noqa: E402


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def _result(**over) -> dict:
    """A result as write_result writes it, for the unit tests."""
    fig = _results.figure("ratio A / B", [1.0, 1.02, 1.04], target=_results.Target("<=", 1.1))
    base = {"script": "bench/example.py", "modules": ["ptycho_model"], "settings": {},
            "figures": [vars(fig)], "load_start": [0.03, 0.1, 0.2], "commit": "a" * 40,
            "dirty": False, "date": "2026-12-08 10:00:00 UTC", "quick": False,
            "machine": {"cpu": "AMD EPYC 7B13", "cores": "2 usable of 2"}}
    return {**base, **over}


# ------------------------------------------------------------------ (a) the block is generated
def test_benchmarks_md_block_is_the_rendering_of_the_results():
    doc = summary.DOC.read_text()
    results = _results.read_results()
    assert summary.render(doc, results) == doc, (
        "BENCHMARKS.md's summary block differs from docs/bench/results/*.json: run "
        "python bench/summary.py (the block is generated; do not edit it by hand)")
    both = summary.doubled(doc, results)
    assert not both, (f"{both} have a recorded result and still a hand-written row in "
                      "BENCHMARKS.md's 'not yet re-measured' table: delete the row")


def test_rendering_shows_each_figure_with_its_spread_and_verdict():
    doc = f"intro\n{summary.BEGIN}\nold text\n{summary.END}\ntail\n"
    out = summary.render(doc, [_result()])
    block = out.split(summary.BEGIN)[1].split(summary.END)[0]
    assert out.startswith("intro\n") and out.endswith(f"{summary.END}\ntail\n")
    assert "| script | figure | median (min–max, n) |" in block
    assert ("| `bench/example.py` | ratio A / B | 1.02 (1–1.04, n 3) | <= 1.1 | met | aaaaaaa "
            "| 2026-12-08 | AMD EPYC 7B13, 2 usable of 2 cores, load 0.03 |") in block
    assert summary.render(out, [_result()]) == out  # idempotent
    assert summary.EMPTY in summary.render(doc, [])


def test_render_refuses_a_document_without_the_markers():
    with pytest.raises(ValueError, match="summary:begin"):
        summary.render("no markers here\n", [])


def test_a_script_with_a_result_and_a_hand_written_row_is_doubled():
    doc = (f"{summary.MANUAL_BEGIN}\n| script | target |\n|---|---|\n"
           "| `bench/example.py` + `bench/other.py` | x |\n| `bench/third.py` | y |\n"
           f"{summary.MANUAL_END}\n")
    assert summary.manual_scripts(doc) == ["bench/example.py", "bench/other.py",
                                           "bench/third.py"]
    assert summary.doubled(doc, [_result()]) == ["bench/example.py"]
    assert summary.doubled(doc, [_result(script="bench/new.py")]) == []


# ------------------------------------------------------------------ (b) no stale figure
def _require_git() -> None:
    if shutil.which("git") is None:
        pytest.fail("git is not installed: cannot tell whether the recorded benchmark results "
                    "are stale (install git; this check never skips)")
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT,
                            capture_output=True, text=True)
    if inside.stdout.strip() != "true":
        pytest.fail(f"{ROOT} is not a git checkout: cannot tell whether the recorded benchmark "
                    f"results are stale ({inside.stderr.strip()})")


def test_every_recorded_result_is_measured_on_todays_code():
    results = _results.read_results()
    if not results:
        return  # nothing recorded yet: nothing can be stale
    _require_git()
    reasons = [r for r in (summary.stale_reason(res) for res in results) if r]
    assert not reasons, "stale benchmark results:\n" + "\n".join(reasons)


def test_a_result_at_head_is_fresh():
    _require_git()
    assert summary.stale_reason(_result(commit=_git("rev-parse", "HEAD"))) is None


def test_a_result_older_than_its_modules_is_stale():
    _require_git()
    last = _git("log", "-1", "--format=%H", "--", "ptycho_model")
    parent = subprocess.run(["git", "rev-parse", f"{last}^"], cwd=ROOT, capture_output=True,
                            text=True)
    commit = parent.stdout.strip() if parent.returncode == 0 else "0" * 40
    reason = summary.stale_reason(_result(commit=commit))
    assert reason is not None and reason.startswith("bench/example.py: ")
    assert "changed since" in reason or "not in this clone" in reason


def test_a_commit_missing_from_the_clone_fails_and_says_so():
    _require_git()
    reason = summary.stale_reason(_result(commit="0" * 40))
    assert reason is not None and "not in this clone" in reason and "0000000000" in reason


def test_a_dirty_or_quick_result_is_stale():
    dirty = summary.stale_reason(_result(dirty=True))
    assert dirty is not None and "uncommitted changes" in dirty
    quick = summary.stale_reason(_result(quick=True))
    assert quick is not None and "--quick" in quick


# ------------------------------------------------------------------ (c) the verdict rule
@pytest.mark.parametrize(("repeats", "target", "verdict"), [
    ([1.01, 1.05, 1.09], ("<=", 1.10), "met"),
    ([1.10, 1.10], ("<=", 1.10), "met"),  # on the bound: inside an inclusive target
    ([1.10, 1.10], ("<", 1.10), "missed"),  # ... and outside a strict one
    ([1.11, 1.30], ("<=", 1.10), "missed"),
    ([1.05, 1.12], ("<=", 1.10), "not resolvable"),  # straddles: noise larger than the margin
    ([1.8, 1.9], (">=", 1.7), "met"),
    ([1.5, 1.6], (">", 1.7), "missed"),
    ([1.6, 1.8], (">=", 1.7), "not resolvable"),
    ([3.0, 4.0], None, "reported"),
])
def test_figure_verdict_is_decided_from_the_spread(repeats, target, verdict):
    t = _results.Target(*target) if target else None
    f = _results.figure("x", repeats, target=t)
    assert f.verdict == verdict
    assert (f.min, f.max, f.n) == (min(repeats), max(repeats), len(repeats))
    assert f.target == (None if t is None else str(t))
    assert f.verdict in _results.VERDICTS


def test_figure_refuses_what_it_cannot_decide():
    with pytest.raises(ValueError, match="no repeats"):
        _results.figure("x", [])
    with pytest.raises(ValueError, match=r"finite.*nan"):
        _results.figure("x", [1.0, float("nan")])
    with pytest.raises(ValueError, match="'=='"):
        _results.Target("==", 1.0)
