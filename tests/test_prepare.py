"""Scenario artifacts: built once, reused, checked, reproducible; bad input fails cleanly."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from raysweep.artifacts import LocalStore
from raysweep.cli import main
from raysweep.config import load_scenario
from raysweep.errors import ArtifactError
from raysweep.prepare.scenario import Scenario, prepare, store_key


def test_manifest_records_config_compute_metrics_and_files(prepared_tiny, tiny_cfg):
    root, manifest = prepared_tiny
    assert manifest["hash"] == tiny_cfg.hash()
    assert manifest["compute"]["initial_sample_grads"] == tiny_cfg.train.epochs * manifest["n_train"]
    assert manifest["compute"]["retrain_sample_grads"] == tiny_cfg.train.epochs * (manifest["n_train"] - manifest["k"])
    for which in ("initial", "retrain"):
        m = manifest["metrics"][which]
        for key in ("test_acc", "gus", "z", "p", "tpr_two", "auc", "control_z", "mia_tpr", "holdout_z", "tune_z"):
            assert key in m
    folder = Path(root) / store_key(manifest["hash"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(["manifest.json", *manifest["files"]])
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_second_prepare_trains_nothing(prepared_tiny, tiny_cfg, monkeypatch):
    root, manifest = prepared_tiny
    import raysweep.prepare.scenario as sc

    monkeypatch.setattr(sc, "train", lambda *a, **k: pytest.fail("prepare trained again"))
    again, built = prepare(tiny_cfg, str(root), "cpu", log=lambda m: None)
    assert not built and again == manifest


def test_loaded_scenario_reproduces_the_manifest_metrics(prepared_tiny, tiny_cfg):
    root, manifest = prepared_tiny
    scen = Scenario.load(LocalStore(root), tiny_cfg)
    m = scen.evaluate(scen.new_model("initial"))
    for key in ("test_acc", "gus", "z", "mia_tpr", "control_z"):
        assert m[key] == pytest.approx(manifest["metrics"]["initial"][key], rel=1e-9, abs=1e-12)
    # the per-poison reference scores each sweep reads from the manifest are what it would compute
    from raysweep.sweep.search import reference_scores

    kept = reference_scores(scen)
    assert set(kept) == {"none", "retrain"} and len(kept["none"]["scores"]) == manifest["k"]
    scen.manifest = {k: v for k, v in scen.manifest.items() if k != "reference_scores"}  # a scenario from before
    fresh = reference_scores(scen)
    for ref in ("none", "retrain"):
        for part in ("scores", "control"):
            assert kept[ref][part] == pytest.approx(fresh[ref][part], abs=2e-5)


def test_same_seed_gives_identical_metrics_and_weights(prepared_tiny, tiny_cfg, tmp_path):
    root, manifest = prepared_tiny
    other, built = prepare(tiny_cfg, str(tmp_path), "cpu", log=lambda m: None)
    assert built
    assert other["metrics"] == manifest["metrics"]
    assert other["files"] == manifest["files"]  # byte-identical weights and poisons


def test_different_seed_gives_a_different_hash(tiny_cfg):
    assert load_scenario("tiny", ["seed=1"]).hash() != tiny_cfg.hash()
    assert load_scenario("tiny", ["name=renamed"]).hash() == tiny_cfg.hash()


def test_corrupted_or_missing_artifact_file_is_refused(prepared_tiny, tiny_cfg, tmp_path):
    import shutil

    root, manifest = prepared_tiny
    src = Path(root) / store_key(manifest["hash"])
    dst_root = tmp_path / "copy"
    shutil.copytree(src, dst_root / store_key(manifest["hash"]))
    f = dst_root / store_key(manifest["hash"]) / "initial.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        Scenario.load(LocalStore(dst_root), tiny_cfg)
    f.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        Scenario.load(LocalStore(dst_root), tiny_cfg)


def test_an_interrupted_prepare_leaves_nothing_half_written(tiny_cfg, tmp_path, monkeypatch):
    import raysweep.prepare.scenario as sc

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sc, "write_manifest", boom)
    with pytest.raises(RuntimeError):
        prepare(load_scenario("tiny", ["train.epochs=1"]), str(tmp_path), "cpu", log=lambda m: None)
    leftovers = list((tmp_path / "scenarios").iterdir()) if (tmp_path / "scenarios").exists() else []
    assert leftovers == []


@pytest.mark.parametrize("argv,field", [
    (["--scenario", "tiny", "--set", "dataset=mnist"], "dataset"),
    (["--scenario", "tiny", "--set", "model=vgg"], "model"),
    (["--scenario", "tiny", "--set", "attack=nope"], "attack"),
    (["--scenario", "tiny", "--set", "attack_params.eps=0"], "attack.eps"),
    (["--scenario", "tiny", "--set", "attack_params.k=20000"], "attack.k"),
    (["--scenario", "tiny", "--set", "train.epochs=0"], "train.epochs"),
    (["--scenario", "tiny", "--set", "colour=red"], "colour"),
    (["--scenario", "nowhere.yaml"], "scenario"),
    (["--scenario", "tiny", "--references", "both"], "references"),
])
def test_bad_input_is_one_line_naming_the_field_with_exit_code_2(argv, field, tmp_path, capsys):
    code = main(["prepare", *argv, "--store", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("raysweep: error:") and field in err
    assert not (tmp_path / "scenarios").exists() or not any((tmp_path / "scenarios").iterdir())


def test_cli_prepare_json_and_a_yaml_scenario(prepared_tiny, tiny_cfg, tmp_path):
    root, manifest = prepared_tiny
    yml = tmp_path / "mine.yaml"
    yml.write_text("model_params: {width: 4}\nattack_params: {k: 64}\ntrain_size: 2000\n"
                   "train: {epochs: 3, batch_size: 128}\nval_size: 200\n")
    out = subprocess.run([sys.executable, "-m", "raysweep.cli", "prepare", "--scenario", str(yml), "--json",
                          "--store", str(root), "--device", "cpu"], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["hash"] == manifest["hash"]  # the same content as the tiny preset: found, not rebuilt
    assert "already prepared" in out.stderr
    assert got["metrics"] == manifest["metrics"]


def test_parallel_references_are_bit_for_bit_the_sequential_ones_on_as_many_threads(tmp_path):
    """--references parallel trains θ_initial and θ_retrain at once, each in a process of its own on half
    the threads: the same weights and figures as one after the other on that many threads. auto picks
    parallel only for a CPU job of at least PARALLEL_MIN_SAMPLE_GRADS per model and >= 2 threads."""
    import torch

    from raysweep.defaults import PARALLEL_MIN_SAMPLE_GRADS
    from raysweep.prepare.scenario import reference_mode

    cfg = load_scenario("tiny", ["train.epochs=1"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert reference_mode(PARALLEL_MIN_SAMPLE_GRADS, "cpu") == "parallel"
        assert reference_mode(PARALLEL_MIN_SAMPLE_GRADS - 1, "cpu") == "sequential"
        assert reference_mode(10 * PARALLEL_MIN_SAMPLE_GRADS, "cuda") == "sequential"
        par, _ = prepare(cfg, str(tmp_path / "par"), "cpu", log=lambda m: None, references="parallel")
        torch.set_num_threads(1)
        assert reference_mode(10 * PARALLEL_MIN_SAMPLE_GRADS, "cpu") == "sequential"
        seq, _ = prepare(cfg, str(tmp_path / "seq"), "cpu", log=lambda m: None, references="sequential")
    finally:
        torch.set_num_threads(threads)
    assert par["references"] == {"mode": "parallel", "threads": 1}
    assert seq["references"] == {"mode": "sequential", "threads": 1}
    assert par["files"] == seq["files"]  # sha256 of the weights and the poisons
    assert par["metrics"] == seq["metrics"] and par["compute"] == seq["compute"]
