"""Timing steps, and the two schedules that time several configurations against each other.

* :func:`isolated_runs`: every configuration measured on its own (in a fresh subprocess or in this process), the
  whole sweep repeated ``rounds`` times round-robin; ratios between configurations are ratios of medians;
* :func:`paired_rounds`: every configuration's step ready in one process, each timed round runs one step of each
  (rotating the order), so slow drifts of a shared machine hit all alike; ratios are medians of per-round ratios.

:func:`ratio` picks the statistic that fits how the two rows were timed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .load import ForeignLoad


def synchronise(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU needs no wait)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_call(step: Callable[[], None], device: str) -> float:
    """Seconds one ``step()`` takes, the device's queued work included."""
    synchronise(device)
    start = time.perf_counter()
    step()
    synchronise(device)
    return time.perf_counter() - start


def time_steps(step: Callable[[], None], warmup: int, steps: int, device: str, label: str, show: bool
               ) -> List[float]:
    """Seconds per step for ``steps`` steps after ``warmup`` untimed ones."""
    times = []
    for index in tqdm(range(warmup + steps), desc=label, leave=False, disable=not show):
        elapsed = timed_call(step, device)
        if index >= warmup:
            times.append(elapsed)
    return times


def isolated_runs(configs: Sequence[str], rounds: int, run_one: Callable[[str], Dict[str, Any]], load: ForeignLoad,
                  desc: str) -> Dict[str, List[Dict[str, Any]]]:
    """``run_one(name)`` for every configuration, ``rounds`` times interleaved (round-robin), each run repeated while
    other processes spoiled it (``load``); per configuration, the kept result of every round."""
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in configs}
    progress = tqdm(total=rounds * len(configs), desc=desc, unit="config")
    for round_index in range(rounds):
        for name in configs:
            progress.set_postfix_str(f"round {round_index + 1}/{rounds}: {name}")
            runs[name].append(load.run_clean(lambda name=name: run_one(name), name))
            progress.update()
    progress.close()
    return runs


@dataclasses.dataclass
class PairedTimes:
    """Per configuration, the seconds of its step in every round; per round, the others' load and the attempts."""

    times: Dict[str, List[float]]
    foreign_cpu_cores_per_round: List[Optional[float]]
    attempts_per_round: List[int]


def paired_rounds(steps: Mapping[str, Callable[[], None]], rounds: int, device: str, load: ForeignLoad
                  ) -> PairedTimes:
    """``rounds`` timed rounds of one step of each configuration (already warmed up), in an order that rotates every
    round; a round during which other processes used too much CPU is repeated (``load``)."""
    configs = list(steps)
    times: Dict[str, List[float]] = {name: [] for name in configs}
    loads, attempts = [], []
    for round_index in tqdm(range(rounds), desc="paired: timed rounds", unit="round"):
        order = configs[round_index % len(configs):] + configs[:round_index % len(configs)]

        def one_round(order: List[str] = order) -> Dict[str, Any]:
            return {name: timed_call(steps[name], device) for name in order}

        kept = load.run_clean(one_round, f"paired round {round_index + 1}")
        loads.append(kept.pop("foreign_cpu_cores", None))
        attempts.append(kept.pop("attempts"))
        for name in configs:
            times[name].append(kept[name])
    return PairedTimes(times, loads, attempts)


def step_statistics(times: Sequence[float]) -> Dict[str, float]:
    """``median_s``, ``p25_s``, ``p75_s`` and ``n_steps`` of step times."""
    return {"median_s": float(np.median(times)), "p25_s": float(np.percentile(times, 25)),
            "p75_s": float(np.percentile(times, 75)), "n_steps": len(times)}


def ratio(summary: Mapping[str, Mapping[str, Any]], numerator: str, denominator: str) -> Optional[float]:
    """Median of per-round ratios for paired timings (same round, same conditions), else the ratio of medians.

    ``summary`` rows carry ``timing`` ("paired" or "isolated"), ``step_times_s`` and ``median_s``; None when either
    configuration is missing.
    """
    if numerator not in summary or denominator not in summary:
        return None
    top, bottom = summary[numerator], summary[denominator]
    if top["timing"] == bottom["timing"] == "paired":
        return float(np.median(np.asarray(top["step_times_s"]) / np.asarray(bottom["step_times_s"])))
    return top["median_s"] / bottom["median_s"]
