"""The verdict's evidence after the search (sweep/evidence.py): which trial keeps its weights, which
is the best, and that evaluating saved weights gives what the trial would have reported."""
import json
import math

import pytest
import torch

from raysweep.artifacts import LocalStore, atomic_write_text
from raysweep.prepare.scenario import Scenario
from raysweep.results.layout import keep_if_best, known_path, model_path
from raysweep.results.ledger import done_path
from raysweep.runs import evaluate_weights, unlearn_scenario
from raysweep.sweep.evidence import full_evidence
from raysweep.sweep.trainable import TrialSpec


def _done(root, tid, method, objective):
    atomic_write_text(done_path(root, tid), json.dumps({"method": method, "objective": objective, "final": True}))


def test_a_trial_keeps_its_weights_only_if_its_method_has_no_better_finished_trial(tmp_path):
    model = torch.nn.Linear(3, 2)
    assert keep_if_best(tmp_path, "t1", "gd", 0.3, model)  # the first of its method
    _done(tmp_path, "t1", "gd", 0.3)
    _done(tmp_path, "t2", "ssd", -5.0)  # another method's better trial does not count
    assert keep_if_best(tmp_path, "t3", "gd", 0.1, model) and model_path(tmp_path, "t3").is_file()
    assert not model_path(tmp_path, "t1").exists()  # beaten: its weights are dropped at once
    _done(tmp_path, "t3", "gd", 0.1)
    assert not keep_if_best(tmp_path, "t4", "gd", 0.4, model) and not model_path(tmp_path, "t4").exists()
    assert not keep_if_best(tmp_path, "t5", "gd", math.nan, model)
    assert keep_if_best(tmp_path, "t6", "ga", math.nan, model)  # the first of its method
    saved = torch.load(model_path(tmp_path, "t3"))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_full_evidence_of_saved_weights_equals_the_in_trial_evaluation(prepared_tiny, tiny_cfg, tmp_path):
    root, _ = prepared_tiny
    scen = Scenario.load(LocalStore(root), tiny_cfg)
    res = unlearn_scenario(scen, "gd", 0.05, {"lr": 0.01}, 0, None, 0.25)
    want, scores = scen.scored(res.model)
    assert keep_if_best(tmp_path, "t1", "gd", 0.0, res.model)
    spec = TrialSpec(method="gd", budget=0.05, floor=0.0, store=LocalStore(root), scenario_hash=scen.hash,
                     threads=torch.get_num_threads())  # same threads: the same float sums
    got = full_evidence({"gd": spec}, "gd", str(model_path(tmp_path, "t1")))  # as a Ray task runs it
    assert evaluate_weights(scen, str(model_path(tmp_path, "t1"))).keys() == got.keys()  # as the driver does
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert got[key] is None
        else:
            assert got[key] == value, key
    held = scen.holdout_scores(scores)
    assert got["holdout_scores"] == held["scores"] and got["holdout_control_scores"] == held["control"]


def test_the_evidence_reuses_what_the_trials_final_report_took(prepared_tiny, tiny_cfg, tmp_path):
    """The final report's validation accuracy and tuning-half scores are kept beside the weights and not
    taken again; the rest (test, forget set, MIA, held-out poisons) is."""
    root, _ = prepared_tiny
    scen = Scenario.load(LocalStore(root), tiny_cfg)
    res = unlearn_scenario(scen, "gd", 0.05, {"lr": 0.01}, 0, None, 0.25)
    want, _ = scen.scored(res.model)
    final, tune = scen.scored(res.model, parts=("tune",), full=False)  # as the trial's final report takes them
    rows = {part: tune["scores"][getattr(scen, f"{part}_rows").long()] for part in ("tune", "holdout")}
    assert rows["tune"].isfinite().all() and rows["holdout"].isnan().all()
    assert keep_if_best(tmp_path, "t1", "gd", 0.0, res.model, {"val_acc": final["val_acc"], **tune})
    weights = str(model_path(tmp_path, "t1"))
    got = evaluate_weights(scen, weights)
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert got[key] is None
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        else:
            assert got[key] == value, key
    # reused, not re-taken: figures put in by hand come out as given, the held-out half is computed
    shifted = {"val_acc": 0.123, "scores": tune["scores"] + 1.0, "control": tune["control"]}
    torch.save(shifted, known_path(weights))
    again = evaluate_weights(scen, weights)
    assert again["val_acc"] == 0.123 and again["tune_gus"] == pytest.approx(want["tune_gus"] + 1.0)
    assert again["holdout_gus"] == got["holdout_gus"] and again["test_acc"] == got["test_acc"]
    _done(tmp_path, "t1", "gd", 0.0)
    assert keep_if_best(tmp_path, "t2", "gd", -1.0, res.model)  # better: t1's weights and figures are dropped
    assert not model_path(tmp_path, "t1").exists() and not known_path(weights).exists()


def test_the_tail_evaluates_an_ended_methods_best_trial_only_while_a_slot_is_idle(prepared_tiny, tiny_cfg,
                                                                                  tmp_path):
    import pickle
    from types import SimpleNamespace

    from raysweep.results.layout import evidence_path
    from raysweep.sweep.search import _method_of
    from raysweep.sweep.tail import TailEvidence

    root, _ = prepared_tiny
    scen = Scenario.load(LocalStore(root), tiny_cfg)
    model = scen.new_model("initial")
    for tid, obj in (("g1", 0.3), ("g2", 0.1)):
        assert keep_if_best(tmp_path, tid, "gd", obj, model)
        _done(tmp_path, tid, "gd", obj)

    def trials(ssd_status):
        return [SimpleNamespace(trial_id=t, config={"method": m}, status=s)
                for t, m, s in (("g1", "gd", "TERMINATED"), ("g2", "gd", "TERMINATED"), ("s1", "ssd", ssd_status))]

    busy = TailEvidence(tmp_path, scen, {"gd": 2, "ssd": 1}, 1, _method_of)
    busy.on_step_end(0, trials("RUNNING"))  # the one slot runs the SSD trial: no idle slot
    assert busy.finish()["trials"] == 0 and not busy.queued
    tail = TailEvidence(tmp_path, scen, {"gd": 2, "ssd": 1}, 2, _method_of)
    tail.on_step_end(0, trials("RUNNING")[:2])  # the SSD trial not created yet: not the tail
    tail.on_step_end(0, trials("PENDING"))      # ... nor while a trial waits for a slot
    assert not tail.queued
    tail.on_step_end(0, trials("RUNNING"))      # every trial started, a slot idle, GD's trials all ended
    assert tail.queued == ["gd"]
    done = tail.finish()
    seconds, idle = tail.evaluated["g2"]
    assert done["trials"] == 1 and idle == 1 and done["slot_s"] == seconds > 0  # 2 slots, the SSD trial in one
    assert not evidence_path(tmp_path, "g1").exists()  # the method's best only
    got = json.loads(evidence_path(tmp_path, "g2").read_text())
    want = evaluate_weights(scen, str(model_path(tmp_path, "g2")))
    assert {k: got[k] for k in ("val_acc", "test_acc", "holdout_gus")} == {k: want[k] for k in
                                                                         ("val_acc", "test_acc", "holdout_gus")}
    assert pickle.loads(pickle.dumps(tail)).scen is None  # Tune pickles callbacks: no scenario, no thread
