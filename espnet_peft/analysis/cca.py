"""Canonical correlation analysis and the similarity indices built on it: SVCCA and PWCCA.

* ``cca(X, Y)``: canonical correlations and canonical variates, from thin SVDs (never ``X^T X``, whose inverse square
  root squares the condition number);
* ``svcca(X, Y, variance=0.99)`` (Raghu et al. 2017): keep each side's leading PCA directions up to 99% of its
  variance, then CCA; the index is the mean canonical correlation;
* ``pwcca(X, Y)`` (Morcos et al. 2018): weight each canonical correlation by how much of ``X``'s neurons its canonical
  variate accounts for. Asymmetric by design: ``pwcca(X, Y)`` weights by ``X``.

Inputs are ``[n, features]`` torch tensors or numpy arrays of the same ``n`` inputs, computed in float64.

How CCA is computed: with thin SVDs ``X_c = U_x S_x V_x^T``, ``Y_c = U_y S_y V_y^T`` of the centred data, the canonical
correlations are the singular values of ``U_x^T U_y`` (cosines of the principal angles between the column spaces), and
the canonical variates are ``U_x a_i`` / ``U_y b_i`` for its singular vectors. Directions below the numerical rank are
dropped (``_linalg.column_space``).

Regularisation ``epsilon`` (default 0): ridge CCA with ``Sigma_xx + epsilon * s_max^2 I`` (relative to the largest
eigenvalue ``s_max^2`` of ``X_c^T X_c``, so it is scale free), likewise for ``Y``; it enters as the weights
``s / sqrt(s^2 + epsilon s_max^2)`` on the columns of ``U_x`` and ``U_y``. Use it when ``p + q`` approaches ``n``, where
unregularised CCA finds correlations of 1 by construction (a ``RuntimeWarning`` says so). With ``epsilon > 0`` the
reported values are the singular values of the regularised problem, shrunk towards 0.
"""

from __future__ import annotations

import dataclasses
import torch

from espnet_peft.analysis._inputs import ArrayLike, as_matrix_pair, check_min_rows
from espnet_peft.analysis._linalg import ColumnSpace, column_space, warn_if_saturated


@dataclasses.dataclass
class CCAResult:
    """``correlations [k]`` (descending, ``k = min(rank X, rank Y)``) and the canonical variates ``[n, k]`` of each
    side (unit-norm, mutually orthogonal columns when ``epsilon = 0``)."""

    correlations: torch.Tensor
    x_variates: torch.Tensor
    y_variates: torch.Tensor


@dataclasses.dataclass
class CCASimilarity:
    """A CCA similarity index: ``value = sum(weights * correlations)``.

    ``weights`` are uniform for SVCCA (the mean) and the projection weights for PWCCA; ``dims_x`` / ``dims_y`` are the
    directions of each side that entered CCA (after the PCA cut for SVCCA, the numerical rank for PWCCA).
    """

    value: float
    correlations: torch.Tensor
    weights: torch.Tensor
    dims_x: int
    dims_y: int


def _ridge_weights(space: ColumnSpace, epsilon: float) -> torch.Tensor:
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    if epsilon == 0 or space.rank == 0:
        return torch.ones_like(space.s)
    s2 = space.s**2
    return space.s / torch.sqrt(s2 + epsilon * s2[0])


def _cca_of_spaces(x: ColumnSpace, y: ColumnSpace, epsilon: float, what: str) -> CCAResult:
    n = x.u.shape[0]
    if x.rank == 0 or y.rank == 0:
        raise ValueError(f"{what}: a representation is constant (rank X = {x.rank}, rank Y = {y.rank})")
    if epsilon == 0:
        warn_if_saturated(x.rank, y.rank, n, what)
    wx, wy = _ridge_weights(x, epsilon), _ridge_weights(y, epsilon)
    a, rho, bh = torch.linalg.svd(wx[:, None] * (x.u.T @ y.u) * wy[None, :], full_matrices=False)
    # cosines of principal angles: rounding can push them a hair above 1
    rho = rho.clamp(0.0, 1.0)
    return CCAResult(rho, x.u @ (wx[:, None] * a), y.u @ (wy[:, None] * bh.T))


def cca(x: ArrayLike, y: ArrayLike, epsilon: float = 0.0) -> CCAResult:
    """Canonical correlations and variates of ``X [n, p]`` and ``Y [n, q]`` (see the module docstring)."""
    x, y = as_matrix_pair(x, y)
    check_min_rows(x, 2, "X", "CCA (a variance)")
    return _cca_of_spaces(column_space(x), column_space(y), epsilon, "CCA")


def svcca(x: ArrayLike, y: ArrayLike, variance: float = 0.99, epsilon: float = 0.0) -> CCASimilarity:
    """SVCCA: PCA of each side keeping the fewest directions that reach ``variance`` of its total variance, then CCA;
    ``value`` is the mean canonical correlation, ``correlations`` all of them."""
    x, y = as_matrix_pair(x, y)
    check_min_rows(x, 2, "X", "SVCCA (a variance)")
    # the PCA directions are the leading columns of U, so the cut space is directly the whitened basis CCA needs
    sx, sy = column_space(x, variance), column_space(y, variance)
    result = _cca_of_spaces(sx, sy, epsilon, "SVCCA")
    rho = result.correlations
    weights = torch.full_like(rho, 1.0 / rho.numel())
    return CCASimilarity(float(rho.mean()), rho, weights, sx.rank, sy.rank)


def pwcca(x: ArrayLike, y: ArrayLike, epsilon: float = 0.0) -> CCASimilarity:
    """PWCCA (Morcos et al. 2018): ``sum_i alpha_i rho_i`` with ``alpha_i ~ sum_j |<h_i, x_j>|``.

    ``h_i`` are the canonical variates of ``X`` (orthonormalised), ``x_j`` the centred neurons (columns) of ``X``, and
    the weights are normalised to sum to 1. Canonical directions that account for much of ``X``'s activity count more,
    so noise directions that CCA matches by chance weigh little.
    """
    x, y = as_matrix_pair(x, y)
    check_min_rows(x, 2, "X", "PWCCA (a variance)")
    sx, sy = column_space(x), column_space(y)
    result = _cca_of_spaces(sx, sy, epsilon, "PWCCA")
    h = result.x_variates
    if epsilon > 0:
        # the ridge makes the variates non-orthogonal; Morcos et al. orthonormalise them before projecting
        h = torch.linalg.qr(h).Q
    # <h_i, x_j> for every neuron j through X_c = U S V^T, without rebuilding the [n, p] centred X
    alpha = (((h.T @ sx.u) * sx.s) @ sx.vh).abs().sum(dim=1)
    weights = alpha / alpha.sum()
    return CCASimilarity(float(weights @ result.correlations), result.correlations, weights, sx.rank, sy.rank)

