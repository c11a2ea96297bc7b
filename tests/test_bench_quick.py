"""Every script in ``bench/`` runs its ``--quick`` smoke: the real code path at the smallest size.

The scripts run in this process through their ``main(argv)``, not as fresh Pythons: the ones that
need Ray join the session's Ray (``LocalRay`` and the CLI use an already initialised Ray and leave
it running), and ``startup.py``, whose subject is a fresh driver process, starts one child that
joins that Ray too (``--ray-address``). Each test checks what its script produced: a timing
script's JSON result (quick, figures with n >= 1 and finite values, verdicts of the allowed set,
a RESULT line per figure, the spread table), another script's printed table or the file it
wrote; and that nothing was written into ``docs/bench/``. No figure is compared with a target:
timings belong to the benchmarks themselves.

``bench/gpu_stage_a.py`` has its own test (tests/test_gpu_stage_a.py), ``bench/summary.py`` too
(tests/test_bench_summary.py); the replay scripts are tested with their own code.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DOCS_BENCH = ROOT / "docs" / "bench"
# what the scripts write into docs/bench/ when they are not a --quick smoke
DOCS_OUTPUTS = ("results", "cliff", "collapse_runs.jsonl", "collapse_labels.md")
NOT_HERE = {"gpu_stage_a", "summary"}  # tested in their own files
VERDICTS = ("met", "missed", "not resolvable", "reported")


def _load(stem: str) -> ModuleType:
    """``bench/<stem>.py`` as a module (``bench/`` on sys.path, as when run as a script)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    name = f"bench_quick_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{stem}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _by_value(*mods: ModuleType) -> None:
    """Ship these modules' functions to Ray's workers by value: run as a script, a bench module
    is ``__main__`` (pickled by value); loaded here it has a name the workers cannot import."""
    from ray import cloudpickle

    for m in mods:
        cloudpickle.register_pickle_by_value(m)


def _docs_state() -> dict[str, int]:
    """Path -> mtime of the scripts' outputs under docs/bench/ (other files there may be
    written by other work while the tests run)."""
    out = {}
    for name in DOCS_OUTPUTS:
        p = DOCS_BENCH / name
        for q in [p, *(p.rglob("*") if p.is_dir() else [])]:
            if q.exists():
                out[str(q)] = q.stat().st_mtime_ns
    return out


@pytest.fixture
def quick(capsys):
    """Run ``bench/<stem>.py``'s ``main(argv)`` here; its stdout. Restores the environment and
    torch's thread count, and checks that docs/bench/ was left alone."""
    import torch

    env, threads, before = dict(os.environ), torch.get_num_threads(), _docs_state()

    def run(stem: str, argv: list[str], ray: bool = False) -> str:
        mod = _load(stem)
        if ray:
            _by_value(mod, *(sys.modules[m] for m in ("_common", "_peer_arms")
                             if m in sys.modules))
        code = mod.main(argv)
        out = capsys.readouterr().out
        assert code == 0, f"bench/{stem}.py {' '.join(argv)} exited {code}:\n{out[-3000:]}"
        return out

    try:
        yield run
    finally:
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)
    assert _docs_state() == before, "a --quick run wrote into docs/bench/"


def check_result(path: Path, script: str, out: str) -> dict:
    """A timing script's quick JSON: what the issue asks of every result, and its printout."""
    assert path.is_file(), f"{script} wrote no result at {path}"
    res = json.loads(path.read_text())
    assert res["script"] == script and res["quick"] is True
    assert len(res["load_start"]) == 3 and res["figures"] and res["modules"]
    assert all((ROOT / m).exists() for m in res["modules"])
    assert len(res["commit"]) == 40 and res["date"] and res["machine"].get("cpu")
    for f in res["figures"]:
        values = [*f["repeats"], f["min"], f["median"], f["max"]]
        assert f["n"] >= 1 and len(f["repeats"]) == f["n"], f
        assert all(isinstance(x, float) and math.isfinite(x) for x in values), f
        assert f["min"] <= f["median"] <= f["max"], f
        assert f["verdict"] in VERDICTS and (f["target"] is None) == (f["verdict"] == "reported")
        assert f"RESULT {f['name']}: " in out
    assert "spread over 1 repeat(s) per arm, run interleaved" in out
    assert f"wrote {path}" in out
    return res


# ------------------------------------------------------------------ no Ray
def test_throughput_quick(quick):
    out = quick("throughput", ["--quick", "--presets", "tiny"])
    assert "Simulation (simulate(cfg.data)" in out and "Whole epochs through fit" in out
    assert any(line.startswith("tiny ") for line in out.splitlines())


def test_kernels_quick(quick):
    out = quick("kernels", ["--quick", "--no-peer", "--options", "default"])
    assert "measured BLAS peak (1 thread):" in out
    assert "RESULT step GFLOP/s / measured 1-thread BLAS peak, tiny: " in out


