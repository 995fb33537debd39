"""The paper's scale on one GPU: one prepared check that measures it (docs/gpu.md).

1. ResNet-18 on CIFAR-10-sized data resident on the card (the bundled 10,000 images + synthetic ones to
   50,000): seconds per epoch through raysweep.prepare.train in fp32 and bf16, and the ratio to the same loop in
   bare PyTorch timed in the same run (goal <= 1.1).
2. Packing: 1, 2 and 4 concurrent unlearning trials on one card through `raysweep sweep`
   (--gpus-per-trial 1, 0.5, 0.25): trials per minute, peak GPU memory per trial, speed-up (goal >= 2.5 at 4).
3. GPT-2 medium built from its config (no download): a bf16 training step at batch 16 x 512 tokens and an
   unlearning step of each method family (plain GD, SCRUB with its teacher): time and peak memory.
4. GUS on the GPU equals GUS on the CPU for the same weights (max |ΔI| <= 1e-4), and `raysweep prepare` /
   `unlearn` / `sweep` run end to end with --device cuda on the tiny scenario.

Every part fails on its own (an ERROR row, never an abort) and guards its own time; the table is rewritten
after every row, so a run cut short still leaves what it measured.

    python bench/gpu_check.py docs/gpu_table.md              # one GPU, under 8 minutes on an H100
    python bench/gpu_check.py --smoke-test /tmp/smoke.md     # everything on the CPU at tiny sizes

Exit code 0: every row measured (goals may be missed: see the met? column); 1: an ERROR row; 2: no GPU.
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))
_env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
for _k, _v in _env.items():
    os.environ.setdefault(_k, _v)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)

import torch  # noqa: E402
from _gpu_cli import PACK_SPACE, e2e_prepare_unlearn, e2e_sweep, section_packing  # noqa: E402
from _gpu_sections import Report, free, gus_agreement, log, section_gpt2, section_resnet  # noqa: E402

TINY = ["--scenario", "tiny"]
SMOKE_TINY = ["--scenario", "tiny", "--set", "train_size=600", "--set", "attack_params.k=32", "--set",
              "val_size=100", "--set", "train.epochs=1", "--threads", "1"]
# Packing on the card: ResNet-18 on the bundled 10,000 images, 2 epochs; a trial at budget 1.0 is 20,000
# sample-gradients (~1.5 ResNet-18 epochs of 10,000 images) plus its evaluation.
PACK = ["--scenario", "default", "--set", "model=resnet18", "--set", "train.epochs=2"]
# Section caps in seconds (GPU run); the packing section gets what is left of the budget.
CAPS = {"resnet": 110, "gpt2": 70, "e2e": 80, "e2e_sweep": 60}
# The smoke test checks that every part runs: no caps short enough to skip anything on a busy CPU.
SMOKE_CAPS = {"resnet": 300, "gpt2": 300, "e2e": 300, "e2e_sweep": 300}


class OutOfTime(Exception):
    pass


def device_line(dev: torch.device) -> str:
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        drv = ""
        try:
            drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
        return (f"{p.name}, {p.total_memory / 2**30:.1f} GiB, CUDA {torch.version.cuda}, cuDNN "
                f"{torch.backends.cudnn.version()}, driver {drv or '?'}; {os.cpu_count()} CPU cores")
    return f"CPU only: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def versions() -> str:
    out = [f"torch {torch.__version__}"]
    for name in ("ray", "transformers", "optuna", "raysweep"):
        try:
            out.append(f"{name} {__import__(name).__version__}")
        except Exception:  # noqa: BLE001
            out.append(f"{name} ?")
    return ", ".join(out) + f", Python {platform.python_version()}"


def render(rep: Report, header: list[str]) -> str:
    lines = [*header, f"- wall time so far: {rep.elapsed():.0f} s", "",
             "| section | measure | value | goal | met? |", "|---|---|---|---|---|"]
    order = sorted(range(len(rep.rows)), key=lambda i: (rep.rows[i][0].split()[0], i))
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in rep.rows[i]) + " |" for i in order]
    if rep.notes:
        lines += ["", *[f"- {n}" for n in rep.notes]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default=None, help="Markdown file for the table")
    ap.add_argument("--out", dest="out_opt", default=None, help="same as the positional argument")
    ap.add_argument("--smoke-test", action="store_true", help="everything on the CPU at tiny sizes (< 1 minute)")
    ap.add_argument("--budget-s", type=float, default=None, help="total time budget (default 420 GPU, 600 smoke)")
    ap.add_argument("--sections", default="1,2,3,4", help="comma-separated sections to run (default all)")
    ap.add_argument("--workdir", default=None, help="folder for stores and sweeps (default: a temporary one)")
    a = ap.parse_args(argv)
    out = Path(a.out_opt or a.out or ("gpu_check_smoke.md" if a.smoke_test else "gpu_check.md"))
    smoke = a.smoke_test
    if not smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible; run with --smoke-test for the CPU version", file=sys.stderr)
        return 2
    dev = torch.device("cpu" if smoke else "cuda")
    if smoke:  # one thread everywhere: a busy 2-core CI machine makes multi-threaded CPU kernels crawl
        torch.set_num_threads(1)
    want = {s.strip() for s in a.sections.split(",")}
    caps = SMOKE_CAPS if smoke else CAPS
    rep = Report(a.budget_s or (600 if smoke else 420))
    header = ["# raysweep GPU check" + (" — CPU smoke test (tiny sizes: not GPU numbers)" if smoke else ""),
              "", f"- device: {device_line(dev)}", f"- versions: {versions()}",
              f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; host {platform.node()}",
              f"- command: `python bench/gpu_check.py {' '.join(argv if argv is not None else sys.argv[1:])}`"]

    def write():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(render(rep, header))
        tmp.replace(out)

    rep.on_change = write
    write()

    def alarm(_sig, _frame):
        raise OutOfTime(f"the time budget of {a.budget_s or 'default'} s (+30 s) ran out")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(rep.left()) + 30)
    torch.manual_seed(0)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="gpu-check-")).resolve()
    store = str(work / "store")
    spaces = work / "spaces"
    spaces.mkdir(parents=True, exist_ok=True)
    (spaces / "gd.yaml").write_text(PACK_SPACE)
    tiny = SMOKE_TINY if smoke else TINY
    log(f"{'smoke test' if smoke else 'GPU run'} on {dev}; work folder {work}; budget {rep.left():.0f}s")
    try:
        if "1" in want:
            log("section 1: ResNet-18 throughput")
            rep.guard("1 ResNet-18", "section", section_resnet, rep, dev, smoke, caps["resnet"], need_s=20)
        if "3" in want:
            log("section 3: GPT-2 medium steps")
            rep.guard("3 GPT-2 medium", "section", section_gpt2, rep, dev, smoke, caps["gpt2"], need_s=20)
        if "4" in want:
            log("section 4: end to end and GUS agreement")
            rep.guard("4 end to end", "prepare / unlearn", e2e_prepare_unlearn, rep, tiny, store, dev.type,
                      str(work), caps["e2e"], need_s=20)
            rep.guard("4 end to end", "GUS agreement", gus_agreement, rep, store, tiny, dev, need_s=10)
            if not smoke:
                rep.guard("4 end to end", "`raysweep sweep` on cuda", e2e_sweep, rep, tiny, store, "cuda",
                          str(work), str(spaces), caps["e2e_sweep"], need_s=30)
        if "2" in want:
            log("section 2: packing trials on one card")
            rep.guard("2 packing", "section", section_packing, rep, tiny if smoke else PACK, store, dev, str(work),
                      str(spaces), smoke, rep.left() - 5, tiny_row=smoke and "4" in want, need_s=40)
    finally:
        signal.alarm(0)
        free()
        rep.notes.append(f"Total wall time {rep.elapsed():.0f} s; work folder {work}.")
        write()
    print(render(rep, header))
    log(f"table written to {out}")
    return 1 if any(r[4] == "error" for r in rep.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
