"""Logit lens for ESPnet CTC models: the model's own CTC head applied to every encoder layer.

Layer ``l``'s lens is ``log_softmax(ctc_lo(after_norm(h_l)))``: the encoder's final norm first (when it has one), as
the model itself does before its CTC head, so that the lens on the last layer *is* the model's CTC output. Per layer
it gives greedy CTC hypotheses (argmax, collapse repeats, drop blank) and ``KL(p_final || p_l)`` averaged over real
frames: how far the layer's prediction still is from the model's final one ("delayed specialization" shows as a KL
that stays high until the last layers). See ``/work/shared/notes/analysis-methods.md``, "Logit lens".

Not covered: models with a ``postencoder`` (the head would then not see the encoder output) and Whisper (no CTC head).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from espnet_peft.analysis.model_access import EspnetEncoderAccess


@dataclasses.dataclass
class LensResult:
    """Per-layer lens outputs, in encoder-block order.

    ``log_probs[l]``: ``[B, T, V]``; ``lengths``: ``[B]`` real frames per utterance; ``hyps[l][b]``: greedy CTC token
    ids of utterance ``b`` at layer ``l``; ``kl[l]``: ``KL(p_final || p_l)`` averaged over real frames (0 at the last
    layer).
    """

    layers: list[str]
    log_probs: list[torch.Tensor]
    lengths: torch.Tensor
    hyps: list[list[list[int]]]
    kl: list[float]


def ctc_greedy(
    log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0
) -> list[list[int]]:
    """Greedy CTC decoding of ``[B, T, V]`` log-probs: argmax per frame, collapse repeats, drop ``blank``."""
    best = log_probs.argmax(dim=-1)
    hyps = []
    for b in range(best.shape[0]):
        ids = torch.unique_consecutive(best[b, : int(lengths[b])])
        hyps.append([int(i) for i in ids if int(i) != blank])
    return hyps


def mean_kl(log_p: torch.Tensor, log_q: torch.Tensor, mask: torch.Tensor) -> float:
    """``KL(p || q)`` per frame from ``[B, T, V]`` log-probs, averaged over frames where ``mask`` is True."""
    per_frame = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return float(per_frame[mask].mean())


def logit_lens(
    model: nn.Module, speech: torch.Tensor, speech_lengths: torch.Tensor, blank: int = 0
) -> LensResult:
    """Run ``model`` (an ESPnet CTC model, in eval mode) on raw audio and apply its CTC head to every encoder block."""
    access = EspnetEncoderAccess.for_asr_model(model)
    cap = access.capture(speech, speech_lengths)
    norm = access.final_norm()
    with torch.no_grad():
        log_probs = [
            model.ctc.log_softmax(norm(h) if norm is not None else h)
            for h in cap.hidden_states
        ]
    _, lengths = cap.output
    mask = cap.mask
    final = log_probs[-1]
    return LensResult(
        layers=access.layers(),
        log_probs=log_probs,
        lengths=lengths,
        hyps=[ctc_greedy(lp, lengths, blank) for lp in log_probs],
        kl=[mean_kl(final, lp, mask) for lp in log_probs],
    )
