"""In-process sections of bench/gpu_check.py: the report table, ResNet-18 throughput (section 1),
GPT-2 medium steps (section 3) and GUS agreement across devices / precisions (section 4)."""
from __future__ import annotations

import gc
import statistics
import sys
import time
import traceback
from dataclasses import replace

import torch
import torch.nn.functional as F

DASH = "–"


def now() -> str:
    return time.strftime("%H:%M:%S")


def log(msg: str) -> None:
    print(f"[gpu_check {now()}] {msg}", file=sys.stderr, flush=True)


def fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


class Report:
    """The result rows (section, measure, value, goal, met?) and the time budget every section guards."""

    def __init__(self, budget_s: float):
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + budget_s
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.notes: list[str] = []
        self.on_change = lambda: None

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def add(self, section, measure: str, value: str, goal: str = DASH, met: str = DASH) -> None:
        self.rows.append((str(section), measure, value, goal, met))
        log(f"row {section} | {measure} | {value} | {goal} | {met}")
        self.on_change()

    def error(self, section, measure: str, exc: BaseException) -> None:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        text = f"{type(exc).__name__}: {exc}".replace("|", "/").replace("\n", " ")[:300]
        self.add(section, measure, f"ERROR: {text}", DASH, "error")

    def skip(self, section, measure: str, why: str) -> None:
        self.add(section, measure, f"skipped: {why}", DASH, "skipped")

    def guard(self, section, measure: str, fn, *args, need_s: float = 0.0, **kw):
        """fn(*args, **kw); an exception becomes an error row, a lack of time a skipped row."""
        if self.left() < need_s:
            self.skip(section, measure, f"{self.left():.0f}s left of the time budget, ~{need_s:.0f}s needed")
            return None
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - every failure is a row, never an abort
            self.error(section, measure, e)
            return None
        finally:
            free()


def free() -> None:
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(dev: torch.device, fn, *args, **kw) -> tuple[float, object]:
    sync(dev)
    t = time.perf_counter()
    out = fn(*args, **kw)
    sync(dev)
    return time.perf_counter() - t, out


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def peak(dev: torch.device) -> str:
    """'allocated / reserved' peak GB since reset_peak, or n/a on the CPU."""
    if dev.type != "cuda":
        return "n/a (CPU)"
    return f"{torch.cuda.max_memory_allocated(dev) / 1e9:.2f} / {torch.cuda.max_memory_reserved(dev) / 1e9:.2f}"


def quiet(_msg: str) -> None:
    pass


# ---- section 1: ResNet-18 on CIFAR-10-sized data, raysweep.prepare.train vs a bare loop ----------------------
def cifar_split(n_total: int, dev: torch.device, seed: int = 0, n_real: int | None = None):
    """The bundled CIFAR-10 subset (normalised; its first n_real images), topped up with synthetic N(0, 1)
    images to n_total."""
    from raysweep.data import load_dataset
    from raysweep.data.base import Split

    ds = load_dataset("cifar10-mini", None, 0, seed)
    keep = min(n_total, n_real if n_real is not None else n_total)
    x, y = ds.train.x[:keep], ds.train.y[:keep]
    n_real = len(y)
    if n_total > n_real:
        g = torch.Generator().manual_seed(seed)
        xs = torch.randn((n_total - n_real, *x.shape[1:]), generator=g)
        ys = torch.randint(0, ds.num_classes, (n_total - n_real,), generator=g)
        x, y = torch.cat([x, xs]), torch.cat([y, ys])
    return Split(x.to(dev), y.to(dev)), n_real


def gpu_augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """prepare.train.augment_batch (random crop, pad 4, horizontal flip), random numbers drawn on x's device."""
    b, _, h, w = x.shape
    dev = x.device
    flip = torch.rand(b, device=dev, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    xp = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=gen)
    rows = dy[:, None] + torch.arange(h, device=dev)[None]
    cols = dx[:, None] + torch.arange(w, device=dev)[None]
    bi = torch.arange(b, device=dev)[:, None, None]
    return xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def bare_epoch(model, x, y, cfg, opt, gen, dev) -> None:
    """The hand-written loop: same model, batch size, optimiser; data on the device; channels_last."""
    model.train()
    perm = torch.randperm(len(y), device=dev, generator=gen)
    bf16 = cfg.bf16 and dev.type == "cuda"
    for start in range(0, len(y), cfg.batch_size):
        idx = perm[start:start + cfg.batch_size]
        xb, yb = x[idx], y[idx]
        if cfg.augment:
            xb = gpu_augment(xb, gen)
        xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _resnet(width: int, dev: torch.device):
    from raysweep.models import build_model

    return build_model("resnet18", 10, (3, 32, 32), 0, width=width).to(dev)


