"""The searcher's one reach into Ray's private OptunaSearch state, checked against this Ray.

``ray_optuna_state`` reads ``_ot_trials`` and ``_completed_trials``; if a Ray release renames or
retypes them, these tests fail here, by name, instead of a resume going wrong later.
"""

from __future__ import annotations

import pickle

import optuna

from ptycho_model import names
from search_spaces import SPACES, make_sampler
from tune_ptycho.run.searcher import ResumableOptunaSearch, ray_optuna_state


def _search(tmp_path) -> ResumableOptunaSearch:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    return ResumableOptunaSearch(space=SPACES["stage_a"], metric=names.OBJECTIVE, mode=names.MODE,
                                 sampler=make_sampler(0, 2), study_name="s", storage=storage)


def test_rays_private_state_is_where_the_searcher_reads_it(tmp_path):
    search = _search(tmp_path)
    config = search.suggest("t1")
    assert config and "model" in config
    ot_trials, completed = ray_optuna_state(search)
    assert isinstance(ot_trials["t1"], optuna.Trial) and completed == set()
    assert isinstance(search._completed_trials, set)  # the same object the searcher adds to

    search.on_trial_complete("t1", {names.OBJECTIVE: 0.5, names.COLLAPSED: 0, names.EPOCH: 3})
    (t,) = ot_trials["t1"].study.get_trials()
    assert t.state == optuna.trial.TrialState.COMPLETE and t.value == 0.5
    assert t.user_attrs["tune_trial_id"] == "t1" and t.user_attrs[names.EPOCH] == 3

    search.save(str(tmp_path / "searcher.pkl"))  # what Tune snapshots as searcher-state-*.pkl
    state = pickle.loads((tmp_path / "searcher.pkl").read_bytes())
    saved, _ = ray_optuna_state(state)
    assert {k: v.number for k, v in saved.items()} == {"t1": t.number}


def test_a_late_report_to_a_finished_study_trial_is_ignored(tmp_path):
    """A trial that finished after Tune's last snapshot reports again after a resume: stock
    OptunaSearch raises (UpdateFinishedTrialError), this one keeps the first value."""
    search = _search(tmp_path)
    search.suggest("t1")
    search.on_trial_complete("t1", {names.OBJECTIVE: 0.5})
    search.on_trial_result("t1", {names.OBJECTIVE: 9.0})
    search.on_trial_complete("t1", {names.OBJECTIVE: 9.0})
    (t,) = ray_optuna_state(search)[0]["t1"].study.get_trials()
    assert t.value == 0.5 and "t1" in ray_optuna_state(search)[1]


def test_the_collapse_aware_sampler_records_flagged_trials_as_infeasible():
    """Real Optuna: a trial told with ``collapsed`` (or ``diverged``) set carries the constraint
    > 0, any other < 0; TPE's feasibility split reads exactly that system attribute."""
    import optuna

    from search_spaces import make_sampler

    study = optuna.create_study(sampler=make_sampler(0, 2, collapse_aware=True))
    for attrs in ({"collapsed": 1}, {"collapsed": 0}, {"diverged": 1}, {}):
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        for k, v in attrs.items():
            t.set_user_attr(k, v)
        study.tell(t, 0.5)
    assert [list(t.system_attrs["constraints"]) for t in study.trials] == [
        [1.0], [-1.0], [1.0], [-1.0]]
    plain = optuna.create_study(sampler=make_sampler(0, 2))
    plain.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert "constraints" not in plain.trials[0].system_attrs
