"""Layer contribution: how much each block changes its residual stream, and in which direction.

For block ``l`` with input ``h_in`` and output ``h_out`` (both ``[B, T, D]``, read by ``ModelAccess.capture``), the
update is ``u = h_out - h_in``; per frame we take ``||u|| / ||h_in||`` (relative size) and ``cos(u, h_in)`` (does the
block reinforce, rotate or erase what it received), averaged over real frames. Compare adapted vs frozen models.

This measures the block's update *as a whole*. In a Transformer/Conformer block that is the sum of its residual
branches (macaron FFNs, attention, convolution) plus the effect of its final norm. In an E-Branchformer block it is
the merged update: macaron FFNs, the ``merge_proj`` of the concatenated attention and cgMLP branches, and
``norm_final``. Per-branch norms (attention vs cgMLP vs FFN) are in ``branches``. See
``docs/analysis-definitions.md``, "Layer contribution".
"""

from __future__ import annotations

import dataclasses

import torch

from espnet_peft.analysis.model_access import Capture

#: guards the ratios against all-zero frames (padding, or a dead layer input)
_EPS = 1e-12


@dataclasses.dataclass
class LayerContribution:
    """Per-layer ``||u|| / ||h_in||`` (``update_ratio``) and ``cos(u, h_in)`` (``cosine``), averaged over frames."""

    update_ratio: list[float]
    cosine: list[float]


def _frame_mean(values: torch.Tensor, mask: torch.Tensor | None) -> float:
    return float(values[mask].mean() if mask is not None else values.mean())


def layer_contribution(capture: Capture) -> LayerContribution:
    """Contribution of each captured layer; ``capture`` must come from ``capture(..., with_inputs=True)``."""
    if len(capture.layer_inputs) != len(capture.hidden_states):
        raise ValueError("layer inputs missing: capture with `with_inputs=True`")
    ratios, cosines = [], []
    for h_in, h_out in zip(capture.layer_inputs, capture.hidden_states):
        # float64: the ratio of two norms of close vectors loses digits in float32
        h_in, h_out = h_in.double(), h_out.double()
        update = h_out - h_in
        in_norm = h_in.norm(dim=-1)
        ratios.append(
            _frame_mean(update.norm(dim=-1) / in_norm.clamp_min(_EPS), capture.mask)
        )
        cos = torch.nn.functional.cosine_similarity(update, h_in, dim=-1, eps=_EPS)
        cosines.append(_frame_mean(cos, capture.mask))
    return LayerContribution(update_ratio=ratios, cosine=cosines)
