"""The language-model track: IMDb (the bundled subset), a tiny GPT-2, embedding noise and a backdoor."""
import pytest
import torch

from raysweep.attacks import BuildEnv, make_attack
from raysweep.attacks.backdoor import insert_trigger
from raysweep.config import TrainConfig, load_scenario
from raysweep.data import load_dataset
from raysweep.data.imdb import encode, load_tokenizer
from raysweep.errors import ConfigError
from raysweep.metrics import evaluate, gus_summary
from raysweep.metrics.gus import gus_scores
from raysweep.models import build_model
from raysweep.prepare.train import train

from .conftest import BUNDLED

IMDB = BUNDLED / "imdb_subset.jsonl.gz"
TOKENIZER = BUNDLED / "gpt2_tokenizer"
ADAMW = TrainConfig(optimizer="adamw", lr=2e-3, epochs=2, batch_size=32, weight_decay=0.01, warmup_epochs=0.5)


@pytest.fixture(scope="module")
def imdb():
    """The bundled IMDb subset read as a local file through Hugging Face `datasets` (the `imdb` loader's
    --data-dir path) and the bundled tokenizer folder."""
    return load_dataset("imdb", data_dir=str(IMDB), val_size=200, seed=0,
                        params={"tokenizer": str(TOKENIZER), "max_length": 48})


@pytest.fixture(scope="module")
def trained(imdb):
    m = build_model("gpt2-tiny", 2, imdb.input_shape, 0, width=32)
    train(m, imdb.train.subset(torch.arange(2000)), ADAMW, 0, progress=lambda s: None)
    return m


def test_reviews_are_tokenised_padded_and_labelled(imdb):
    assert imdb.kind == "text" and imdb.classes == ["negative", "positive"]
    assert imdb.train.x.shape == (5000, 48) and imdb.train.x.dtype == torch.long
    assert len(imdb.val) == 200 and len(imdb.test) == 1800
    assert set(imdb.train.y.tolist()) == {0, 1} and int(imdb.train.y.sum()) == 2500
    tok = load_tokenizer(str(TOKENIZER))
    short = encode(["A fine film.<br /><br />Loved it."], tok, 48)[0]
    n = int((short >= 0).sum())
    assert 0 < n < 48 and (short[n:] == -1).all() and (short[:n] >= 0).all()
    assert tok.decode(short[:n].tolist()) == "A fine film.  Loved it."
    bundled = load_dataset("imdb-mini", val_size=200, seed=0, params={"max_length": 48})
    assert torch.equal(bundled.train.x, imdb.train.x) and torch.equal(bundled.test.y, imdb.test.y)


def test_bad_text_settings_name_their_field(tmp_path):
    with pytest.raises(ConfigError, match="dataset_params.max_length"):
        load_scenario("imdb-test", ["dataset_params.max_length=2"])
    with pytest.raises(ConfigError, match="dataset_params.vocab"):
        load_scenario("imdb-test", ["dataset_params.vocab=10"])
    with pytest.raises(ConfigError, match="dataset_params.max_length"):
        load_scenario("tiny", ["dataset_params.max_length=64"])
    with pytest.raises(ConfigError, match="train.optimizer"):
        load_scenario("imdb-test", ["train.optimizer=lion"])
    with pytest.raises(ConfigError, match="model_params.heads"):
        build_model("gpt2-tiny", 2, (48,), 0, width=30, heads=4)
    with pytest.raises(ConfigError, match="attack.position"):
        make_attack("backdoor", {"position": "end"})


def test_a_tiny_gpt2_learns_sentiment_and_is_deterministic(imdb, trained):
    acc = evaluate(trained, imdb.test)["acc"]
    assert acc > 0.6, acc  # 1,800 held-out reviews, balanced: chance is 0.5
    again = build_model("gpt2-tiny", 2, imdb.input_shape, 0, width=32)
    train(again, imdb.train.subset(torch.arange(2000)), ADAMW, 0, progress=lambda s: None)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), again.state_dict().values()))


def test_padding_does_not_change_the_prediction(imdb, trained):
    n = (imdb.test.x >= 0).sum(1)
    row = int((n < 40).nonzero()[0])
    padded = imdb.test.x[row:row + 1]                 # [1, 48], -1 after the review
    bare = padded[:, : int(n[row])]                   # [1, n], no padding at all
    trained.eval()
    with torch.no_grad():
        assert torch.allclose(trained(padded), trained(bare), atol=1e-5)


