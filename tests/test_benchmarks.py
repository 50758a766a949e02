"""The benchmark's own definitions (not its timings): the matched-compute k."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import adapter_step  # noqa: E402


def test_matched_compute_k_is_the_largest_whose_per_token_work_fits_lora() -> None:
    shapes = {"q": (384, 384), "w_1": (1536, 384), "w_2": (384, 1536)}
    k = adapter_step.compute_matched_k(shapes, rank=16)
    assert k == 15
    for d_out, d_in in shapes.values():
        assert k * (d_in + k + d_out) <= 16 * (d_in + d_out)
    assert any((k + 1) * (d_in + k + 1 + d_out) > 16 * (d_in + d_out) for d_out, d_in in shapes.values())


def test_op_counter_tells_kernels_from_views() -> None:
    import torch

    from harness.op_count import count_ops

    weight = torch.randn(3, 4, requires_grad=True)
    x = torch.randn(2, 4)

    def step() -> None:
        (x @ weight.t()).view(-1).sum().backward()  # t and view are views; mm, sum and the backward's ops are not

    step()
    counts = count_ops(step)
    assert counts["top_kernels"].get("aten.mm", 0) >= 2  # forward product and the weight gradient
    assert "aten.t" not in counts["top_kernels"] and "aten.view" not in counts["top_kernels"]
    assert counts["all"] > counts["kernels"] > 0