def epoch_raysweep(split, cfg, width, dev, warm_batches: int) -> tuple[float, str]:
    from raysweep.prepare.train import train

    torch.manual_seed(0)
    model = _resnet(width, dev)
    warm = split.subset(torch.arange(min(len(split), warm_batches * cfg.batch_size), device=split.y.device))
    train(model, warm, replace(cfg, epochs=1), seed=1, progress=quiet)
    reset_peak(dev)
    t, _ = timed(dev, train, model, split, replace(cfg, epochs=1), seed=2, progress=quiet)
    return t, peak(dev)


def epoch_bare(split, cfg, width, dev, warm_batches: int) -> tuple[float, str]:
    from raysweep.prepare.train import make_optimizer

    torch.manual_seed(0)
    model = _resnet(width, dev)
    opt = make_optimizer(model.parameters(), cfg)
    gen = torch.Generator(device=dev).manual_seed(3)
    n_warm = min(len(split), warm_batches * cfg.batch_size)
    bare_epoch(model, split.x[:n_warm], split.y[:n_warm], cfg, opt, gen, dev)
    reset_peak(dev)
    t, _ = timed(dev, bare_epoch, model, split.x, split.y, cfg, opt, gen, dev)
    return t, peak(dev)


def section_resnet(rep: Report, dev: torch.device, smoke: bool, cap_s: float) -> None:
    """Seconds per epoch of ResNet-18 through raysweep.prepare.train and a bare loop, fp32 and bf16; their ratios."""
    from raysweep.config import TrainConfig, load_scenario

    S = "1 ResNet-18"
    end = time.perf_counter() + cap_s
    # smoke: width 8 (width 4 in channels_last crashes torch 2.14.1's CPU convolution), 3 steps of 16
    n_total, width, warm = (48, 8, 1) if smoke else (50_000, 64, 20)
    split, n_real = cifar_split(n_total, dev, n_real=32 if smoke else None)
    try:
        base = load_scenario("paper-cifar10").train  # the preset's recipe: SGD nesterov, lr 0.1, batch 128, augment
    except Exception as e:  # noqa: BLE001
        log(f"paper-cifar10 preset unavailable ({e}); using its documented recipe")
        base = TrainConfig(lr=0.1, augment=True)
    if smoke:
        base = replace(base, batch_size=16)
    what = (f"{n_total:,} images ({n_real:,} bundled + {n_total - n_real:,} synthetic) on {dev.type}, "
            f"width {width}, batch {base.batch_size}")
    rep.notes.append(f"Section 1 data: {what}; recipe of paper-cifar10 (SGD nesterov, lr {base.lr}, "
                     f"augment={base.augment}); one timed epoch after a {warm}-batch warm-up, torch.cuda.synchronize "
                     "around it; fp32 means torch defaults (cuDNN convolutions may use TF32).")
    runs = [("fp32", replace(base, bf16=False)), ("bf16", replace(base, bf16=True)),
            ("fp32, no augmentation", replace(base, bf16=False, augment=False))]
    est = None
    for label, cfg in runs:
        need = 0.0 if est is None else 2.5 * est
        if time.perf_counter() + need > end or rep.left() < need:
            rep.skip(S, f"{label}: raysweep / bare PyTorch", f"section time cap ({cap_s:.0f}s) reached")
            continue
        rs = rep.guard(S, f"{label}: raysweep.prepare.train, s per epoch", epoch_raysweep, split, cfg, width, dev, warm)
        bare = rep.guard(S, f"{label}: bare PyTorch loop, s per epoch", epoch_bare, split, cfg, width, dev, warm)
        if rs:
            est = rs[0]
            rep.add(S, f"{label}: raysweep.prepare.train, s per epoch", fmt(rs[0]))
            rep.add(S, f"{label}: raysweep.prepare.train peak GPU memory, GB allocated / reserved", rs[1])
        if bare:
            rep.add(S, f"{label}: bare PyTorch loop, s per epoch", fmt(bare[0]))
        if rs and bare:
            r = rs[0] / bare[0]
            rep.add(S, f"{label}: ratio raysweep / bare", fmt(r, 3), "<= 1.1", "yes" if r <= 1.1 else "no")


