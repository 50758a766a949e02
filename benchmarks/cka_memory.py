#!/usr/bin/env python
"""Memory and speed of CKA at corpus scale: exact streaming linear CKA and minibatch kernel CKA vs full Gram matrices.

Data: two synthetic "models" (``X``, ``Y``: ``--frames`` frames x ``--dims`` dims each) generated chunk by chunk from a
per-chunk seed, so every method sees the same frames and no process ever holds all of them. ``X`` has a decaying
spectrum and ``Y = X W + noise``, so the CKA is well inside (0, 1).

Methods, each run in a fresh subprocess (its own peak RSS, ``ru_maxrss``):

* ``streaming``: ``StreamingLinearCKA`` fed chunk by chunk (exact biased and debiased linear CKA);
* ``minibatch_linear`` / ``minibatch_rbf``: ``MinibatchCKA`` on minibatches of ``--minibatch`` frames (frames are
  i.i.d. here, so consecutive frames already make random minibatches);
* ``full_gram_linear`` / ``full_gram_rbf``: the straightforward route, only at ``--small-frames`` (default 8k) where it
  fits: all frames in memory, the two ``n x n`` Grams (``gram_linear`` / ``gram_rbf``), then ``kernel_cka`` (biased
  for linear, the same number ``streaming`` computes; debiased for RBF, the number ``minibatch_rbf`` estimates).

The streaming and minibatch methods also run at ``--small-frames`` so that the ratios to the full-Gram route compare
like with like. Throughput is frames per second of the CKA work alone (data generation is timed apart); peak RSS is
the whole process (Python, torch and the data chunks included), and ``peak_over_baseline`` subtracts the RSS measured
after imports. The 1-min load average is recorded with every run: on a shared machine, a load above the core count
means other processes slowed the timings (the memory numbers are unaffected).

Usage::

    python benchmarks/cka_memory.py                      # 200k frames x 1024 dims: a few minutes on 2 CPU cores
    python benchmarks/cka_memory.py --quick --output /tmp/cka.json   # smoke run, < 1 min (8 fresh interpreters)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import torch
from tqdm import tqdm

from harness.memory import lifetime_peak_rss_bytes, rss_bytes
from harness.output import write_record
from harness.paths import RESULTS_DIR
from harness.subprocess_runs import run_worker, write_result

STREAMED = ("streaming", "minibatch_linear", "minibatch_rbf")
FULL_GRAM = ("full_gram_linear", "full_gram_rbf")
#: the RAM target of the streamed methods at full size
TARGET_BYTES = 2 * 1024**3


# ---------------------------------------------------------------------------------------------------------------------
# Data: deterministic chunks, never all frames at once


def chunks(frames: int, dims: int, chunk: int, seed: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` float32 chunks of at most ``chunk`` frames; chunk ``i`` depends only on ``(seed, i)``."""
    g = torch.Generator().manual_seed(seed)
    spectrum = torch.arange(1, dims + 1, dtype=torch.float32) ** -0.5
    mixing = torch.randn(dims, dims, generator=g) / dims**0.5
    for i, start in enumerate(range(0, frames, chunk)):
        g.manual_seed(seed * 1_000_003 + i + 1)
        rows = min(chunk, frames - start)
        x = torch.randn(rows, dims, generator=g) * spectrum
        y = x @ mixing + 0.3 * torch.randn(rows, dims, generator=g)
        yield x, y


# ---------------------------------------------------------------------------------------------------------------------
# One method in this process (the --worker side)