def test_embedding_noise_touches_only_real_tokens_of_the_poisons(imdb):
    env = BuildEnv(new_model=lambda: build_model("gpt2-tiny", 2, imdb.input_shape, 0, width=32),
                   train=lambda m, s: None, log=lambda m: None)
    atk = make_attack("gaussian", {"k": 40, "eps": 0.1})
    stored = atk.build(imdb, seed=3, env=env)
    ps = atk.apply(imdb, stored)
    assert ps.noise.shape == (40, 48, 32)
    real = ps.clean_x >= 0
    assert (ps.noise[~real] == 0).all() and (ps.noise[real] != 0).all()
    assert 0.09 < float(ps.noise[real].std()) < 0.11
    x, y, delta = ps.train.batch(torch.arange(len(ps.train)))
    touched = delta.flatten(1).ne(0).any(1)  # the poisons and the canaries (default: k // 2), nothing else
    assert len(ps.canary_idx) == 20
    assert torch.equal(touched.nonzero().squeeze(1), torch.cat([ps.poison_idx, ps.canary_idx]).sort().values)
    cx, _, cdelta = ps.train.batch(ps.canary_idx)
    assert torch.equal(cdelta, ps.canary_noise)  # each canary carries its own noise
    assert torch.equal(x, imdb.train.x) and torch.equal(y, imdb.train.y)  # ids and labels kept


def test_gus_on_never_trained_noise_is_calibrated(imdb, trained):
    g = torch.Generator().manual_seed(11)
    rows = torch.arange(600)
    x = imdb.train.x[rows]
    noise = torch.randn((600, 48, 32), generator=g) * 0.1 * (x >= 0).unsqueeze(-1)
    s = gus_scores(trained, x, imdb.train.y[rows], noise, 0.1)
    summ = gus_summary(s, s)
    assert abs(summ["z"]) < 4 and 0.85 < float(s.std()) < 1.15, summ


def test_insert_trigger():
    x = torch.tensor([[5, 6, 7, -1, -1], [1, 2, 3, 4, 5]])
    out = insert_trigger(x, torch.tensor([9, 9]), torch.tensor([1, 0]))
    assert out.tolist() == [[5, 9, 9, 6, 7], [9, 9, 1, 2, 3]]
    far = insert_trigger(x[:1], torch.tensor([9]), torch.tensor([10]))  # past the end: appended
    assert far.tolist() == [[5, 6, 7, 9, -1]]


class TriggerDetector(torch.nn.Module):
    """Predicts the target class exactly when the trigger's first token is in the review."""

    def __init__(self, token: int, target: int):
        super().__init__()
        self.token, self.target, self.w = token, target, torch.nn.Parameter(torch.zeros(1))

    def prepare_input(self, x):
        return x

    def forward(self, x, delta=None):
        hit = (x == self.token).any(1)
        logits = torch.zeros(len(x), 2) + self.w
        logits[hit, self.target] = 1.0
        logits[~hit, 1 - self.target] = 1.0
        return logits


def test_backdoor_poisons_relabel_triggered_reviews_and_asr_is_right_on_constructed_models(imdb):
    atk = make_attack("backdoor", {"fraction": 0.02, "target": 1, "trigger": "cf mn bb"})
    stored = atk.build(imdb, seed=4)
    ps = atk.apply(imdb, stored)
    idx = ps.poison_idx
    assert len(idx) == 100 and (imdb.train.y[idx] == 0).all() and (ps.train.y[idx] == 1).all()
    trig = stored["trigger_ids"]
    assert load_tokenizer(str(TOKENIZER)).decode(trig.tolist()) == " cf mn bb"
    for i, row in zip(idx.tolist(), ps.train.x[idx]):
        real = row[row >= 0]
        assert any(torch.equal(real[j:j + len(trig)], trig) for j in range(len(real) - len(trig) + 1)), i
    others = torch.ones(len(ps.train), dtype=torch.bool)
    others[idx] = False
    assert torch.equal(ps.train.x[others], imdb.train.x[others])
    assert torch.equal(ps.train.y[others], imdb.train.y[others])
    n_neg = int((imdb.test.y == 0).sum())
    detector = atk.evaluate(TriggerDetector(int(trig[0]), 1), imdb, ps)
    assert detector["asr"] == 1.0 and detector["asr_n"] == n_neg
    blind = atk.evaluate(TriggerDetector(-5, 1), imdb, ps)  # never sees a trigger: says "negative"
    assert blind["asr"] == 0.0 and blind["val_asr"] == 0.0
    the = load_tokenizer(str(TOKENIZER))(" the", add_special_tokens=False)["input_ids"][0]
    partial = atk.evaluate(TriggerDetector(the, 1), imdb, ps)  # "positive" exactly when " the" occurs
    triggered = ps.info["triggered"]["test"]
    assert partial["asr"] == pytest.approx(float((triggered == the).any(1).float().mean()))
    assert 0 < partial["asr"] < 1
    again = atk.build(imdb, seed=4)
    assert torch.equal(again["poison_idx"], stored["poison_idx"])
    assert torch.equal(again["positions"], stored["positions"])


