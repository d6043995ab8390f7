"""Peak memory of this process, per stretch of work (benchmark rows, round metrics), and
whether another process still runs.

Linux keeps a high-water mark of resident memory (``VmHWM``) that writing ``5`` to
``/proc/self/clear_refs`` resets, so each round can report its own peak rather than the
process's lifetime maximum. Elsewhere the lifetime maximum is reported, which is an upper bound.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def reset_peak_memory() -> bool:
    """Start a new peak-memory window; False where the platform cannot (lifetime peak then)."""
    try:
        _CLEAR.write_text("5")
    except OSError:
        return False
    return True


def peak_memory_mb() -> float:
    """Peak resident memory in MiB since the last reset (or since the process started)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, exited and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True
