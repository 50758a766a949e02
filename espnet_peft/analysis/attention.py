"""Attention-map similarity: Jensen-Shannon divergence between the attention distributions of two heads.

For heads ``h`` (model / layer A) and ``h'`` (model / layer B) on the same inputs, each query ``q`` gives two
distributions over the keys, ``a_h(q, .)`` and ``a_h'(q, .)``; the head-pair similarity is
``1 - mean_q JS(a_h(q, .) || a_h'(q, .))`` with base-2 logarithms, so that it lies in ``[0, 1]`` (1: identical maps,
0: disjoint supports for every query). The similarity of layer A to layer B is the mean over A's heads of their best
match among B's heads: asymmetric (B may have a head that matches none of A's). ``attention_similarity_matrix`` gives
it for every layer pair, within a model (intra) or across models, e.g. pretrained vs adapted (inter).

Attention tensors are ``[heads, queries, keys]``, or ``[batch, heads, queries, keys]`` for a padded batch of
utterances. Optional boolean masks (True = real frame) drop padded queries from the mean and padded keys from the
distributions: ``query_mask`` ``[queries]`` or ``[batch, queries]``, ``key_mask`` ``[keys]`` or ``[batch, keys]``.
Each row is renormalised over its valid keys (a no-op for softmax outputs that already put no mass on padding).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from espnet_peft.analysis._inputs import ArrayLike, as_float64

#: target number of float64 elements in the [heads_a, heads_b, queries, keys] block of one chunk (about 128 MB)
_CHUNK_ELEMENTS = 1 << 24


def _entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits over the last dimension, with ``0 log 0 = 0``."""
    return -torch.special.xlogy(p, p).sum(dim=-1) / math.log(2.0)


def js_divergence(p: ArrayLike, q: ArrayLike) -> torch.Tensor:
    """Jensen-Shannon divergence in bits between distributions along the last dimension (broadcasting), in ``[0, 1]``.

    ``JS(P || Q) = H((P + Q) / 2) - (H(P) + H(Q)) / 2``; symmetric, 0 iff ``P = Q``, 1 iff their supports are disjoint.
    """
    p, q = as_float64(p), as_float64(q)
    js = _entropy_bits((p + q) / 2) - (_entropy_bits(p) + _entropy_bits(q)) / 2
    return js.clamp(0.0, 1.0)  # rounding can leave it a hair outside


@dataclasses.dataclass
class _Rows:
    """The attention rows of the valid queries of one layer, ``probs [heads, rows, keys]`` (padded keys zeroed and
    rows renormalised), with their entropies ``[heads, rows]``: computed once per layer, reused for every pair."""

    probs: torch.Tensor
    entropy: torch.Tensor


def _batched_mask(
    mask: Optional[ArrayLike], batch: int, length: int, name: str, shape: Tuple[int, ...]
) -> torch.Tensor:
    if mask is None:
        return torch.ones(batch, length, dtype=torch.bool)
    m = torch.as_tensor(mask).to(torch.bool).cpu()
    if m.ndim == 1:
        m = m.expand(batch, -1)
    if tuple(m.shape) != (batch, length):
        raise ValueError(
            f"{name} has shape {tuple(torch.as_tensor(mask).shape)} but the attention has shape {shape}: expected "
            f"[{length}] or [{batch}, {length}]"
        )
    return m


def _rows(
    attn: ArrayLike, query_mask: Optional[ArrayLike], key_mask: Optional[ArrayLike], name: str
) -> _Rows:
    a = as_float64(attn)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(
            f"{name} must be [heads, queries, keys] or [batch, heads, queries, keys], got shape {tuple(a.shape)}"
        )
    if (a < 0).any() or not torch.isfinite(a).all():
        raise ValueError(f"{name} must hold non-negative finite attention weights")
    batch, _, queries, keys = a.shape
    qm = _batched_mask(query_mask, batch, queries, "query_mask", tuple(a.shape)).to(a.device)
    km = _batched_mask(key_mask, batch, keys, "key_mask", tuple(a.shape)).to(a.device)
    a = a * km[:, None, None, :]
    rows = a.permute(1, 0, 2, 3)[:, qm]  # [heads, valid queries of all utterances, keys]
    mass = rows.sum(dim=-1, keepdim=True)
    if (mass <= 0).any():
        raise ValueError(f"{name}: a valid query has no attention mass on the valid keys")
    probs = rows / mass
    return _Rows(probs, _entropy_bits(probs))