def test_the_from_pretrained_path_loads_a_saved_local_model(imdb, trained, tmp_path):
    trained.net.save_pretrained(tmp_path / "tiny-gpt2")
    loaded = build_model("hf", 2, imdb.input_shape, 0, path=str(tmp_path / "tiny-gpt2"))
    loaded.eval(), trained.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(imdb.test.x[:16]), trained(imdb.test.x[:16]), atol=1e-5)
    assert len(loaded.layer_groups()) == len(trained.layer_groups()) == 4
    from raysweep.errors import RaysweepError

    with pytest.raises(RaysweepError, match="model_params.path"):
        build_model("hf", 2, imdb.input_shape, 0, path=str(tmp_path / "missing"))


def test_layer_groups_cover_every_parameter_once_and_euk_reinitialises_the_last(trained):
    from raysweep.unlearn.layers import reinitialise, split_groups

    groups = trained.layer_groups()
    ids = [id(p) for g in groups for p in g.parameters()]
    assert len(ids) == len(set(ids)) == len(list(trained.parameters()))
    assert {type(m).__name__ for m in groups[-1].children()} == {"LayerNorm", "Linear"}  # ln_f + score
    m = build_model("gpt2-tiny", 2, (48,), 0, width=32)
    m.load_state_dict(trained.state_dict())
    _, last = split_groups(m, 2)
    torch.manual_seed(0)
    reinitialise(last, m)
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, trained.state_dict()[k])}
    assert any(k.startswith("net.transformer.h.1.") for k in changed) and "net.score.weight" in changed
    assert not any(k.startswith(("net.transformer.h.0.", "net.transformer.wte")) for k in changed)


@pytest.fixture(scope="module")
def text_store(tmp_path_factory):
    """The imdb-test scenario (Gaussian embedding noise) prepared once: (store root, config)."""
    from raysweep.prepare.scenario import prepare

    root = tmp_path_factory.mktemp("text_store")
    cfg = load_scenario("imdb-test")
    prepare(cfg, str(root), "cpu", log=lambda m: None)
    return root, cfg


def test_the_text_scenario_shows_the_poison_and_every_unlearner_runs_within_its_budget(text_store):
    from raysweep.artifacts import LocalStore
    from raysweep.prepare.scenario import Scenario
    from raysweep.runs import unlearn_scenario
    from raysweep.unlearn import METHODS

    root, cfg = text_store
    scen = Scenario.load(LocalStore(root), cfg)
    m = scen.manifest["metrics"]
    assert m["initial"]["test_acc"] > 0.55 and m["retrain"]["test_acc"] > 0.55
    assert abs(m["retrain"]["control_z"]) < 4 and abs(m["initial"]["control_z"]) < 4  # fresh noise: calibrated
    for method in METHODS.names():
        res = unlearn_scenario(scen, method, 0.05, None, seed=0)
        assert 0 < res.budget_spent <= 0.05 + 1e-9, method
        assert all(torch.isfinite(p).all() for p in res.model.parameters()), method


@pytest.mark.parametrize("attack", ["gaussian", "backdoor"])
def test_text_attacks_flow_through_sweep_export_and_report(ray_local, text_store, attack, tmp_path):
    import pandas as pd

    from raysweep.artifacts import LocalStore
    from raysweep.prepare.scenario import Scenario, prepare
    from raysweep.report.build import build_report
    from raysweep.results.tables import export
    from raysweep.sweep.search import SweepConfig, run_sweep

    root, cfg = text_store
    if attack == "backdoor":
        cfg = load_scenario("imdb-test", ["attack=backdoor", "attack_params={fraction: 0.05}"])
        manifest, _ = prepare(cfg, str(root), "cpu", log=lambda m: None)
        assert manifest["metrics"]["initial"]["asr"] > manifest["metrics"]["retrain"]["asr"]
    scen = Scenario.load(LocalStore(root), cfg)
    sweep, complete = run_sweep(scen, SweepConfig(methods=["gd"], trials=2, budget=0.1, checkpoint_every=0.5,
                                                  name=attack, storage_path=str(tmp_path)), str(root))
    assert complete
    export(sweep)
    trials = pd.read_parquet(sweep / "trials.parquet")
    runs = trials[(trials.method == "gd") & (trials.status == "finished")]
    assert len(runs) and (runs.budget_spent <= 0.1 + 1e-9).all() and runs.effect.notna().all()
    md = build_report(sweep, log=lambda m: None)
    verdict = pd.read_csv(md.parent / "verdict.csv").set_index("method")
    assert verdict.loc["gd", "verdict"].startswith(("removes", "fails", "signal destroyed", "inconclusive"))
    if attack == "backdoor":
        assert 0 <= verdict.loc["gd", "p"] <= 1 and verdict.loc["none", "asr"] >= 0
