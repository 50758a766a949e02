"""CPU time that processes other than the benchmark take while it measures, and repeating what they spoiled.

Other jobs on a 2-core machine slow a 2-thread benchmark far more than their share (threads wait on each other), so
every measurement reports this load, waits for a quiet machine first and is repeated when the load was too high.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from tqdm import tqdm


class ForeignLoad:
    """CPU time that processes other than this benchmark used while it ran, in cores (0 = a quiet machine).

    Busy time of the whole machine from ``/proc/stat`` minus this process's and its children's CPU time.
    """

    def __init__(self, threshold: float = 0.2, wait_quiet_s: float = 0.0, retries: int = 0) -> None:
        self.available = Path("/proc/stat").exists()
        self.ticks = os.sysconf("SC_CLK_TCK") if self.available else 100
        self.threshold = threshold
        self.wait_quiet_s = wait_quiet_s
        self.retries = retries
        self.last: Optional[float] = None  # load during the latest measurement; None before the first

    def _busy_seconds(self) -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / self.ticks

    @staticmethod
    def _own_seconds() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    @contextlib.contextmanager
    def measure(self, into: Dict[str, Any]) -> Iterator[None]:
        """Set ``into["foreign_cpu_cores"]`` to the other processes' load during the ``with`` block."""
        if not self.available:
            yield
            return
        busy, own, start = self._busy_seconds(), self._own_seconds(), time.perf_counter()
        yield
        wall = time.perf_counter() - start
        foreign = (self._busy_seconds() - busy) - (self._own_seconds() - own)
        into["foreign_cpu_cores"] = self.last = round(max(foreign, 0.0) / wall, 3)

    def wait_until_quiet(self, sample_s: float = 2.0) -> None:
        """Wait (at most ``wait_quiet_s``) until other processes use less than ``threshold`` cores.

        Returns at once when the latest measurement was quiet, so a quiet machine costs no waiting.
        """
        if self.last is not None and self.last < self.threshold:
            return
        deadline = time.monotonic() + self.wait_quiet_s
        while self.available and self.wait_quiet_s > 0:
            sample: Dict[str, Any] = {}
            with self.measure(sample):
                time.sleep(sample_s)
            if sample["foreign_cpu_cores"] < self.threshold or time.monotonic() >= deadline:
                return

    def run_clean(self, work: Callable[[], Dict[str, Any]], label: str) -> Dict[str, Any]:
        """``work()`` repeated (up to ``retries`` times) while others used too much CPU; the least loaded result wins.

        The result gets ``foreign_cpu_cores`` and ``attempts``.
        """
        attempts: List[Dict[str, Any]] = []
        for _ in range(self.retries + 1):
            self.wait_until_quiet()
            load: Dict[str, Any] = {}
            with self.measure(load):
                result = work()
            attempts.append({**result, **load})
            if load.get("foreign_cpu_cores", 0.0) <= self.threshold:
                break
            tqdm.write(f"warning: other processes used {load['foreign_cpu_cores']:.2f} CPU cores during {label}; "
                       + ("repeating it" if len(attempts) <= self.retries else "keeping the least loaded attempt"))
        best = min(attempts, key=lambda a: a.get("foreign_cpu_cores", 0.0))
        best["attempts"] = len(attempts)
        return best
