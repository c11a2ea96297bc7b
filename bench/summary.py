"""BENCHMARKS.md's summary table, generated from ``docs/bench/results/*.json``.

    python bench/summary.py           # rewrite the table between the markers in place
    python bench/summary.py --check   # exit 1 if BENCHMARKS.md's table differs from the results

The table sits between :data:`BEGIN` and :data:`END`; nothing between them is written by hand.
``tests/test_bench_summary.py`` fails while the two differ, and when a result is stale: measured
at a commit older than the last change to the code it measures (:func:`stale_reason`). The rows
of scripts not yet re-measured with repeats are hand-written in a table of their own, between
:data:`MANUAL_BEGIN` and :data:`MANUAL_END`; ``--check`` also fails while a script has both a
result and a hand-written row there. Nothing here imports torch or Ray.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from _results import REPO, RESULTS_DIR, read_results

DOC = REPO / "BENCHMARKS.md"
BEGIN = "<!-- summary:begin -->"
END = "<!-- summary:end -->"
MANUAL_BEGIN = "<!-- unmeasured:begin -->"
MANUAL_END = "<!-- unmeasured:end -->"
HEADER = ["script", "figure", "median (min–max, n)", "target", "verdict", "commit", "date",
          "machine"]
EMPTY = ("No result recorded with repeats yet: run the timing scripts (the commands above), then "
         "`python bench/summary.py`.")


def num(x: float) -> str:
    """A figure's number as the table shows it: 3 significant digits, no exponent below 1e6."""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def spread_cell(f: dict[str, Any]) -> str:
    unit = f" {f['unit']}" if f.get("unit") else ""
    return f"{num(f['median'])}{unit} ({num(f['min'])}–{num(f['max'])}, n {f['n']})"


def machine_cell(r: dict[str, Any]) -> str:
    m = r.get("machine") or {}
    load = r.get("load_start") or []
    parts = [m.get("cpu", "?"), f"{m.get('cores', '?')} cores"]
    if load:
        parts.append(f"load {load[0]:.2f}")
    return ", ".join(parts)


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """One row per figure of every result, in the results' order."""
    out = []
    for r in results:
        for f in r["figures"]:
            out.append([f"`{r['script']}`", f["name"], spread_cell(f), f.get("target") or "-",
                        f["verdict"], r["commit"][:7], r["date"][:10], machine_cell(r)])
    return out


def markdown(header: list[str], body: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *body]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    """What goes between the markers (without them)."""
    return markdown(HEADER, rows(results)) if results else EMPTY


def between(doc: str, begin: str, end: str, path: Path = DOC) -> tuple[str, str, str]:
    """(before ``begin``, the text between the markers, from ``end`` on)."""
    if doc.count(begin) != 1 or doc.count(end) != 1:
        raise ValueError(f"{path} must hold exactly one {begin!r} and one {end!r}")
    head, _, rest = doc.partition(begin)
    inner, _, tail = rest.partition(end)
    return head, inner, tail


def render(doc: str, results: list[dict[str, Any]]) -> str:
    """``doc`` with the text between :data:`BEGIN` and :data:`END` rendered from ``results``."""
    head, _, tail = between(doc, BEGIN, END)
    return f"{head}{BEGIN}\n{table(results)}\n{END}{tail}"


def manual_scripts(doc: str) -> list[str]:
    """The scripts named in the first cell of the hand-written table's rows."""
    _, inner, _ = between(doc, MANUAL_BEGIN, MANUAL_END)
    out = []
    for line in inner.splitlines():
        if line.startswith("| `bench/"):
            out += re.findall(r"`(bench/[\w./]+\.py)`", line.split("|")[1])
    return out


def doubled(doc: str, results: list[dict[str, Any]]) -> list[str]:
    """Scripts with a result that still have a hand-written row."""
    measured = {r["script"] for r in results}
    return sorted(set(manual_scripts(doc)) & measured)


# ------------------------------------------------------------------ staleness
def git(*args: str) -> subprocess.CompletedProcess:
    """``git ARGS`` in the checkout; FileNotFoundError when git is not installed."""
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)


def stale_reason(result: dict[str, Any]) -> str | None:
    """Why ``result`` cannot be believed of today's code, or None when it can.

    Stale: measured on a working tree with uncommitted changes to its modules (``dirty``), a
    ``--quick`` smoke, or a commit that is not an ancestor of (or equal to) the last commit
    touching any of its ``modules``. A commit missing from this clone (a shallow clone) is a
    reason too: it cannot be checked."""
    script, commit, modules = result["script"], result.get("commit", ""), result["modules"]
    if result.get("quick"):
        return f"{script}: a --quick smoke, not a measurement"
    if result.get("dirty"):
        return (f"{script}: measured at {commit[:10]} on a working tree with uncommitted changes "
                f"to {', '.join(modules)}; commit them and measure again")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        return f"{script}: its result names no commit (got {commit!r})"
    if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        shallow = git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        return (f"{script}: its commit {commit[:10]} is not in this clone"
                + (" (a shallow clone: fetch the full history, git fetch --unshallow)"
                   if shallow else "") + "; cannot tell whether the figure is stale")
    last = git("log", "-1", "--format=%H", "--", *modules)
    if last.returncode != 0 or not last.stdout.strip():
        return (f"{script}: git log found no commit touching {', '.join(modules)}: "
                f"{last.stderr.strip() or 'no history'}")
    newest = last.stdout.strip()
    if git("merge-base", "--is-ancestor", newest, commit).returncode != 0:
        subject = git("log", "-1", "--format=%h %cs %s", newest).stdout.strip()
        return (f"{script}: measured at {commit[:10]}, but {', '.join(modules)} changed since "
                f"in {subject[:120]}; run python {script} again")
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if BENCHMARKS.md's generated table is out of date")
    ap.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    doc = DOC.read_text()
    results = read_results(args.results)
    new = render(doc, results)
    both = doubled(doc, results)
    if both:
        print(f"{DOC}: {', '.join(both)} have a result in {args.results} and a hand-written "
              "row in the 'not yet re-measured' table: delete the row", file=sys.stderr)
    if args.check:
        if new != doc:
            print(f"{DOC}: the summary table differs from {args.results}; run "
                  "python bench/summary.py", file=sys.stderr)
        return 1 if new != doc or both else 0
    if new != doc:
        DOC.write_text(new)
        print(f"rewrote the summary table in {DOC} from {len(results)} result(s)")
    return 1 if both else 0


if __name__ == "__main__":
    sys.exit(main())
