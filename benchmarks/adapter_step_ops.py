#!/usr/bin/env python
"""Operators per training step, per adapter configuration: the CPU-measurable proxy for GPU launch cost.

On a GPU the small per-layer work of SSVD / SSVD-O (building skew-symmetric generators, the Cayley solves, the core
products) costs launches, not arithmetic: at a small batch SSVD ran at 4.15x the frozen step on an H200 while its
arithmetic is 1.31x (``adapter_step_cuda.json``, ``adapter_step_flops.json``). This counts the aten operators of
``benchmarks/adapter_step.py``'s step (same model, inputs and configurations; ``harness/op_count.py`` says how),
once, after a warm-up step. Counts are exact and machine-independent. ``extra`` is a configuration's count minus the
frozen floor's: what the adapters add; ``extra_vs_lora`` compares that with LoRA's.

Usage::

    python benchmarks/adapter_step_ops.py --output benchmarks/results/adapter_step_ops.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adapter_step  # noqa: E402  (the timed benchmark's model, inputs and configurations)
from harness.op_count import count_ops  # noqa: E402
from harness.output import save_if_asked, stamp  # noqa: E402

CONFIGS = ("frozen_floor", "full_finetune", "lora", "dora", "pissa", "ssvd", "ssvd_o", "peft_lora", "peft_dora")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--blocks", type=int, default=adapter_step.Settings.blocks)
    args = parser.parse_args(argv)
    settings = adapter_step.Settings(blocks=args.blocks)
    torch.set_num_threads(settings.threads)
    counts: Dict[str, Dict[str, Any]] = {}
    for name in tqdm(CONFIGS, desc="counting", unit="config"):
        counts[name] = count_ops(adapter_step.warm_step_on_path(name, settings))
    floor = counts["frozen_floor"]
    extra = {name: {kind: c[kind] - floor[kind] for kind in ("all", "kernels")} for name, c in counts.items()}
    report = {
        **stamp("adapter_step_ops", argv),
        "settings": {"batch": settings.batch, "seconds": settings.seconds, "blocks": settings.blocks,
                     "lora_rank": settings.lora_rank, "outer_share": settings.outer_share, "compute_path": "auto"},
        "counter": "aten operators below autograd (TorchDispatchMode), forward and backward of one training step "
                   "after one warm-up step; kernels = all minus view-only operators",
        "ops": counts,
        "extra": extra,
        "extra_vs_lora": {name: {kind: e[kind] / extra["lora"][kind] for kind in e}
                          for name, e in extra.items() if name != "frozen_floor"},
    }
    for name, c in counts.items():
        print(f"{name:16s} all {c['all']:6d}  kernels {c['kernels']:6d}  extra kernels {extra[name]['kernels']:6d}")
    save_if_asked(args.output, report)


if __name__ == "__main__":
    main()
