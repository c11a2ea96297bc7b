"""optuna-dashboard on a finished experiment's study: its HTTP API serves the trials with the
user attributes tune-ptycho sets (outcome, collapse kind, the Tune trial id)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ptycho_model import names
from tune_ptycho.outcomes import OUTCOMES
from tune_ptycho.storage.experiment import ExperimentInfo

from procs import free_ports


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_optuna_dashboard_serves_the_study_and_its_user_attributes(tiny_experiment):
    info = ExperimentInfo.load(str(tiny_experiment))
    port = free_ports()[0]
    base = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).parent / "optuna-dashboard"
    p = subprocess.Popen([str(exe), info.study_url, "--host", "127.0.0.1", "--port", str(port),
                          "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                assert p.poll() is None, p.stdout.read()
                assert time.monotonic() < deadline, "optuna-dashboard did not answer"
                time.sleep(0.3)
        (study,) = [s for s in studies if s["study_name"] == info.study_name]
        detail = _get(f"{base}/api/studies/{study['study_id']}")
    finally:
        p.terminate()  # stopped by its own pid
        p.wait(timeout=30)

    trials = detail["trials"]
    assert len(trials) == 4 and {t["state"] for t in trials} == {"Complete"}
    attrs = [{a["key"]: a["value"] for a in t["user_attrs"]} for t in trials]
    dirs = {d.name.removeprefix("trial_") for d in tiny_experiment.glob("trial_*")}
    assert {a["tune_trial_id"] for a in attrs} == dirs
    for a in attrs:
        assert a["outcome"] in OUTCOMES
        assert names.COLLAPSE_KIND in a and names.BEST_VAL_LOSS in a
    union = {u["key"] for u in detail["union_user_attrs"]}
    assert {"outcome", "tune_trial_id", names.COLLAPSE_KIND} <= union
