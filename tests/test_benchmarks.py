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
