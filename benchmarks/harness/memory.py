"""How much memory a measured piece of work takes: the process's resident set, its peaks, and CUDA allocations.

On Linux the current and peak resident set size come from ``/proc/self/status`` (``VmRSS``, ``VmHWM``); writing
``5`` to ``/proc/self/clear_refs`` resets the peak to the current size, so a peak can cover just the measured work.
Where that reset is refused, the process-lifetime peak (``ru_maxrss``) stands in. On CUDA the peak is
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import gc
import re
import resource
from pathlib import Path
from typing import Dict

import torch

MIB = 1024.0 * 1024.0


def _proc_status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{field} missing from /proc/self/status")
    return int(match.group(1))


def rss_bytes() -> int:
    """This process's resident set size now."""
    return _proc_status_kib("VmRSS") * 1024


def peak_rss_since_reset_bytes() -> int:
    """The peak resident set size since the last :func:`reset_peak_rss` (since the start without one)."""
    return _proc_status_kib("VmHWM") * 1024


def lifetime_peak_rss_bytes() -> int:
    """The peak resident set size of the whole process life, which no reset touches (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the peak resident set size to the current one; False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak memory that the work between :meth:`start` and :meth:`stop` adds on top of what was allocated before.

    On CUDA: ``max_memory_allocated`` minus the allocation at the start; on CPU: the peak resident set size (reset at
    the start) minus the resident set size at the start, so whatever the C allocator keeps mapped counts too.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.baseline = 0
        self.method = ""

    def start(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            self.method = "torch.cuda.max_memory_allocated() - memory_allocated() before the first step"
            return
        self.baseline = rss_bytes()
        if reset_peak_rss():
            self.method = "peak RSS (VmHWM, reset via /proc/self/clear_refs) - RSS before the first step"
        else:
            self.method = "ru_maxrss (process-lifetime peak, not reset) - RSS before the first step"

    def stop(self) -> Dict[str, float]:
        """``peak_mib`` (over the start), ``baseline_mib``, ``peak_absolute_mib`` and the ``method`` used."""
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self.method.startswith("peak RSS"):
            peak = peak_rss_since_reset_bytes()
        else:
            peak = lifetime_peak_rss_bytes()
        return {"peak_mib": (peak - self.baseline) / MIB, "baseline_mib": self.baseline / MIB,
                "peak_absolute_mib": peak / MIB, "method": self.method}