def run_method(method: str, frames: int, dims: int, chunk: int, minibatch: int, seed: int, threads: int) -> Dict:
    from espnet_peft.analysis.cka import MinibatchCKA, StreamingLinearCKA, gram_linear, gram_rbf, kernel_cka

    torch.set_num_threads(threads)

    baseline = rss_bytes()
    load_start = os.getloadavg()[0]
    gen_s = cka_s = 0.0
    values: Dict[str, float] = {}
    data = chunks(frames, dims, chunk, seed)

    def timed_chunks() -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        nonlocal gen_s
        while True:
            t = time.perf_counter()
            item = next(data, None)
            gen_s += time.perf_counter() - t
            if item is None:
                return
            yield item

    if method == "streaming":
        s = StreamingLinearCKA()
        for x, y in tqdm(timed_chunks(), total=-(-frames // chunk), desc=method, leave=False):
            t = time.perf_counter()
            s.update(x, y)
            cka_s += time.perf_counter() - t
        t = time.perf_counter()
        values = {"linear": s.compute(), "debiased_linear": s.compute(debiased=True)}
        cka_s += time.perf_counter() - t
    elif method in ("minibatch_linear", "minibatch_rbf"):
        m = MinibatchCKA(kernel=method.split("_")[1])
        for x, y in tqdm(timed_chunks(), total=-(-frames // chunk), desc=method, leave=False):
            t = time.perf_counter()
            for start in range(0, x.shape[0] - 3, minibatch):  # a tail under 4 frames has no HSIC_1: dropped
                m.update(x[start : start + minibatch], y[start : start + minibatch])
            cka_s += time.perf_counter() - t
        values = {f"debiased_{method.split('_')[1]}": float(m.compute())}
    elif method in FULL_GRAM:
        xs, ys = zip(*timed_chunks())
        x, y = torch.cat(xs), torch.cat(ys)
        del xs, ys
        t = time.perf_counter()
        if method == "full_gram_linear":
            values = {"linear": kernel_cka(gram_linear(x), gram_linear(y))}
        else:
            values = {"debiased_rbf": kernel_cka(gram_rbf(x), gram_rbf(y), debiased=True)}
        cka_s += time.perf_counter() - t
    else:
        raise ValueError(f"unknown method {method!r}")
    peak = lifetime_peak_rss_bytes()
    return {
        "method": method,
        "frames": frames,
        "dims": dims,
        "values": values,
        "peak_rss_bytes": peak,
        "baseline_rss_bytes": baseline,
        "peak_over_baseline_bytes": peak - baseline,
        "cka_seconds": cka_s,
        "generate_seconds": gen_s,
        "frames_per_second": frames / cka_s,
        # the machine is shared: a 1-min load above the core count means the timings were slowed by others
        "load_average_1min_start": load_start,
        "load_average_1min_end": os.getloadavg()[0],
    }


# ---------------------------------------------------------------------------------------------------------------------
# Driver: one fresh subprocess per (method, size)


def run_in_subprocess(method: str, frames: int, args: argparse.Namespace) -> Dict:
    worker = [
        "--worker", method, "--frames", str(frames), "--dims", str(args.dims), "--chunk", str(args.chunk),
        "--minibatch", str(args.minibatch), "--seed", str(args.seed), "--threads", str(args.threads),
    ]  # fmt: skip
    return run_worker(Path(__file__), worker, f"worker {method} at {frames} frames", show_stderr=True)


def gib(b: float) -> str:
    return f"{b / 1024**3:.2f}"


def summarise(results: List[Dict], args: argparse.Namespace) -> Dict:
    by = {(r["method"], r["frames"]): r for r in results}
    small, large = args.small_frames, args.frames
    ratios = {}
    for streamed, full in [("streaming", "full_gram_linear"), ("minibatch_rbf", "full_gram_rbf")]:
        s, f = by[(streamed, small)], by[(full, small)]
        ratios[f"{streamed}_vs_{full}_at_{small}"] = {
            "peak_rss_ratio": s["peak_rss_bytes"] / f["peak_rss_bytes"],
            "peak_over_baseline_ratio": s["peak_over_baseline_bytes"] / f["peak_over_baseline_bytes"],
            "throughput_ratio": s["frames_per_second"] / f["frames_per_second"],
        }
    checks = {
        "streaming_minus_full_gram_linear_at_small": by[("streaming", small)]["values"]["linear"]
        - by[("full_gram_linear", small)]["values"]["linear"],
        "minibatch_linear_minus_exact_debiased_at_large": by[("minibatch_linear", large)]["values"]["debiased_linear"]
        - by[("streaming", large)]["values"]["debiased_linear"],
        "minibatch_rbf_minus_full_debiased_rbf_at_small": by[("minibatch_rbf", small)]["values"]["debiased_rbf"]
        - by[("full_gram_rbf", small)]["values"]["debiased_rbf"],
    }
    under = {m: by[(m, large)]["peak_rss_bytes"] < TARGET_BYTES for m in STREAMED}
    # two float64 n x n Grams, before any centred copy: what the full route would need at the large size
    full_gram_at_large = 2 * 8 * large**2
    return {"ratios": ratios, "checks": checks, "under_2_gib_at_large": under,
            "full_gram_bytes_needed_at_large_lower_bound": full_gram_at_large}  # fmt: skip


def print_table(results: List[Dict], summary: Dict) -> None:
    header = (
        f"{'method':<18} {'frames':>8} {'peak RSS GiB':>12} {'over base GiB':>13} {'frames/s':>10} {'CKA s':>7} "
        f"{'load':>5}  values"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        vals = ", ".join(f"{k}={v:.6f}" for k, v in r["values"].items())
        print(
            f"{r['method']:<18} {r['frames']:>8} {gib(r['peak_rss_bytes']):>12} "
            f"{gib(r['peak_over_baseline_bytes']):>13} {r['frames_per_second']:>10.0f} {r['cka_seconds']:>7.1f} "
            f"{r['load_average_1min_end']:>5.1f}  {vals}"
        )
    print()
    for name, ratio in summary["ratios"].items():
        print(f"{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in ratio.items()))
    for name, value in summary["checks"].items():
        print(f"{name}: {value:+.2e}")
    print("under 2 GiB at full size:", summary["under_2_gib_at_large"])
    needed = gib(summary["full_gram_bytes_needed_at_large_lower_bound"])
    print(f"full Gram route at full size would need >= {needed} GiB (two float64 n x n Grams alone)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200_000, help="frames per model for the streamed methods")
    parser.add_argument("--small-frames", type=int, default=8192, help="size where the full-Gram route also runs")
    parser.add_argument("--dims", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=4096, help="frames generated (and streamed) at a time")
    parser.add_argument("--minibatch", type=int, default=1024, help="MinibatchCKA minibatch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads per worker; 1 by default: on a shared, loaded machine two OpenMP threads made small "
        "minibatch ops ~17x slower (spin-waiting), while one thread loses little on the matmul-bound paths",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: 10k / 1k frames x 128 dims")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "cka_memory.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = run_method(args.worker, args.frames, args.dims, args.chunk, args.minibatch, args.seed, args.threads)
        write_result(args.result_file, result)
        return
    if args.quick:
        args.frames, args.small_frames, args.dims, args.chunk, args.minibatch = 10_000, 1024, 128, 2048, 256

    plan = [(m, args.small_frames) for m in STREAMED + FULL_GRAM] + [(m, args.frames) for m in STREAMED]
    results = [run_in_subprocess(m, n, args) for m, n in tqdm(plan, desc="methods")]
    summary = summarise(results, args)
    print_table(results, summary)
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "config": {k: v for k, v in vars(args).items() if k not in ("worker", "result_file", "output")},
        "results": results,
        **summary,
    }
    write_record(args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