def test_checkpoint_size_quick(quick):
    out = quick("checkpoint_size", ["--quick"])
    lines = out.splitlines()
    assert any(line.startswith("preset  arch") and "checkpoint MB" in line for line in lines)
    assert any(line.startswith("tiny ") for line in lines)


def test_probe_twin_quick(quick):
    out = quick("probe_twin", ["--quick"])
    assert "ideal_disk: amp SSIM" in out and "asymmetric: amp SSIM" in out


def test_collapse_labels_quick(quick, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_PTYCHO_BENCH_CACHE", str(tmp_path / "cache"))
    out_file = tmp_path / "runs.jsonl"
    out = quick("collapse_labels", ["--quick", "--out", str(out_file)])
    (rec,) = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert rec["arm"].startswith("healthy") and len(rec["rows"]) == 2
    assert "recorded 1 runs" in out


def test_collapse_rule_quick(quick, tmp_path):
    table = tmp_path / "labels.md"
    out = quick("collapse_rule", ["--quick", "--table", str(table)])
    assert "chosen on A:" in out and "B held out" in out and f"wrote {table}" in out
    assert table.read_text().startswith("# The labelled set of the collapse rule")


def test_diagnostics_cost_quick(quick, tmp_path):
    out = quick("diagnostics_cost", ["--quick", "--out-dir", str(tmp_path)])
    res = check_result(tmp_path / "diagnostics_cost.json", "bench/diagnostics_cost.py", out)
    assert res["figures"][0]["target"] == "<= 1.03"


# ------------------------------------------------------------------ on the session's Ray
@pytest.mark.slow
def test_overhead_quick(quick, ray_session, tmp_path):
    out = quick("overhead", ["--quick", "--out-dir", str(tmp_path)], ray=True)
    res = check_result(tmp_path / "overhead.json", "bench/overhead.py", out)
    assert res["figures"][0]["target"] == "<= 1.1"


@pytest.mark.slow
def test_parallel_quick(quick, ray_session, tmp_path):
    out = quick("parallel", ["--quick", "--out-dir", str(tmp_path)], ray=True)
    res = check_result(tmp_path / "parallel.json", "bench/parallel.py", out)
    assert res["figures"][0]["target"] == ">= 1.7"


@pytest.mark.slow
def test_early_stopping_quick(quick, ray_session, tmp_path):
    out = quick("early_stopping", ["--quick", "--out-dir", str(tmp_path)], ray=True)
    res = check_result(tmp_path / "early_stopping.json", "bench/early_stopping.py", out)
    names = {f["name"] for f in res["figures"]}
    assert {"epochs early / full", "best objective early / full",
            "hyperband / ASHA epochs"} <= names


@pytest.mark.slow
def test_startup_quick(quick, shared_ray, tmp_path):
    out = quick("startup", ["--quick", "--modes", "off", "--ray-address", shared_ray.address,
                            "--out-dir", str(tmp_path)])
    res = check_result(tmp_path / "startup.json", "bench/startup.py", out)
    assert [f["name"] for f in res["figures"]] == ["dashboard off: t(first epoch end) - t0",
                                                   "dashboard off: t(trial start) - t0"]


@pytest.mark.slow
def test_vs_peers_quick(quick, ray_session):
    # random-full is ray-defaults' code without ASHA; one trial at a time reuses each arm's actor
    out = quick("vs_peers", ["--quick", "--arms", "tune-ptycho,ray-defaults,optuna-alone,hand-run",
                             "--max-concurrent", "1"], ray=True)
    assert "best value any arm found:" in out and "RESULT target met against every peer:" in out


@pytest.mark.slow
def test_collapse_aware_quick(quick, ray_session):
    out = quick("collapse_aware", ["--quick"], ray=True)
    assert "collapse share, aware against plain:" in out
    assert "seed 0 plain" in out and "seed 0 aware" in out


@pytest.mark.slow
def test_cliff_map_quick(quick, ray_session, tmp_path):
    out = quick("cliff_map", ["--quick", "--out", str(tmp_path)], ray=True)
    assert {"cliff.csv", "cliff.png", "report.md"} <= {p.name for p in tmp_path.iterdir()}
    assert f"copied to {tmp_path}" in out


def test_collapse_recovery_quick(quick, tiny_experiment):
    """On the session's finished tiny study (its own --quick study costs one more Ray study)."""
    out = quick("collapse_recovery", ["--quick", str(tiny_experiment)])
    assert "flagged trials recovered" in out and "(4 trials read)" in out


# ------------------------------------------------------------------ every script is here
def test_every_bench_script_has_a_quick_test():
    scripts = {p.stem for p in BENCH.glob("*.py")
               if not p.stem.startswith(("_", "replay")) and p.stem not in NOT_HERE}
    tested = {name.removeprefix("test_").removesuffix("_quick")
              for name, obj in globals().items()
              if name.startswith("test_") and name.endswith("_quick") and callable(obj)}
    assert scripts == tested, (f"bench scripts without a --quick test: {sorted(scripts - tested)}; "
                               f"tests of no script: {sorted(tested - scripts)}")