# ---- section 3: GPT-2 medium from its config ----------------------------------------------------------
def _tokens(n: int, length: int, vocab: int, dev, seed: int):
    from raysweep.data.base import Split

    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab - 1, (n, length), generator=g)
    return Split(x.to(dev), torch.randint(0, 2, (n,), generator=g).to(dev))


def unlearn_steps(model, method: str, forget, retain, bs: int, steps: int, dev, bf16: bool) -> tuple[float, str]:
    """`steps` steps of the shared unlearning loop (Unlearner.execute); median seconds of steps 2..n, peak memory."""
    from raysweep.unlearn import METHODS
    from raysweep.unlearn.base import Budget, Context

    meth = METHODS.get(method, "method")()
    hp = meth.hyper({"batch_size": bs})
    model.zero_grad(set_to_none=True)  # as a trial's fresh θ_initial: no gradients left from earlier rows
    ctx = Context(model, forget, retain, retain, Budget(float("inf")), torch.Generator().manual_seed(0), hp)
    reset_peak(dev)
    meth.setup(ctx)  # SCRUB: the frozen teacher copy
    cost = sum(n * c for _, n, c in meth.plan(ctx, 0))
    ctx.budget = Budget(steps * cost)
    stamps = [time.perf_counter()]

    def on_step(_loss: float) -> bool:
        sync(dev)
        stamps.append(time.perf_counter())
        return False

    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        done, diverged, _ = meth.execute(ctx, on_step)
    if done != steps or diverged:
        raise RuntimeError(f"{method}: {done} of {steps} steps ran (diverged={diverged})")
    per = [b - a for a, b in zip(stamps, stamps[1:])]
    mem = peak(dev)
    ctx.state.clear()
    return statistics.median(per[1:] if len(per) > 1 else per), mem


def section_gpt2(rep: Report, dev: torch.device, smoke: bool, cap_s: float) -> None:
    from raysweep.config import TrainConfig, load_scenario
    from raysweep.models import build_model
    from raysweep.prepare.train import train

    S = "3 GPT-2 medium"
    end = time.perf_counter() + cap_s
    if smoke:
        arch, n_pos, bs, length, steps = dict(width=64, layers=2, heads=2), 64, 2, 32, 3
    else:  # GPT-2 medium: 24 blocks, width 1024, 16 heads, 1024 positions, GPT-2's vocabulary
        arch, n_pos, bs, length, steps = dict(width=1024, layers=24, heads=16), 1024, 16, 512, 5
    def build():
        try:  # parameters created and initialised on the device: 355 M normal draws on a CPU take seconds
            with dev:
                return build_model("gpt2-tiny", 2, (n_pos,), 0, **arch).to(dev)
        except Exception as e:  # noqa: BLE001
            log(f"building on {dev} failed ({type(e).__name__}: {e}); building on the CPU")
            free()
            return build_model("gpt2-tiny", 2, (n_pos,), 0, **arch).to(dev)

    t, model = timed(dev, build)
    n_params = sum(p.numel() for p in model.parameters())
    attn = getattr(getattr(model.net, "config", None), "_attn_implementation", "?")
    label = f"{'tiny GPT-2 (smoke)' if smoke else 'GPT-2 medium'} ({n_params / 1e6:.1f} M parameters, attention {attn})"
    rep.add(S, f"{label}: built from its config and moved to {dev.type}, s", fmt(t, 3))
    vocab = model.net.config.vocab_size
    try:
        base = replace(load_scenario("paper-imdb").train, epochs=1)
    except Exception as e:  # noqa: BLE001
        log(f"paper-imdb preset unavailable ({e}); using its documented recipe")
        base = TrainConfig(optimizer="adamw", lr=2e-5, batch_size=16, weight_decay=0.01, bf16=True, epochs=1)
    cfg = replace(base, batch_size=bs, warmup_epochs=0.0)
    shape = f"batch {bs} x {length} tokens"

    def train_step():
        train(model, _tokens(2 * bs, length, vocab, dev, 1), cfg, seed=1, progress=quiet)  # warm-up
        data = _tokens(steps * bs, length, vocab, dev, 2)
        reset_peak(dev)
        t, _ = timed(dev, train, model, data, cfg, seed=2, progress=quiet)
        return t / steps, peak(dev)

    res = rep.guard(S, f"train step ({shape}, bf16 autocast, AdamW; raysweep.prepare.train)", train_step)
    if res:
        rep.add(S, f"train step ({shape}, bf16 autocast, AdamW; raysweep.prepare.train), s", fmt(res[0], 3))
        rep.add(S, "train step peak GPU memory, GB allocated / reserved (README estimate 13-21 GB)", res[1])
    free()
    forget = _tokens(steps * bs, length, vocab, dev, 3)
    retain = _tokens(steps * bs, length, vocab, dev, 4)
    quarter = torch.cuda.get_device_properties(dev).total_memory / 4e9 if dev.type == "cuda" else None
    for method, family in (("gd", "plain (GD)"), ("scrub", "SCRUB, with its frozen teacher")):
        for bf16 in (False, True):
            prec = "bf16 autocast around the loop (not what unlearn does today)" if bf16 else "fp32, as unlearn runs"
            m = f"unlearn step {family}, {shape}, {prec}"
            if time.perf_counter() > end:
                rep.skip(S, m, f"section time cap ({cap_s:.0f}s) reached")
                continue
            r = rep.guard(S, m, unlearn_steps, model, method, forget, retain, bs, steps, dev, bf16)
            if not r:
                continue
            rep.add(S, f"{m}, s", fmt(r[0], 3))
            if quarter is None:
                rep.add(S, f"{m}: peak GPU memory, GB", r[1])
            else:
                reserved = float(r[1].split("/")[1])
                rep.add(S, f"{m}: peak GPU memory, GB allocated / reserved", r[1], f"<= {quarter:.1f} (a quarter card)",
                        "yes" if reserved <= quarter else "no")
            free()


