"""SVD and rotation helpers shared by the SVD-based methods (PiSSA, SSVD, SSVD-O)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def top_singular_triplets(
    weight: torch.Tensor, k: int, niter: Optional[int] = None
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` thin SVD of ``weight`` (``[d_out, d_in]``) in fp32: ``U [d_out, k]``, ``S [k]``, ``V [d_in, k]``.

    ``niter=None`` runs an exact SVD; an integer runs ``torch.svd_lowrank`` with that many power iterations.
    """
    weight = weight.float()
    if niter is None:
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        return u[:, :k].contiguous(), s[:k].contiguous(), vh[:k].T.contiguous()
    u, s, v = torch.svd_lowrank(weight, q=k, niter=niter)
    return u, s, v


def skew_symmetric(upper: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k x k`` skew-symmetric matrix whose strict upper triangle is ``upper`` (``k (k-1) / 2`` values)."""
    rows, cols = torch.triu_indices(k, k, offset=1, device=upper.device)
    g = upper.new_zeros(k, k)
    g[rows, cols] = upper
    return g - g.T


def solve_shifted_skew(g: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``(I - G)^-1 rhs`` for skew-symmetric ``G``.

    ``I - G`` is never singular (its eigenvalues are ``1 - i lambda``), so the error check of ``linalg.solve``, which
    on a GPU waits for the device on every call, is skipped: ``solve_ex`` runs the same factorisation without it.
    """
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    return torch.linalg.solve_ex(eye - g, rhs, check_errors=False).result


def cayley(g: torch.Tensor) -> torch.Tensor:
    """``(I - G)^-1 (I + G)``: orthogonal for skew-symmetric ``G``; a linear solve, never an explicit inverse."""
    return solve_shifted_skew(g, torch.eye(g.shape[-1], dtype=g.dtype, device=g.device) + g)


def linear_rotation(g: torch.Tensor) -> torch.Tensor:
    """``I + 2 G``: the first-order expansion of the Cayley map (the authors' SSVDLinear uses ``I - 2S``, ``S = -G``);
    not orthogonal."""
    return torch.eye(g.shape[-1], dtype=g.dtype, device=g.device) + 2 * g


ROTATION_MAPS = {"cayley": cayley, "linear": linear_rotation}


def cayley_offset(g: torch.Tensor) -> torch.Tensor:
    """``cayley(G) - I``, computed as ``2 (I - G)^-1 G`` so that no identity is subtracted.

    Near ``G = 0`` the rotation is ``I`` plus a small term; forming ``R`` first and subtracting ``I`` later would
    lose that term's low bits (in fp32, and much more in bf16).
    """
    return 2 * solve_shifted_skew(g, g)


def linear_offset(g: torch.Tensor) -> torch.Tensor:
    """``linear_rotation(G) - I = 2 G``."""
    return 2 * g


ROTATION_OFFSETS = {"cayley": cayley_offset, "linear": linear_offset}
