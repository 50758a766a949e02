"""The forward pass that every analysis of a run shares, and the layer frames kept from it.

Per batch each model runs once with hooks (``ModelAccess.capture``, or ``branch_updates`` when an analysis needs the
branches); when an analysis needs the attention decoder, ``decoder_forward`` then runs it teacher-forced on that
pass's encoder output (``decoder``). Only the frames that cover real audio count: an S2T (OWSM) model pads
every input to ``speech_length`` with silence, and those frames would otherwise dominate every statistic
(``Batch.real_frames``).

``Frames`` keeps, per model and layer, the real-audio frames that the representation-similarity analyses (CKA, CCA,
neurons) compare. Frames of an utterance are paired across the models by position (resampled to the shorter count
when their frame rates differ), at most ``max_frames`` in all, spread evenly over utterances and over each
utterance's frames.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import torch

from espnet_peft.analysis.branches import branch_updates
from espnet_peft.analysis.decoder import decoder_targets, teacher_forced
from espnet_peft.analysis.families import family_of
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.model_access import Capture
from espnet_peft.analysis.utterances import Batch


@dataclasses.dataclass
class Forward:
    """One model's forward pass on one batch, reduced to what the analyses need."""

    capture: Capture
    frames: list[int]  # real-audio frames per utterance
    mask: torch.Tensor  # [B, T], True on real-audio frames
    key_mask: torch.Tensor  # [B, T], True on frames the model attends to
    branch_updates: Optional[list[dict[str, torch.Tensor]]] = None
    attention: Optional[list[torch.Tensor]] = None  # per layer [B, H, T, T]
    decoder: Optional["Forward"] = None  # the attention decoder's teacher-forced pass; its frames are token positions


def shared_forward(m: LoadedModel, batch: Batch, branches: bool, attention: bool) -> Forward:
    updates = None
    if branches:
        result = branch_updates(m.access, *batch.args, **batch.kwargs)
        cap, updates = result.capture, result.updates
    else:
        cap = m.access.capture(*batch.args, with_inputs=True, **batch.kwargs)
    bsz, t = cap.hidden_states[0].shape[:2]
    key_mask = cap.mask if cap.mask is not None else torch.ones(bsz, t, dtype=torch.bool)
    frames = batch.real_frames(key_mask.sum(dim=1).tolist())
    mask = torch.arange(t)[None, :] < torch.tensor(frames)[:, None]
    maps = family_of(m.source).attention_maps(m, cap) if attention else None
    return Forward(cap, frames, mask.to(key_mask.device), key_mask, updates, maps)


def decoder_forward(m: LoadedModel, batch: Batch, encoder: Forward) -> Optional[Forward]:
    """The attention decoder's pass, teacher-forced on ``encoder``'s output (``decoder``), with its branch
    updates; its frames are the decoder input's real token positions. None when the batch has no decoder input."""
    targets = decoder_targets(batch)
    if targets is None:
        return None
    result = teacher_forced(m.model, encoder.capture.output, targets)
    cap = result.capture
    return Forward(cap, cap.output.lengths.tolist(), cap.mask, cap.mask, result.updates)


def spread(n: int, count: int) -> torch.Tensor:
    """``count`` of ``0..n-1`` spread evenly (all of them when ``count >= n``)."""
    if count >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, count).round().long()


class Frames:
    """Per model and layer, the selected real-audio frames (float32, CPU), paired across models by position."""

    def __init__(self, labels: Sequence[str], per_utt: int) -> None:
        self.per_utt = per_utt
        self.layers: dict[str, list[list[torch.Tensor]]] = {label: [] for label in labels}

    def add(self, forwards: Mapping[str, Forward]) -> None:
        first = next(iter(forwards.values()))
        for b in range(len(first.frames)):
            n = min(p.frames[b] for p in forwards.values())
            pick = spread(n, self.per_utt)
            for label, p in forwards.items():
                # frame i of the shorter model is frame round(i * (n_p - 1) / (n - 1)) of this one
                index = spread(p.frames[b], n)[pick] if p.frames[b] != n else pick
                hidden = p.capture.hidden_states
                if not self.layers[label]:
                    self.layers[label] = [[] for _ in hidden]
                for store, h in zip(self.layers[label], hidden):
                    store.append(h[b, index.to(h.device)].float().cpu())

    def matrices(self, label: str) -> list[torch.Tensor]:
        """``[frames, width]`` per layer of model ``label``; row ``i`` is the same audio in every model."""
        return [torch.cat(parts) for parts in self.layers[label]]
