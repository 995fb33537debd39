"""All methods in one Tune experiment: each keeps its own search and its own early stopping."""
import json
from types import SimpleNamespace

import pandas as pd
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

from raysweep.artifacts import LocalStore
from raysweep.prepare.scenario import Scenario
from raysweep.results.tables import load_tables
from raysweep.sweep.dispatch import MethodDispatchScheduler, MethodDispatchSearch, next_method, read_decisions
from raysweep.sweep.search import SweepConfig, run_sweep, search_seed


def _trial(tid, method):
    return SimpleNamespace(trial_id=tid, config={"method": method}, status="RUNNING", evaluated_params={})


def _asha():
    return ASHAScheduler(time_attr="step", max_t=5, grace_period=1, reduction_factor=3)


def _rung_decisions(scheduler):
    """Three trials reach ASHA's first rung (step 1): two SCRUB trials with a good objective, then one GD
    trial with a worse one. Returns the decision for the GD trial."""
    scheduler.set_search_properties("objective", "min")
    trials = [_trial("s1", "scrub"), _trial("s2", "scrub"), _trial("g1", "gd")]
    for t in trials:
        scheduler.on_trial_add(None, t)
    out = {}
    for t, obj in zip(trials, (0.01, 0.02, 0.5)):
        out[t.trial_id] = scheduler.on_trial_result(None, t, {"step": 1, "objective": obj,
                                                              "training_iteration": 1})
    return out["g1"]


def test_the_early_stopper_never_judges_a_trial_on_another_methods_evidence():
    shared = _asha()  # one ASHA for all methods: the GD trial is stopped by SCRUB's results
    assert _rung_decisions(shared) == TrialScheduler.STOP
    per_method = MethodDispatchScheduler({"gd": _asha(), "scrub": _asha(), "ssd": None})
    assert _rung_decisions(per_method) == TrialScheduler.CONTINUE  # the only GD result at its rung
    judged = {d["trial_id"]: d["judged_on"] for d in per_method.decisions}
    assert judged == {"s1": ["s1"], "s2": ["s1", "s2"], "g1": ["g1"]}  # each on its own method's trials
    # the record comes from the stopper's own state: one ASHA behind both methods shows what it judged on
    one = _asha()
    wrong = MethodDispatchScheduler({"gd": one, "scrub": one})
    assert _rung_decisions(wrong) == TrialScheduler.STOP
    assert {d["trial_id"]: d["judged_on"] for d in wrong.decisions}["g1"] == ["g1", "s1", "s2"]
    ssd = _trial("x1", "ssd")
    per_method.on_trial_add(None, ssd)
    assert per_method.on_trial_result(None, ssd, {"step": 1, "objective": 9.0}) == TrialScheduler.CONTINUE


def test_the_early_stopping_record_survives_a_resume(tmp_path):
    """Tune restores a sweep's scheduler as it was pickled when the sweep started (tuner.pkl): the
    decisions file written since must keep the first session's entries."""
    import pickle

    def decide(s, tid, obj):
        t = _trial(tid, "gd")
        s.on_trial_add(None, t)
        s.on_trial_result(None, t, {"step": 1, "objective": obj, "training_iteration": 1})

    first = MethodDispatchScheduler({"gd": _asha()}, root=tmp_path)
    first.set_search_properties("objective", "min")
    at_start = pickle.dumps(first)
    decide(first, "g1", 0.1)
    decide(first, "g2", 0.5)
    restored = pickle.loads(at_start)
    decide(restored, "g3", 0.2)
    saved = read_decisions(tmp_path)
    assert [(d["trial_id"], d["action"]) for d in saved] == [("g1", "continue"), ("g2", "stop"), ("g3", "continue")]
    assert saved[1]["judged_on"] == ["g1", "g2"] and saved[2]["judged_on"] == ["g3"]  # what each stopper had
    with open(tmp_path / "early_stopping.jsonl", "a") as f:
        f.write('{"trial_id": "g4", "meth')  # a line cut by a kill
    assert len(read_decisions(tmp_path)) == 3
    decide(restored, "g6", 0.4)  # a resumed sweep appends after the cut line: both whole lines are read
    assert [d["trial_id"] for d in read_decisions(tmp_path)] == ["g1", "g2", "g3", "g6"]
    # a scheduler and a searcher pickled before these records existed (a sweep started by an older
    # raysweep) resume without them
    def older(obj, *gone):  # `obj` pickled by a raysweep without the attributes `gone`, and unpickled now
        for k in gone:
            del obj.__dict__[k]
        return pickle.loads(pickle.dumps(obj))

    old_scheduler = older(pickle.loads(at_start), "root", "decisions")
    decide(old_scheduler, "g5", 0.3)
    assert len(read_decisions(tmp_path)) == 4 and old_scheduler.decisions[-1]["trial_id"] == "g5"
    search = older(MethodDispatchSearch({"gd": _Fixed("gd")}, {"gd": 2}), "seconds")
    assert search.suggest("t0")["method"] == "gd"
    search.on_trial_complete("t0", {"objective": 0.1, "time_total_s": 3.0})
    assert search.seconds == {"gd": [3.0]}


class _Fixed(Searcher):
    def __init__(self, name):
        super().__init__(metric="objective", mode="min")
        self.name, self.seen = name, []

    def suggest(self, trial_id):
        return {"lr": len(self.seen)}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.seen.append((trial_id, result))


