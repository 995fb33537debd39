"""Durations and time-left lines for long loops (no Ray: `train` and the sweep's status both use it)."""
from __future__ import annotations

import math

PROGRESS_EVERY_S = 30.0     # a long loop says where it is at most this often between its own lines


def fmt_duration(s: float | None) -> str:
    """42s, 3m05s, 2h07m; '-' when unknown."""
    if s is None or not math.isfinite(s):
        return "-"
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def eta_line(label: str, done: float, total: int, elapsed_s: float, detail: str = "", unit: str = "epoch") -> str:
    """`[label] epoch 3/10  <detail>  37s elapsed, ~1m26s left`; `done` may be fractional (mid-epoch)."""
    whole = int(math.floor(done + 1e-9))
    pos = f"{unit} {whole}/{total}" if done - whole < 1e-9 else f"{unit} {whole + 1}/{total} {done - whole:.0%}"
    left = "done" if done >= total else \
        f"~{fmt_duration(elapsed_s / done * (total - done))} left" if done > 0 else "time left unknown"
    return f"[{label}] {pos}  {detail + '  ' if detail else ''}{fmt_duration(elapsed_s)} elapsed, {left}"
