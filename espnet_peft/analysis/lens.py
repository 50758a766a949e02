"""Logit lens: the model's own output head applied to every encoder layer.

CTC models (ESPnet ``ESPnetASRModel`` / ``ESPnetS2TModel``): layer ``l``'s lens is
``log_softmax(ctc_lo(after_norm(h_l)))``, the encoder's final norm first (when it has one), as the model itself does
before its CTC head, so that the lens on the last layer *is* the model's CTC output. Per layer it gives greedy CTC
hypotheses (argmax, collapse repeats, drop blank), their CER when a ``decode`` function and references are given, and
``KL(p_final || p_l)`` averaged over real frames: how far the layer's prediction still is from the model's final one
("delayed specialization" shows as a KL that stays high until the last layers).

Hugging Face ``*ForCTC`` models (Wav2Vec2, HuBERT; peft-adapted ones included): layer ``l``'s lens is
``log_softmax(lm_head(N(h_l)))`` with ``N`` the encoder's final norm where the model applies one after its last layer
(``HFAccess.final_norm``), read from one capture of the model (``hf_ctc_lens``); its blank is the pad token.

Audio classification (Hugging Face ``WhisperForAudioClassification``, which has no CTC head): the model's own
``projector`` -> mean over frames -> ``classifier`` applied to each encoder layer, fed exactly as the model feeds its
head (see ``classification_lens``). See ``docs/analysis-definitions.md``, "Logit lens".

Not covered: ESPnet models with a ``postencoder`` (the head would then not see the encoder output).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from espnet_peft.analysis._cer import token_cer
from espnet_peft.analysis.model_access import Capture, EspnetEncoderAccess, HFAccess


@dataclasses.dataclass
class LensResult:
    """Per-layer CTC lens outputs, in encoder-block order.

    ``log_probs[l]``: ``[B, T, V]``; ``lengths``: ``[B]`` real frames per utterance; ``hyps[l][b]``: greedy CTC token
    ids of utterance ``b`` at layer ``l``; ``kl[l]``: ``KL(p_final || p_l)`` averaged over real frames (0 at the last
    layer); ``cer[l]``: corpus CER of ``hyps[l]`` (spaces excluded, see ``_cer``), None without ``decode``/``refs``.
    """

    layers: list[str]
    log_probs: list[torch.Tensor]
    lengths: torch.Tensor
    hyps: list[list[list[int]]]
    kl: list[float]
    cer: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The per-layer numbers (no tensors, no hypotheses): JSON-serialisable."""
        return {"layers": list(self.layers), "kl": list(self.kl), "cer": None if self.cer is None else list(self.cer)}


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


def mean_kl(log_p: torch.Tensor, log_q: torch.Tensor, mask: torch.Tensor | None) -> float:
    """``KL(p || q)`` per row from ``[..., V]`` log-probs, averaged over rows where ``mask`` is True (all if None)."""
    per_row = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return float(per_row[mask].mean() if mask is not None else per_row.mean())


def logit_lens(
    model: nn.Module,
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    blank: int = 0,
    decode: Callable[[list[int]], str] | None = None,
    refs: Sequence[str] | None = None,
) -> LensResult:
    """Run ``model`` (an ESPnet CTC model, in eval mode) on raw audio and apply its CTC head to every encoder block.

    With ``decode`` (token ids -> text, e.g. the model's token list joined) and ``refs`` (one reference text per
    utterance), each layer's greedy hypotheses are scored by CER.
    """
    access = EspnetEncoderAccess.for_asr_model(model)
    return espnet_ctc_lens(model, access, access.capture(speech, speech_lengths), blank, decode, refs)


def espnet_ctc_lens(
    model: nn.Module,
    access: EspnetEncoderAccess,
    cap: Capture,
    blank: int = 0,
    decode: Callable[[list[int]], str] | None = None,
    refs: Sequence[str] | None = None,
) -> LensResult:
    """The CTC lens of an ESPnet model from a capture that ``access`` (``for_asr_model(model)``) already made: the
    analysis run's shared pass, so the encoder runs once for every analysis."""
    if (decode is None) != (refs is None):
        raise ValueError("per-layer CER needs both `decode` and `refs`")
    return _ctc_lens(access, cap, model.ctc.log_softmax, cap.output[1], blank, decode, refs)


def hf_ctc_lens(
    model: nn.Module,
    cap: Capture,
    blank: int = 0,
    decode: Callable[[list[int]], str] | None = None,
    refs: Sequence[str] | None = None,
) -> LensResult:
    """The CTC lens of a Hugging Face ``*ForCTC`` model (eval mode) from one capture of it
    (``HFAccess(model).capture(**inputs)``, unpadded inputs: every frame counts); ``blank``: its pad token id."""
    if (decode is None) != (refs is None):
        raise ValueError("per-layer CER needs both `decode` and `refs`")
    batch, frames = cap.hidden_states[0].shape[:2]
    lengths = torch.full((batch,), frames, dtype=torch.long)

    def head(h: torch.Tensor) -> torch.Tensor:
        return model.lm_head(h).log_softmax(dim=-1)

    return _ctc_lens(HFAccess(model), cap, head, lengths, blank, decode, refs)


