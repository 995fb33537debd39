"""Bad input, generated: every option and `--set` key with wrong types, NaN, ±inf, out-of-range, empty and
huge values, and damaged copies of every on-disk format (truncated, wrong JSON type, missing key, garbage
bytes). Each case must end in one line `raysweep: error: ...`, exit code 2, no traceback, nothing trained,
Ray never started and nothing written (docs/reliability.md, "Generated cases").

In-process (`raysweep.cli.main`), so that hundreds of cases take seconds; a sample runs through the
installed `raysweep` command.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from raysweep.cli import build_parser, main
from raysweep.config import ScenarioConfig, TrainConfig

FIXTURES = Path(__file__).parent / "fixtures"
_EXE = Path(sys.executable).with_name("raysweep")
COMMAND = [str(_EXE)] if _EXE.is_file() else [sys.executable, "-m", "raysweep.cli"]

NUMBER_BAD = ["nan", "inf", "-inf", "-1", "", "abc", "1e400", "[1, 2]", "{a: 1}"]
HUGE_INT = "1" + "0" * 400  # larger than any float: compared as an int, never through math.isfinite
INT_BAD = NUMBER_BAD + ["1.5", "99999999999999999999", HUGE_INT]
STR_ENUM_BAD = ["", "abc", "1", "[1]", "{a: 1}", "nan"]
BOOL_BAD = ["abc", "1", "", "nan", "[true]"]
MAPPING_BAD = ["abc", "1", "[1]", "nan", ""]


class Ran(Exception):
    """Raised where work would start on input that should have been refused."""


@pytest.fixture
def guarded(monkeypatch):
    """Training, Ray and every analysis raise `Ran`: a case that gets that far was not refused."""
    def ran(*a, **k):
        raise Ran("work started on bad input")

    monkeypatch.setattr("raysweep.prepare.scenario.train", ran)
    monkeypatch.setattr("raysweep.prepare.base_model.train", ran)  # a head victim's base model
    monkeypatch.setattr("ray.init", ran)
    monkeypatch.setattr("raysweep.cli.curve.run_curve", ran)
    monkeypatch.setattr("raysweep.explain.run.random_refs", ran)  # explain's θ_random trainings
    monkeypatch.setattr("raysweep.report.build.rerun_best", ran)  # report --seeds / --scenario-seeds
    monkeypatch.setattr("raysweep.prepare.scenario.ProcessPoolExecutor", ran)  # the references' own processes


def one_line_exit_2(argv: list[str], capsys, store: Path | None = None) -> str:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    except Ran:
        pytest.fail(f"{argv}: work started instead of a one-line refusal")
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if "Started a local Ray" not in ln]
    assert code == 2, (argv, code, err)
    assert len(err) == 1 and err[0].startswith("raysweep: error: "), (argv, err)
    assert "Traceback" not in err[0]
    if store is not None:
        assert not store.exists() or not any(store.rglob("*")), (argv, list(store.rglob("*")))
    return err[0]


# ---- every option of every verb ----------------------------------------------------------------------
def option_cases():
    """(verb, option, bad value) for every option that takes a value, by its type; SWEEP-taking verbs get
    a sweep that exists (the copied fixture) so that the option itself is what is judged."""
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    bad_text = {"--device": ["abc", "", "cuda:x", "tpu"], "--evidence": STR_ENUM_BAD, "--format": STR_ENUM_BAD,
                "--references": STR_ENUM_BAD, "--methods": ["", ",", "nosuch", "gd,,nosuch"],
                "--scenario": ["", "nosuch", "/nonexistent/x.yaml"], "--name": ["", "../x", "a" * 300, "/abs"],
                "--address": ["host:99999", "host:0", "nonsense", "host:-1", ":80"],
                "--optuna-storage": ["", "nosuch://x", "sqlite://", "sqlite:///:memory:"],
                "--mlflow": ["", "ftp://x"], "--spaces-dir": ["/nonexistent/spaces"],
                "--budgets": ["", "0.1,abc", "nan", "0", "2", "0.5,0.1"], "--alphas": ["", "2", "0", "nan,1"],
                "--fractions": ["", "0.1,abc", "nan", "0", "2", "0.5,0.1", "0.5,0.5"],
                "--hp": ["lr", "lr=nan", "lr=1e400", "lr=1e300", "batch_size=1e12", "nosuch=1", "lr=", "batch_size=0.5",
                         f"batch_size={HUGE_INT}"],
                "--set": ["noequals", "nosuch=1", "train.nosuch=1"],
                "--method": ["", "nosuch", "gd,ga"], "--mode": STR_ENUM_BAD, "--schedule": STR_ENUM_BAD,
                "--space": ["", ",", "nosuch", "eps2=a:b", "eps2=1:0.1", "eps2=0.01:1:sqrt", "k=1.5:3", "eps2=nan:1",
                            "eps2=0.1:1,eps2=0.2:1", "k=2:99999999"]}
    skip = {"--data-dir", "--storage-path", "--store", "--out"}  # filesystem targets: their own cases below
    cases = []
    for verb, parser in sub.choices.items():
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.dest == "help":
                continue
            opt = max(action.option_strings, key=len)
            if opt in skip:
                continue
            if opt in bad_text:
                values = bad_text[opt]
            elif action.type is int:
                values = ["-1", "1.5", "abc", "", "99999999999999999999", HUGE_INT, "nan"]
            elif action.type is float:
                values = ["nan", "inf", "-inf", "-1", "abc", "", "1e400"]
            else:
                raise AssertionError(f"{verb} {opt}: no bad values listed for this option (add them here)")
            cases += [(verb, opt, v) for v in values]
    return cases


NEEDS_SWEEP = {"export", "report", "curve", "discovery", "explain"}
NEEDS_METHOD = {"unlearn"}


@pytest.mark.parametrize("verb,opt,value", option_cases(), ids=lambda x: repr(x)[:40])
def test_every_option_refuses_bad_values_in_one_line(verb, opt, value, tmp_path, capsys, guarded):
    store, sweep = tmp_path / "store", tmp_path / "sweep"
    argv = [verb]
    if verb in NEEDS_SWEEP:
        shutil.copytree(FIXTURES / "sweep_v0_1_layout", sweep)
        argv.append(str(sweep))
    before = sorted(sweep.rglob("*"))
    if verb in NEEDS_METHOD and opt != "--method":
        argv += ["--method", "gd"]
    argv += [f"{opt}={value}" if value.startswith("-") else opt, *([] if value.startswith("-") else [value])]
    if verb not in NEEDS_SWEEP:
        argv += ["--store", str(store)]
    one_line_exit_2(argv, capsys, store if verb not in NEEDS_SWEEP else None)
    assert sorted(sweep.rglob("*")) == before  # nothing written into the sweep either


# ---- every --set key of the scenario ------------------------------------------------------------------
def set_cases():
    typed = {f.name: f.type for f in fields(ScenarioConfig) if f.name != "train"}
    typed.update({f"train.{f.name}": f.type for f in fields(TrainConfig)})
    typed.update({"attack_params.k": "int", "attack_params.eps2": "float", "model_params.width": "int"})
    bad_by_type = {"int": INT_BAD, "float": NUMBER_BAD, "bool": BOOL_BAD, "str": STR_ENUM_BAD,
                   "dict": MAPPING_BAD, "int | None": INT_BAD}
    cases = []
    for key, typ in typed.items():
        values = list(bad_by_type[str(typ)])
        if key == "name":  # any one path segment is a name; these are not
            values = ["", "../x", "a" * 300, "[1]", "{a: 1}", ".hidden"]
        if key in ("seed", "train_size", "val_size", "train.epochs", "train.batch_size", "attack_params.k",
                   "model_params.width"):
            values.append("99999999999")  # in range for an integer, not for this field
        if key == "train.lr":
            values.append("1e300")
        if key in ("model", "dataset", "attack"):  # a registered name that does not fit the default's data
            values.append({"model": "gpt2-tiny", "dataset": "imdb-mini", "attack": "backdoor"}[key])
        cases += [(key, v) for v in values]
    return cases


@pytest.mark.parametrize("key,value", set_cases(), ids=lambda x: repr(x)[:40])
def test_every_set_key_refuses_bad_values_in_one_line(key, value, tmp_path, capsys, guarded):
    store = tmp_path / "store"
    msg = one_line_exit_2(["prepare", "--set", f"{key}={value}", "--store", str(store)], capsys, store)
    assert key.split(".")[-1] in msg or key.split(".")[0] in msg, msg


@pytest.mark.parametrize("setting", ["val_size=5000", "train_size=99999999", "attack_params.k=99999"])
def test_a_sweep_refuses_what_only_the_data_can_check_before_ray_starts(setting, tmp_path, capsys, guarded):
    store = tmp_path / "store"
    msg = one_line_exit_2(["sweep", "--methods", "gd", "--set", setting, "--store", str(store)], capsys, store)
    assert setting.split("=")[0].split(".")[-1] in msg, msg


# ---- filesystem targets ---------------------------------------------------------------------------------
def test_unwritable_targets_are_refused_before_anything_runs(tmp_path, capsys, guarded):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    sweep = tmp_path / "sweep"
    shutil.copytree(FIXTURES / "sweep_v0_1_layout", sweep)
    long = str(tmp_path / ("n" * 300))
    for argv in (["prepare", "--store", str(a_file / "store")], ["prepare", "--store", "/proc/raysweep"],
                 ["prepare", "--store", long], ["sweep", "--store", str(a_file)],
                 ["sweep", "--store", str(tmp_path / "s"), "--storage-path", str(a_file)],
                 ["demo", "--store", str(a_file / "x")], ["unlearn", "--method", "gd", "--store", str(a_file)],
                 ["export", str(sweep), "--out", str(a_file)], ["report", str(sweep), "--out", str(a_file / "r")],
                 ["explain", str(sweep), "--out", "/proc/raysweep"],
                 ["sweep", "--store", str(tmp_path / "s2"), "--optuna-storage", f"sqlite:///{a_file}"],
                 ["attack-search", "--store", str(tmp_path / "s3"), "--storage-path", str(a_file)]):
        msg = one_line_exit_2(argv, capsys)
        assert any(w in msg for w in ("store", "storage_path", "out", "optuna_storage")), msg


# ---- damaged on-disk formats ----------------------------------------------------------------------------
DAMAGE = {
    "truncated": lambda b: b[: max(1, len(b) // 2)],
    "empty": lambda b: b"",
    "garbage": lambda b: bytes(range(256)) * 4,
    "wrong_json_type": lambda b: b"[1, 2, 3]",
    "not_utf8": lambda b: b"\xff\xfe" + b[2:],
}


def _damage_json_key(path: Path, key: str, value) -> None:
    doc = json.loads(path.read_text())
    if value is KeyError:
        doc.pop(key, None)
    else:
        doc[key] = value
    path.write_text(json.dumps(doc))


def _sweep_copy(tmp_path) -> Path:
    sweep = tmp_path / "sweep"
    shutil.copytree(FIXTURES / "sweep_v0_1_layout", sweep)
    return sweep


SWEEP_FILES = ["sweep.json", "params.json", "ledger", "evidence"]  # done/: test_a_damaged_done_record_...


def _target(sweep: Path, which: str) -> Path:
    if which in ("sweep.json",):
        return sweep / which
    if which == "params.json":
        return next(sweep.glob("trials/*/params.json"))
    return next((sweep / which).glob("*.json"))


@pytest.mark.parametrize("which", SWEEP_FILES)
@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("verb", ["export", "report"])
def test_a_damaged_sweep_file_is_one_line_naming_it(which, damage, verb, tmp_path, capsys):
    sweep = _sweep_copy(tmp_path)
    target = _target(sweep, which)
    target.write_bytes(DAMAGE[damage](target.read_bytes()))
    before = sorted(p.relative_to(sweep) for p in sweep.rglob("*"))
    try:
        code = main([verb, str(sweep)])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    if which in ("ledger", "done", "evidence") and damage in ("truncated", "empty", "garbage", "not_utf8"):
        # a record cut by a kill is skipped by design (docs/reliability.md): the command goes on
        assert code == 0, err
        return
    assert code == 2 and len(err) == 1 and err[0].startswith("raysweep: error: "), err
    assert str(target) in err[0] or target.name in err[0], err[0]
    assert sorted(p.relative_to(sweep) for p in sweep.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_done_record_replays_nothing_or_is_one_line(damage, tmp_path):
    """done/<trial>.json is read only on --resume: a record cut by a kill replays nothing (the trial runs
    again); one of the wrong type is named."""
    from raysweep.errors import ArtifactError
    from raysweep.results.ledger import replay_final

    sweep = _sweep_copy(tmp_path)
    target = next((sweep / "done").glob("*.json"))
    target.write_bytes(DAMAGE[damage](target.read_bytes()))
    if damage == "wrong_json_type":
        with pytest.raises(ArtifactError, match=target.name):
            replay_final(sweep, target.stem)
    else:
        assert replay_final(sweep, target.stem) is None


@pytest.mark.parametrize("verb", ["export", "report", "curve", "explain"])
@pytest.mark.parametrize("key,value", [("config", KeyError), ("config", []), ("spaces", "x"), ("name", 3),
                                       ("references", None), ("layout", {}), ("attack", "nosuch"),
                                       ("references", {}), ("references", {"none": 3, "retrain": {}}),
                                       ("spaces", {"gd": 3}), ("spaces", {"gd": {"params": []}})], ids=str)
def test_sweep_json_with_a_wrong_field_is_one_line(verb, key, value, tmp_path, capsys, guarded):
    sweep = _sweep_copy(tmp_path)
    _damage_json_key(sweep / "sweep.json", key, value)
    before = sorted(sweep.rglob("*"))
    msg = one_line_exit_2([verb, str(sweep)], capsys)
    assert "sweep.json" in msg or key in msg, msg
    assert sorted(sweep.rglob("*")) == before


@pytest.mark.parametrize("damage", ["garbage", "not_utf8", "wrong_json_type"])
def test_a_damaged_result_log_loses_only_its_lines(damage, tmp_path, capsys):
    """result.json is Tune's JSON-lines log: a damaged line is skipped like one cut by a kill."""
    sweep = _sweep_copy(tmp_path)
    target = next(sweep.glob("trials/*/result.json"))
    target.write_bytes(DAMAGE[damage](target.read_bytes()))
    assert main(["export", str(sweep)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("field,value", [("status", 3), ("started", "x"), ("attempts", "x"), ("errors", 1)])
def test_a_ledger_entry_with_a_wrong_field_is_one_line_naming_it(field, value, tmp_path, capsys):
    sweep = _sweep_copy(tmp_path)
    target = next((sweep / "ledger").glob("*.json"))
    _damage_json_key(target, field, value)
    msg = one_line_exit_2(["export", str(sweep)], capsys)
    assert target.name in msg, msg


def test_a_trial_folder_naming_an_unknown_method_is_one_line_naming_it(tmp_path, capsys):
    sweep = _sweep_copy(tmp_path)
    target = next(sweep.glob("trials/*/params.json"))
    _damage_json_key(target, "method", "nosuch")
    msg = one_line_exit_2(["export", str(sweep)], capsys)
    assert "params.json" in msg, msg


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
@pytest.mark.parametrize("verb", ["report", "curve"])
def test_a_damaged_exported_table_is_one_line_naming_it(damage, verb, tmp_path, capsys, guarded):
    sweep = _sweep_copy(tmp_path)
    out = tmp_path / "export"
    assert main(["export", str(sweep), "--out", str(out)]) == 0
    capsys.readouterr()
    target = out / "trials.parquet"
    target.write_bytes(DAMAGE[damage](target.read_bytes()))
    msg = one_line_exit_2([verb, str(out)], capsys)
    assert "trials.parquet" in msg, msg


@pytest.fixture
def store_copy(prepared_tiny, tmp_path) -> Path:
    root, _ = prepared_tiny
    dst = tmp_path / "store"
    shutil.copytree(root, dst)
    return dst


@pytest.mark.parametrize("damage", [("files", {}), ("files", []), ("files", {"initial.safetensors": 3}),
                                    ("config", []), ("config", "x"), ("metrics", 1), ("files", KeyError),
                                    ("bytes", "truncated"), ("bytes", "garbage"), ("bytes", "wrong_json_type"),
                                    ("bytes", "not_utf8")], ids=str)
def test_a_damaged_manifest_is_one_line_naming_it(damage, store_copy, capsys, guarded):
    manifest = next(store_copy.glob("scenarios/*/manifest.json"))
    key, value = damage
    if key == "bytes":
        manifest.write_bytes(DAMAGE[value](manifest.read_bytes()))
    else:
        _damage_json_key(manifest, key, value)
    for verb in (["unlearn", "--method", "gd"], ["prepare"]):
        msg = one_line_exit_2([*verb, "--scenario", "tiny", "--store", str(store_copy)], capsys)
        assert "manifest.json" in msg, msg


def test_a_tensor_file_of_garbage_with_a_matching_checksum_is_one_line(store_copy, capsys, guarded):
    from raysweep.artifacts import sha256_file

    folder = next(store_copy.glob("scenarios/*"))
    target = folder / "initial.safetensors"
    target.write_bytes(bytes(range(256)) * 16)
    doc = json.loads((folder / "manifest.json").read_text())
    doc["files"]["initial.safetensors"] = sha256_file(target)
    (folder / "manifest.json").write_text(json.dumps(doc))
    msg = one_line_exit_2(["unlearn", "--method", "gd", "--scenario", "tiny", "--store", str(store_copy)], capsys)
    assert "initial.safetensors" in msg, msg


@pytest.mark.parametrize("text", [b"\xff\xfe not utf-8", b"a: &a [*a]\n", b"[1, 2]", b"train: {epochs: [1]}\n",
                                  b"{{{{", b"dataset: 3\n", b"name: [x]\n"], ids=str)
def test_a_bad_scenario_file_is_one_line(text, tmp_path, capsys, guarded):
    f = tmp_path / "s.yaml"
    f.write_bytes(text)
    one_line_exit_2(["prepare", "--scenario", str(f), "--store", str(tmp_path / "store")], capsys,
                    tmp_path / "store")


@pytest.mark.parametrize("text", [b"\xff\xfe", b"params: [1]\n", b"params: {lr: {loguniform: [a, b]}}\n",
                                  b"params: {lr: {loguniform: [.nan, 1]}}\n", b"method: [gd]\n",
                                  b"fixed: 3\n", b"warm_start: 3\n", b"warm_start: [{lr: x}]\n"
                                  b"params: {lr: {loguniform: [1.0e-5, 0.1]}}\n", b"params: {lr: {int: [1, 2]}}\n",
                                  b"a: &a [*a]\n"], ids=str)
def test_a_bad_search_space_file_is_one_line(text, tmp_path, capsys, guarded):
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "gd.yaml").write_bytes(text)
    one_line_exit_2(["sweep", "--methods", "gd", "--spaces-dir", str(spaces), "--store", str(tmp_path / "store")],
                    capsys, tmp_path / "store")


def _raise_config_error(_):
    from raysweep.errors import ConfigError

    raise ConfigError("model_params.width", 0, "an integer in [1, 1024]")


def test_an_error_in_a_worker_process_arrives_as_itself():
    """The references' pool is spawned like `prepare`'s: before errors pickled, this was BrokenProcessPool."""
    from concurrent.futures import ProcessPoolExecutor

    import torch.multiprocessing

    from raysweep.errors import ConfigError

    with ProcessPoolExecutor(1, mp_context=torch.multiprocessing.get_context("spawn")) as pool:
        with pytest.raises(ConfigError, match="model_params.width"):
            list(pool.map(_raise_config_error, [0]))


# ---- a sample through the installed command -------------------------------------------------------------
@pytest.mark.parametrize("argv", [["sweep", "--trials", "1.5"], ["prepare", "--set", "train.lr=nan"],
                                  ["unlearn", "--method", "gd", "--hp", "lr=1e400"], ["nosuch"],
                                  ["export", "/nonexistent/sweep"]], ids=" ".join)
def test_the_installed_command_gives_one_line(argv, tmp_path):
    store = tmp_path / "store"
    out = subprocess.run([*COMMAND, *argv, *([] if argv[0] in ("nosuch", "export") else ["--store", str(store)])],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    err = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert out.returncode == 2 and len(err) == 1 and err[0].startswith("raysweep: error: "), out.stderr
    assert not store.exists() or not any(store.rglob("*"))


def test_an_unwritable_raysweep_store_is_refused_by_the_installed_command(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out = subprocess.run([*COMMAND, "prepare", "--scenario", "tiny"], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={**__import__("os").environ, "RAYSWEEP_STORE": str(a_file)})
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "RAYSWEEP_STORE" in out.stderr, out.stderr
