"""Neuron-level similarity (Wu et al. 2020 style, after Bau et al. 2019): MaxCorr, MinCorr and LinReg.

A neuron is a column of a representation ``[n, neurons]``; all models see the same ``n`` inputs.

* ``maxcorr(A, B)``: for each neuron of A, the largest ``|Pearson r|`` with any single neuron of B, and which one;
* ``mincorr(A, [B, C, ...])``: for each neuron of A, the smallest over the other models of its MaxCorr: high only for
  neurons that every other model has a counterpart of;
* ``linreg(A, B)``: for each neuron of B, the ``R^2`` of its least-squares prediction from all neurons of A (with an
  intercept): a distributed counterpart of MaxCorr.

Each returns ``NeuronScores`` (per-neuron values, their mean and the neurons ranked by value). A neuron with zero
variance has no correlation: its value is NaN, the mean skips it and the ranking puts it last. Correlations are
computed in chunks of neurons, so memory is the inputs plus ``chunk_size x neurons`` floats.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from espnet_peft.analysis._inputs import ArrayLike, as_matrix_pair, center_columns, check_min_rows
from espnet_peft.analysis._linalg import column_space, warn_if_saturated


@dataclasses.dataclass
class NeuronScores:
    """Per-neuron similarity scores.

    ``values [neurons]`` (NaN for a constant neuron), ``mean`` (over the others), ``ranking`` (neuron indices by
    decreasing value, NaN last) and ``partner``: for MaxCorr the best-matching neuron of B, for MinCorr the index of
    the other model that attains the minimum, ``-1`` for a constant neuron; ``None`` for LinReg.
    """

    values: torch.Tensor
    mean: float
    ranking: torch.Tensor
    partner: Optional[torch.Tensor] = None

    @classmethod
    def of(cls, values: torch.Tensor, partner: Optional[torch.Tensor] = None) -> "NeuronScores":
        defined = ~torch.isnan(values)
        mean = float(values[defined].mean()) if defined.any() else float("nan")
        ranking = torch.argsort(torch.where(defined, values, -torch.inf), descending=True, stable=True)
        return cls(values, mean, ranking, partner)


def _standardised(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Centred, unit-norm columns (so ``z_a^T z_b`` is Pearson r) and the mask of constant columns.

    A column counts as constant when centring removed all but ``1e-12`` of its norm: the residue of a constant column
    is rounding noise, and normalising it would fake correlations of any value.
    """
    xc = center_columns(x)
    norm = xc.norm(dim=0)
    dead = norm <= 1e-12 * x.norm(dim=0)
    return xc / torch.where(dead, torch.ones_like(norm), norm), dead


def _chunks(total: int, chunk_size: int, desc: str, progress: bool):
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    starts = range(0, total, chunk_size)
    return tqdm(starts, desc=desc, disable=not progress or len(starts) < 2, leave=False)


def maxcorr(a: ArrayLike, b: ArrayLike, chunk_size: int = 1024, progress: bool = True) -> NeuronScores:
    """For each neuron of ``A [n, p]``: ``max_j |r(a_i, b_j)|`` over the neurons of ``B [n, q]`` and the argmax ``j``.

    ``mean`` is the MaxCorr similarity of A to B (asymmetric: ``maxcorr(B, A)`` matches B's neurons).
    """
    a, b = as_matrix_pair(a, b, ("A", "B"))
    check_min_rows(a, 2, "A", "a correlation")
    za, dead_a = _standardised(a)
    zb, dead_b = _standardised(b)
    zb[:, dead_b] = 0.0  # a constant neuron of B correlates with nothing (|r| = 0 never wins a max)
    values = torch.empty(a.shape[1], dtype=torch.float64, device=a.device)
    partner = torch.empty(a.shape[1], dtype=torch.long, device=a.device)
    for start in _chunks(a.shape[1], chunk_size, "MaxCorr", progress):
        block = za[:, start : start + chunk_size].T @ zb
        values[start : start + chunk_size], partner[start : start + chunk_size] = block.abs().max(dim=1)
    values.clamp_(max=1.0)  # |r| of identical columns can round to 1 + 1e-16
    values[dead_a] = float("nan")
    partner[dead_a] = -1
    return NeuronScores.of(values, partner)


def mincorr(
    a: ArrayLike, others: Sequence[ArrayLike], chunk_size: int = 1024, progress: bool = True
) -> NeuronScores:
    """For each neuron of ``A``: the minimum over the models in ``others`` of its MaxCorr with that model.

    ``partner`` is the index in ``others`` of the model attaining the minimum.
    """
    if isinstance(others, torch.Tensor) or hasattr(others, "__array__") or len(others) == 0:
        raise TypeError("others must be a non-empty sequence of [n, neurons] matrices, one per other model")
    per_model = torch.stack([maxcorr(a, o, chunk_size, progress).values for o in others])
    values, partner = per_model.min(dim=0)
    dead = torch.isnan(per_model).any(dim=0)
    values[dead] = float("nan")  # torch.min propagates NaN already; this keeps partner consistent
    partner[dead] = -1
    return NeuronScores.of(values, partner)


def linreg(a: ArrayLike, b: ArrayLike, chunk_size: int = 1024, progress: bool = True) -> NeuronScores:
    """For each neuron of ``B [n, q]``: ``R^2`` of its least-squares fit on all neurons of ``A [n, p]`` (+ intercept).

    The fit is the projection of the centred neuron on the column space of the centred A (A's left singular vectors,
    rank-truncated), so ``R^2_j = ||U^T b_j||^2 / ||b_j||^2``: no normal equations, exact for rank-deficient A.
    ``mean`` is the mean R^2 over B's neurons. In-sample R^2 is biased upwards: a neuron independent of A still gets
    about ``rank(A) / n``, so compare with a baseline (e.g. B's rows shuffled); when ``rank(A)`` reaches ``n - 1``
    every neuron fits perfectly by construction (a ``RuntimeWarning`` says so).
    """
    a, b = as_matrix_pair(a, b, ("A", "B"))
    check_min_rows(a, 2, "A", "a regression with intercept")
    space = column_space(a)
    warn_if_saturated(space.rank, 1, a.shape[0], "LinReg")
    zb, dead_b = _standardised(b)
    values = torch.empty(b.shape[1], dtype=torch.float64, device=b.device)
    for start in _chunks(b.shape[1], chunk_size, "LinReg", progress):
        # zb has unit-norm columns, so R^2 is the squared norm of the projection coefficients
        values[start : start + chunk_size] = (space.u.T @ zb[:, start : start + chunk_size]).square().sum(dim=0)
    values.clamp_(max=1.0)
    values[dead_b] = float("nan")
    return NeuronScores.of(values)
