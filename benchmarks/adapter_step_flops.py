#!/usr/bin/env python
"""Arithmetic of one training step per adapter configuration, counted, not timed.

Counts the floating-point operations of ``benchmarks/adapter_step.py``'s step (same model, inputs and
configurations) with ``torch.utils.flop_counter.FlopCounterMode``, which sees every matmul, convolution and attention
product dispatched in forward and backward (custom autograd functions included; LAPACK solves are not counted).
SSVD / SSVD-O are counted on each fixed compute path, since ``auto`` picks by timing. The ratio to the frozen floor
is a lower bound for the timed ratio that no exact implementation of the same formulas can beat.

Usage::

    python benchmarks/adapter_step_flops.py --output benchmarks/results/adapter_step_flops.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adapter_step  # noqa: E402  (the timed benchmark's model, inputs and configurations)
from harness.output import save_if_asked, stamp  # noqa: E402

CONFIGS = ("frozen_floor", "full_finetune", "lora", "dora", "pissa", "ssvd", "ssvd_o", "ssvd_matched_compute",
           "ssvd_o_matched_compute")
PATH_DEPENDENT = ("ssvd", "ssvd_o", "ssvd_matched_compute", "ssvd_o_matched_compute")


def count(name: str, settings: adapter_step.Settings, path: Optional[str]) -> int:
    step = adapter_step.warm_step_on_path(name, settings, path)
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = adapter_step.Settings()
    torch.set_num_threads(settings.threads)
    flops: Dict[str, int] = {}
    runs = [(name, path) for name in CONFIGS
            for path in (("lowrank", "rebuild") if name in PATH_DEPENDENT else (None,))]
    for name, path in tqdm(runs, desc="counting", unit="config"):
        flops[f"{name}:{path}" if path else name] = count(name, settings, path)
    floor = flops["frozen_floor"]
    report = {
        **stamp("adapter_step_flops", argv),
        "settings": {"batch": settings.batch, "seconds": settings.seconds, "blocks": settings.blocks,
                     "lora_rank": settings.lora_rank, "outer_share": settings.outer_share},
        "counter": "torch.utils.flop_counter.FlopCounterMode, one training step after one warm-up step",
        "flops": flops,
        "vs_frozen_floor": {name: value / floor for name, value in flops.items()},
    }
    for name, value in flops.items():
        print(f"{name:34s} {value / 1e9:8.2f} GFLOP  {value / floor:6.3f} x floor")
    save_if_asked(args.output, report)


if __name__ == "__main__":
    main()