def test_the_searcher_interleaves_methods_and_routes_results_to_their_own_search():
    subs = {"gd": _Fixed("gd"), "ssd": _Fixed("ssd"), "cfk": _Fixed("cfk")}
    search = MethodDispatchSearch(subs, {"gd": 2, "ssd": 2, "cfk": 2})
    configs = [search.suggest(f"t{i}") for i in range(6)]
    assert [c["method"] for c in configs] == ["gd", "ssd", "cfk", "gd", "ssd", "cfk"]
    assert search.suggest("t6") == Searcher.FINISHED
    search.on_trial_complete("t1", {"objective": 0.3})
    assert subs["ssd"].seen == [("t1", {"objective": 0.3})] and not subs["gd"].seen and not subs["cfk"].seen
    assert next_method({"a": 4, "b": 2}, {"a": 1, "b": 1}, ["a", "b"]) == ["a", "b"]  # a: 1/4 done, b: 1/2


def test_each_round_starts_the_methods_with_the_longest_trials_first():
    """Equally advanced methods: the one whose ended trials took longest starts first (an unknown one
    counts as longest), so a sweep ends on short trials instead of a long one beside an idle slot."""
    subs = {"gd": _Fixed("gd"), "ssd": _Fixed("ssd"), "cfk": _Fixed("cfk")}
    search = MethodDispatchSearch(subs, {"gd": 3, "ssd": 3, "cfk": 3})
    first = [search.suggest(f"t{i}") for i in range(3)]
    assert [c["method"] for c in first] == ["gd", "ssd", "cfk"]  # nothing known yet: the sweep's order
    for tid, took in (("t0", 12.0), ("t1", 20.0)):  # gd 12 s, ssd 20 s; cfk still running
        search.on_trial_complete(tid, {"objective": 0.1, "time_total_s": took})
    second = [search.suggest(f"t{i}")["method"] for i in range(3, 6)]
    assert second == ["cfk", "ssd", "gd"]
    search.on_trial_complete("t2", {"objective": 0.1, "time_total_s": 5.0})
    search.on_trial_complete("t3", {"objective": 0.1, "time_total_s": 7.0}, error=True)  # an error: not counted
    assert search.seconds == {"gd": [12.0], "ssd": [20.0], "cfk": [5.0]}
    assert [search.suggest(f"t{i}")["method"] for i in range(6, 9)] == ["ssd", "gd", "cfk"]


def test_a_methods_search_seed_depends_on_its_own_name_only():
    assert search_seed(0, "gd") == search_seed(0, "gd") != search_seed(0, "ngd")
    assert search_seed(1, "gd") != search_seed(0, "gd")


def test_trials_of_different_methods_share_the_slots(ray_local, prepared_tiny, tiny_cfg, tmp_path):
    root, _ = prepared_tiny
    scen = Scenario.load(LocalStore(root), tiny_cfg)
    cfg = SweepConfig(methods=["gd", "ssd", "cfk"], trials=2, name="mixed", storage_path=str(tmp_path),
                      budget=0.1, checkpoint_every=0.25, evidence="all")  # every trial evaluated in full
    sweep, complete = run_sweep(scen, cfg, str(root))
    assert complete
    trials, hist, _ = load_tables(sweep)
    runs = trials[trials.status != "reference"]
    assert sorted(runs.method.value_counts().to_dict().items()) == [("cfk", 2), ("gd", 2), ("ssd", 2)]
    assert runs.started.notna().all() and (runs.started < runs.ended).all()
    overlaps = 0
    rows = list(runs.itertuples())
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if a.method != b.method and a.started < b.ended and b.started < a.ended:
                overlaps += 1
    assert overlaps >= 1, runs[["method", "started", "ended"]]
    use = json.loads((sweep / "utilisation.json").read_text())[-1]
    assert use["slots"] == 2 and 0 < use["busy_share"] <= 1.0 + 1e-6 and 0 <= use["eval_share"] < 1
    assert (runs.eval_s >= 0).all() and pd.api.types.is_numeric_dtype(runs.unlearn_wall_s)
    finished = runs[runs.status == "finished"]
    assert (finished.evidence == "trial").all() and finished.test_acc.notna().all()
    # seconds blocked in Tune's synchronous checkpoint reports: measured, and a part of the trial's time
    assert finished.report_s.notna().all() and ((finished.report_s >= 0) & (finished.report_s < finished.wall_s)).all()
    assert finished.holdout_z.notna().all() and not (sweep / "models").exists()
    assert use["evidence_trials"] == 0
    for m, g in hist.groupby("method"):  # each trial's history is its own method's
        assert set(g.trial_id) <= set(runs[runs.method == m].trial_id)
    # every decision of the early stoppers in this real sweep, with the trials each was judged on
    method_of = dict(zip(runs.trial_id, runs.method))
    decisions = read_decisions(sweep)
    assert decisions and {d["method"] for d in decisions} <= {"gd", "cfk"}  # SSD is one-shot: no stopper
    for d in decisions:
        assert method_of[d["trial_id"]] == d["method"] and {method_of[t] for t in d["judged_on"]} == {d["method"]}, d
    assert any(len(d["judged_on"]) >= 2 for d in decisions)  # a stopper did compare two trials of its method
    stops = {d["trial_id"] for d in decisions if d["action"] == "stop"}
    assert set(runs[runs.status == "stopped"].trial_id) == stops