def _head_similarity(a: _Rows, b: _Rows) -> torch.Tensor:
    """``[heads_a, heads_b]`` of ``1 - mean_q JS``, the query rows processed in chunks to bound memory."""
    if a.probs.shape[1:] != b.probs.shape[1:]:
        raise ValueError(
            f"attention A has {tuple(a.probs.shape[1:])} (valid queries, keys) and B has {tuple(b.probs.shape[1:])}: "
            "they must come from the same inputs and masks"
        )
    ha, rows, keys = a.probs.shape
    hb = b.probs.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // max(1, ha * hb * keys))
    js_sum = torch.zeros(ha, hb, dtype=torch.float64, device=a.probs.device)
    for start in range(0, rows, chunk):
        pa, pb = a.probs[:, None, start : start + chunk], b.probs[None, :, start : start + chunk]
        mixture_entropy = _entropy_bits((pa + pb) / 2)  # [ha, hb, chunk]
        own = (a.entropy[:, None, start : start + chunk] + b.entropy[None, :, start : start + chunk]) / 2
        js_sum += (mixture_entropy - own).clamp(0.0, 1.0).sum(dim=-1)
    return 1.0 - js_sum / rows


def head_similarity(
    attn_a: ArrayLike,
    attn_b: ArrayLike,
    query_mask: Optional[ArrayLike] = None,
    key_mask: Optional[ArrayLike] = None,
) -> torch.Tensor:
    """``S[h, h'] = 1 - mean_q JS(a_h(q, .) || b_h'(q, .))`` for every head pair: ``[heads_a, heads_b]``, in [0, 1]."""
    rows_a = _rows(attn_a, query_mask, key_mask, "attn_a")
    return _head_similarity(rows_a, _rows(attn_b, query_mask, key_mask, "attn_b"))


def _best_match_mean(heads: torch.Tensor) -> float:
    return float(heads.max(dim=1).values.mean())


def layer_similarity(
    attn_a: ArrayLike,
    attn_b: ArrayLike,
    query_mask: Optional[ArrayLike] = None,
    key_mask: Optional[ArrayLike] = None,
) -> float:
    """Mean over the heads of A of their best-matching head of B (``head_similarity`` row maxima)."""
    return _best_match_mean(head_similarity(attn_a, attn_b, query_mask, key_mask))


def attention_similarity_matrix(
    layers_a: Sequence[ArrayLike],
    layers_b: Optional[Sequence[ArrayLike]] = None,
    query_mask: Optional[ArrayLike] = None,
    key_mask: Optional[ArrayLike] = None,
    progress: bool = True,
) -> torch.Tensor:
    """``layer_similarity`` for every layer of A (rows) against every layer of B (columns): ``[len(A), len(B)]``.

    Leave ``layers_b`` out for the intra-model matrix (unit diagonal; not symmetric in general). Both models must have
    been run on the same inputs, so one pair of masks serves every layer.
    """
    rows_a = [_rows(x, query_mask, key_mask, f"layers_a[{i}]") for i, x in enumerate(layers_a)]
    intra = layers_b is None or layers_b is layers_a
    rows_b = rows_a if intra else [_rows(x, query_mask, key_mask, f"layers_b[{i}]") for i, x in enumerate(layers_b)]
    if not rows_a or not rows_b:
        raise ValueError("layers_a and layers_b must each hold at least one layer")
    out = torch.empty(len(rows_a), len(rows_b), dtype=torch.float64)
    # within a model, the head matrix of (j, i) is the transpose of that of (i, j): compute each unordered pair once
    pairs = [(i, j) for i in range(len(rows_a)) for j in range(len(rows_b)) if not intra or j >= i]
    for i, j in tqdm(pairs, desc="attention JS pairs", disable=not progress, leave=False):
        heads = _head_similarity(rows_a[i], rows_b[j])
        out[i, j] = _best_match_mean(heads)
        if intra:
            out[j, i] = _best_match_mean(heads.T)
    return out
