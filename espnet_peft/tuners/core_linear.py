"""``y = x (W + U M Vh)^T + b`` with a backward that computes only what a frozen-``W`` adapter needs.

Plain autograd through ``F.linear(x, W + U @ M @ Vh)`` takes the full ``d_out x d_in`` weight gradient
``gy^T x`` and then projects it onto the core (``U^T (gy^T x) Vh^T``): the cost of fully fine-tuning the layer.
The core's gradient only needs the two projections ``gy U`` and ``x Vh^T`` (``tokens x k`` each)::

    dL/dM = (gy U)^T (x Vh^T)

and the input gradient ``gy W'`` is what a frozen layer pays anyway. The forward is the same dense matmul as plain
autograd's, so outputs are identical; gradients agree up to floating-point summation order.

Under autocast ``W'`` is formed in the weight's dtype, then the matmul runs in the autocast dtype as ``F.linear``'s
would, and the backward computes in the dtype of the incoming gradient.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch.nn import functional as F


def low_rank_update(u: torch.Tensor, core: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """``U M Vh`` (``[d_out, d_in]``), multiplying the k x k core into the narrower factor first."""
    if u.shape[0] <= vh.shape[1]:
        return (u @ core) @ vh
    return u @ (core @ vh)


class _CoreLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], u: torch.Tensor,
                core: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
        merged = (weight + low_rank_update(u, core.to(weight.dtype), vh)).to(x.dtype)
        ctx.save_for_backward(x, merged, u, vh)
        ctx.core_dtype, ctx.weight_dtype = core.dtype, weight.dtype
        return F.linear(x, merged, None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        x, merged, u, vh = ctx.saved_tensors
        needs_x, needs_weight, needs_bias, needs_u, needs_core, needs_vh = ctx.needs_input_grad
        if needs_u or needs_vh:
            raise RuntimeError("the SVD factors are frozen buffers; use compute_path 'lowrank' to train them")
        dtype = grad_out.dtype
        flat_grad = grad_out.reshape(-1, grad_out.shape[-1])
        flat_x = x.reshape(-1, x.shape[-1])
        grad_x = grad_weight = grad_bias = grad_core = None
        if needs_x:
            grad_x = grad_out @ merged
        if needs_core:
            grad_core = ((flat_grad @ u.to(dtype)).T @ (flat_x @ vh.to(dtype).T)).to(ctx.core_dtype)
        if needs_weight:  # only when someone unfroze the base weight
            grad_weight = (flat_grad.T @ flat_x).to(ctx.weight_dtype)
        if needs_bias:
            grad_bias = flat_grad.sum(0).to(ctx.weight_dtype)
        return grad_x, grad_weight, grad_bias, None, grad_core, None


def core_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], u: torch.Tensor,
                core: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, weight + u @ core @ vh, bias)`` whose backward never forms the full weight gradient."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        # Cast here, with autograd on: autocast's own cast cache, filled inside a Function's forward (grad off),
        # would hand later ops a copy of a leaf ``x`` that is cut off from the graph.
        x = x.to(torch.get_autocast_dtype(device_type))
    with torch.autocast(device_type=device_type, enabled=False):
        return _CoreLinear.apply(x, weight, bias, u, core, vh)
