"""Device and thread choices, and how a command exits, in one place."""
from __future__ import annotations

import os
import sys

import torch

from .errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """auto -> cuda when present, else cpu. Asking for cuda on a machine without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", name, "cpu or auto (no CUDA device is visible here)")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError("device", name, "auto, cpu, cuda or cuda:N")
    return torch.device(name)


def deterministic(device) -> None:
    """torch's deterministic algorithms on the CPU: measured to cost nothing and change nothing there
    (docs/decisions.md, "Determinism"); RAYSWEEP_DETERMINISTIC=0 turns them off. Through
    `use_deterministic_algorithms`, although it imports torch's compiler (seconds): setting the same flag
    through `set_deterministic_debug_mode` skips that import but made training slower (docs/decisions.md)."""
    if torch.device(device).type == "cpu" and os.environ.get("RAYSWEEP_DETERMINISTIC", "1") != "0":
        torch.use_deterministic_algorithms(True, warn_only=True)  # never an error: a warning at most


def set_threads(n: int | None = None) -> int:
    """torch intra-op threads: n, or $OMP_NUM_THREADS, or all cores."""
    n = n or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def quick_exit(rc: int | None) -> None:
    """Exit once everything the process owes is done, without the interpreter's own teardown of
    torch's and Ray's native libraries (seconds of a command's wall time: docs/performance.md). First
    what the interpreter itself does at exit, in its order: wait for other non-daemon threads (after
    waking idle thread pools), run every atexit handler (Ray's shutdown, trackers, temporary folders,
    logging); then flush the output and leave."""
    import atexit
    import threading

    threading._shutdown()  # what the interpreter calls first at exit: thread-pool wake-ups, then joins
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    os._exit(int(rc or 0))


def node_id() -> str:
    """The Ray node this process runs on ("" outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray
        return ""