# ---- section 4: GUS on two devices (or precisions) for the same weights --------------------------------
def gus_agreement(rep: Report, store: str, scen_args: list[str], dev: torch.device) -> None:
    """Per-poison GUS scores of θ_initial through Scenario.evaluate: cuda vs cpu (GPU runs), and cpu fp32 vs
    cpu fp64 (always; the smoke test's agreement row). scen_args: the CLI's --scenario / --set arguments."""
    from raysweep.artifacts import LocalStore
    from raysweep.config import load_scenario
    from raysweep.metrics.gus import gus_score_sets
    from raysweep.prepare.scenario import Scenario, prepare

    S = "4 end to end"
    cfg = load_scenario(scen_args[scen_args.index("--scenario") + 1],
                        [v for k, v in zip(scen_args, scen_args[1:]) if k == "--set"])
    prepare(cfg, store, "cpu", log=quiet)  # a no-op when the CLI prepare above succeeded
    cpu = Scenario.load(LocalStore(store), cfg, "cpu")
    ref, ref_scores = cpu.scored(cpu.new_model("initial"), parts=("all",), full=False)
    s_cpu = ref_scores["scores"]
    k = len(s_cpu)
    if dev.type == "cuda":
        gpu = Scenario.load(LocalStore(store), cfg, dev)
        for tf32 in (None, False):
            old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            if tf32 is not None:
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
            try:
                out, out_scores = gpu.scored(gpu.new_model("initial"), parts=("all",), full=False)
            finally:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
            d = (out_scores["scores"] - s_cpu).abs().max().item()
            label = "torch defaults" if tf32 is None else "TF32 off"
            rep.add(S, f"GUS agreement, cuda ({label}) vs cpu, same θ_initial: max |ΔI| over {k} poisons", f"{d:.2e}",
                    "<= 1e-4", "yes" if d <= 1e-4 else "no")
            rep.add(S, f"GUS agreement, cuda ({label}) vs cpu: |Δ GUS|", f"{abs(out['gus'] - ref['gus']):.2e}",
                    "<= 1e-4", "yes" if abs(out["gus"] - ref["gus"]) <= 1e-4 else "no")
    ps = cpu.poisoned
    m64 = cpu.new_model("initial").double()
    y = ps.train.y[ps.poison_idx].cpu()
    s64 = gus_score_sets(m64, ps.clean_x.double(), y, [ps.noise], ps.eps, cpu.cfg.score, ps.grad_scale)[0]
    d = (s64 - s_cpu).abs().max().item()
    rep.add(S, f"GUS agreement, cpu fp32 vs cpu fp64, same θ_initial (fp32 as raysweep evaluates, BatchNorm "
            f"folded; fp64 unfolded): max |ΔI| over {k} poisons", f"{d:.2e}",
            "<= 1e-4", "yes" if d <= 1e-4 else "no")
