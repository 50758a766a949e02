"""Choosing how a low-rank-core adapter applies its update.

Two exact ways to compute ``y = W' x + b`` with ``W' = W + U M Vh`` (``U: [d_out, k]``, ``M: [k, k]``,
``Vh: [k, d_in]``):

* ``lowrank``: ``W x + U (M (Vh x))`` costs ``k (d_in + k + d_out)`` extra per token in the forward and
  ``k (d_in + 2k + d_out)`` in the backward;
* ``rebuild``: form ``W'`` once per step (``d_out k d_in`` plus ``k^2`` times the narrower side) and run one dense
  matmul; the backward's core gradient costs ``k (d_in + d_out) + k^2`` per token (``core_linear``).

The two agree to rounding, not bit for bit. ``auto`` (the default) therefore picks by counting those multiply-adds:
a pure function of the layer shape, ``k``, the tokens in the batch and whether gradients are needed, so every run,
and every resumed run, of the same model on the same data takes the same path and computes the same numbers.
``timed`` instead times both on the first batch of each (shape, k bucket, token-count bucket, grad mode, device,
dtype) and keeps the faster on this machine: sometimes quicker, but the choice can differ between runs.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Sequence, Tuple

import torch

COMPUTE_PATHS = ("auto", "timed", "lowrank", "rebuild")

_DECISIONS: Dict[Tuple, str] = {}


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(run: Callable[[], None], device: torch.device) -> float:
    _synchronise(device)
    start = time.perf_counter()
    run()
    _synchronise(device)
    return time.perf_counter() - start


def measure_fastest(
    candidates: Dict[str, Callable[[], torch.Tensor]],
    grad_inputs: Sequence[torch.Tensor],
    device: torch.device,
    repeats: int = 5,
) -> str:
    """Name of the candidate with the smallest median time; with ``grad_inputs`` the backward is timed too.

    Gradients are taken with ``torch.autograd.grad`` so nothing accumulates into ``.grad`` of real parameters.
    """
    timings = {}
    for name, forward in candidates.items():

        def run(forward: Callable[[], torch.Tensor] = forward) -> None:
            out = forward()
            if grad_inputs:
                torch.autograd.grad(out.sum(), list(grad_inputs))

        run()  # warm-up: allocator, kernels, lazy init
        times = sorted(_time_once(run, device) for _ in range(repeats))
        timings[name] = times[len(times) // 2]
    return min(timings, key=timings.get)


def rank_bucket(k: int, width: int = 16) -> int:
    """Layers whose k differ by a few (budget rounding) share one measurement."""
    return (k + width - 1) // width


def rank_bucket_range(bucket: int, width: int = 16) -> str:
    """The ``k`` values that share ``bucket``, e.g. ``241-256``."""
    return f"{max(1, (bucket - 1) * width + 1)}-{bucket * width}"


def token_bucket(num_tokens: int) -> int:
    """Power-of-two bucket so that variable-length batches reuse one decision."""
    return max(num_tokens, 1).bit_length()


def cached_choice(key: Tuple, choose: Callable[[], str]) -> str:
    if key not in _DECISIONS:
        _DECISIONS[key] = choose()
    return _DECISIONS[key]



def clear_decisions() -> None:
    """Forget every cached choice (benchmarks that build several models in one process)."""
    _DECISIONS.clear()


def counted_choice(d_out: int, d_in: int, k: int, tokens: int, grad: bool) -> str:
    """The path with fewer multiply-adds for this layer and batch (see the module docstring); ties go to lowrank."""
    lowrank = tokens * k * (d_in + k + d_out)
    rebuild = d_out * k * d_in + min(d_out, d_in) * k * k
    if grad:
        lowrank += tokens * k * (d_in + 2 * k + d_out)
        rebuild += tokens * k * (d_in + d_out + k)
    return "lowrank" if lowrank <= rebuild else "rebuild"