def _ctc_lens(
    access: EspnetEncoderAccess | HFAccess,
    cap: Capture,
    head: Callable[[torch.Tensor], torch.Tensor],
    lengths: torch.Tensor,
    blank: int,
    decode: Callable[[list[int]], str] | None,
    refs: Sequence[str] | None,
) -> LensResult:
    """``head`` (hidden state -> CTC log-probs) on every layer of ``cap``, after the encoder's final norm."""
    norm = access.final_norm()
    with torch.no_grad():
        log_probs = [head(norm(h) if norm is not None else h) for h in cap.hidden_states]
    final = log_probs[-1]
    hyps = [ctc_greedy(lp, lengths, blank) for lp in log_probs]
    return LensResult(
        layers=access.layers(),
        log_probs=log_probs,
        lengths=lengths,
        hyps=hyps,
        kl=[mean_kl(final, lp, cap.mask) for lp in log_probs],
        cer=[token_cer(h, decode, refs) for h in hyps] if decode is not None else None,
    )


# ----- audio classification (Whisper) -------------------------------------------------------------------------


@dataclasses.dataclass
class ClassificationLensResult:
    """Per-layer classification lens, in encoder-layer order.

    ``log_probs[l]``: ``[B, C]`` class log-probs from layer ``l``; ``model_log_probs``: ``[B, C]``, the model's own;
    ``kl[l]``: ``KL(p_model || p_l)`` averaged over utterances; ``accuracy[l]``: share of utterances whose argmax
    class is the label (None without labels); ``layer_weights``: the softmax-normalised weights of a model with
    ``use_weighted_layer_sum`` (entry 0 is the input embeddings, ``1 + l`` layer ``l``), else None.
    """

    layers: list[str]
    log_probs: list[torch.Tensor]
    model_log_probs: torch.Tensor
    kl: list[float]
    accuracy: list[float] | None = None
    layer_weights: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Per-layer KL, accuracy and each layer's predicted classes: JSON-serialisable."""
        return {
            "layers": list(self.layers),
            "kl": list(self.kl),
            "accuracy": None if self.accuracy is None else list(self.accuracy),
            "predictions": [lp.argmax(dim=-1).tolist() for lp in self.log_probs],
            "layer_weights": None if self.layer_weights is None else list(self.layer_weights),
        }


class _WholeModelAccess(HFAccess):
    """``HFAccess`` that runs the whole classification model (not the encoder alone): one pass gives the layer
    outputs and the model's own logits."""

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


def _head_inputs(access: _WholeModelAccess, cap: Capture, weighted: bool) -> list[torch.Tensor]:
    """Each layer's hidden state as the model's head would receive it (see ``classification_lens``)."""
    if not weighted:
        norm = access.final_norm()
        return [norm(h) for h in cap.hidden_states]
    # What the model's weighted sum stacks: [embeddings, layer 0, ..., last layer]; transformers ties the last entry
    # to ``last_hidden_state`` (after ``layer_norm``) while earlier ones are raw layer outputs.
    states = cap.output.hidden_states
    if len(states) != len(cap.hidden_states) + 1:
        raise RuntimeError(
            f"expected {len(cap.hidden_states) + 1} hidden states (embeddings + layers), got {len(states)}"
        )
    return list(states[1:])


def classification_lens(
    model: nn.Module, input_features: torch.Tensor, labels: torch.Tensor | None = None
) -> ClassificationLensResult:
    """Apply the classification head of ``model`` (``WhisperForAudioClassification``, eval mode) to every layer.

    The head is the model's own: ``classifier(mean_t(projector(h)))``, mean over all frames as the model does. What
    ``h`` is mirrors the model:

    * plain (``use_weighted_layer_sum=False``): the model's head reads ``encoder.layer_norm(h_last)``, so the lens
      reads ``encoder.layer_norm(h_l)``; on the last layer it reproduces the model's logits exactly;
    * ``use_weighted_layer_sum=True``: the head reads ``sum_i w_i s_i`` over the encoder's hidden states ``s_i``, so
      the lens on layer ``l`` puts all weight on that layer's state, ``s_l`` as the sum receives it (raw for
      intermediate layers, after ``layer_norm`` for the last). The model's own prediction is then a mix of layers,
      so no layer's lens need equal it.

    ``kl`` compares each layer with the model's own output distribution; ``labels`` (``[B]`` class ids) add accuracy.
    """
    weighted = bool(getattr(model.config, "use_weighted_layer_sum", False))
    access = _WholeModelAccess(model)
    kwargs = {"output_hidden_states": True} if weighted else {}
    cap = access.capture(input_features, **kwargs)
    with torch.no_grad():
        log_probs = [
            model.classifier(model.projector(h).mean(dim=1)).log_softmax(dim=-1)
            for h in _head_inputs(access, cap, weighted)
        ]
        own = cap.output.logits.log_softmax(dim=-1)
    accuracy = None
    if labels is not None:
        labels = labels.to(own.device)
        accuracy = [float((lp.argmax(dim=-1) == labels).double().mean()) for lp in log_probs]
    weights = model.layer_weights.detach().softmax(dim=-1).tolist() if weighted else None
    return ClassificationLensResult(
        layers=access.layers(),
        log_probs=log_probs,
        model_log_probs=own,
        kl=[mean_kl(own, lp, None) for lp in log_probs],
        accuracy=accuracy,
        layer_weights=weights,
    )
