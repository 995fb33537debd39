"""The verdict's evidence after the search (sweep/evidence.py): which trial keeps its weights, which
is the best, and that evaluating saved weights gives what the trial would have reported."""
import json
import math

import torch

from raysweep.artifacts import LocalStore, atomic_write_text
from raysweep.scenario import Scenario
from raysweep.sweep.evidence import evaluate_weights, full_evidence, keep_if_best, model_path
from raysweep.sweep.ledger import done_path
from raysweep.sweep.trainable import TrialSpec
from raysweep.unlearn.session import unlearn_scenario


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
