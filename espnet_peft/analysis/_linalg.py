"""The column space of a centred representation, from a thin SVD: shared by CCA (whitening) and LinReg (projection)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional

import torch

from espnet_peft.analysis._inputs import center_columns


@dataclasses.dataclass
class ColumnSpace:
    """Thin SVD ``X_c = U S V^T`` of the column-centred ``X``, cut to its numerical rank (and optionally to a share of
    the variance). ``U [n, r]`` has orthonormal columns: projecting on it is least squares without normal equations,
    whose ``X^T X`` would square the condition number."""

    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor

    @property
    def rank(self) -> int:
        return self.s.numel()


def column_space(x: torch.Tensor, variance: Optional[float] = None) -> ColumnSpace:
    """``ColumnSpace`` of ``x [n, p]`` (float64).

    Directions whose singular value is below ``max(n, p) * eps * s_max`` (the ``numpy.linalg.matrix_rank`` rule) are
    dropped: they are rounding noise, and keeping them would let CCA / LinReg "explain" anything with them. With
    ``variance`` (e.g. 0.99, SVCCA), keep the fewest leading directions whose cumulative ``s^2`` share reaches it.
    """
    xc = center_columns(x)
    u, s, vh = torch.linalg.svd(xc, full_matrices=False)
    if s.numel() == 0 or s[0] == 0:
        return ColumnSpace(u[:, :0], s[:0], vh[:0])
    keep = int((s > s[0] * max(xc.shape) * torch.finfo(s.dtype).eps).sum())
    if variance is not None:
        if not 0 < variance <= 1:
            raise ValueError(f"variance must be in (0, 1], got {variance}")
        energy = torch.cumsum(s**2, dim=0) / (s**2).sum()
        keep = min(keep, int((energy < variance).sum()) + 1)
    return ColumnSpace(u[:, :keep], s[:keep], vh[:keep])


def warn_if_saturated(dims_a: int, dims_b: int, n: int, what: str) -> None:
    """Warn when two subspaces of ``dims_a`` and ``dims_b`` centred directions cannot avoid each other.

    Centred ``n``-vectors live in ``n - 1`` dimensions, so when ``dims_a + dims_b > n - 1`` the two subspaces share a
    direction and the top correlation / R^2 is 1 by construction, not by similarity. (LinReg of one neuron on ``A`` is
    the case ``dims_b = 1``.)
    """
    if dims_a + dims_b > n - 1:
        warnings.warn(
            f"{what}: {dims_a} + {dims_b} directions exceed the {n - 1} dimensions of centred signals over n = {n} "
            "inputs, so correlations of 1 appear by construction; use more inputs (or SVCCA / a ridge epsilon)",
            RuntimeWarning,
            stacklevel=3,
        )
