"""Layer ablation by residual erasure: which encoder blocks does a CTC model need?

Erasing block ``l`` makes it return its input unchanged (a forward hook swaps the hidden part of the block's output
for the hidden part of its input and keeps the tuple structure, e.g. ``((x, pos_emb), mask)`` with relative
positional encodings), so the next block sees what block ``l`` received. The model then runs as usual: encoder final
norm, CTC head. Two schedules (``docs/analysis-definitions.md``, "Layer ablation"):

* ``single``: erase each block alone;
* ``cumulative``: erase blocks ``0..l`` from the bottom up, so the last entry erases every block and leaves the
  frontend + input layer (subsampling, positional encoding) followed by the encoder's final norm.

Scores: CTC loss against the references' token ids, as the model's ``ctc`` computes it, averaged per utterance; and
CER of greedy CTC decoding against the reference texts (spaces excluded, as ESPnet's CER; see ``_cer``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from espnet_peft.analysis._cer import token_cer
from espnet_peft.analysis.lens import ctc_greedy
from espnet_peft.analysis.model_access import EspnetEncoderAccess, _hidden

MODES = ("single", "cumulative")


@dataclasses.dataclass
class AblationResult:
    """Scores with each erasure (``ctc_loss[i]``, ``cer[i]``: erasing ``layers[i]`` alone, or blocks ``0..i`` when
    ``mode == "cumulative"``) and without any (``baseline_*``)."""

    layers: list[str]
    mode: str
    baseline_ctc_loss: float
    baseline_cer: float
    ctc_loss: list[float]
    cer: list[float]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _with_hidden(value: Any, hidden: torch.Tensor) -> Any:
    """``value`` with its first leaf (the hidden state, see ``model_access._hidden``) replaced by ``hidden``."""
    if isinstance(value, (tuple, list)):
        return type(value)([_with_hidden(value[0], hidden), *value[1:]])
    return hidden


def _return_input(module: nn.Module, args: tuple, output: Any) -> Any:
    return _with_hidden(output, _hidden(args))


@contextlib.contextmanager
def erase_blocks(blocks: Sequence[nn.Module]) -> Iterator[None]:
    """While active, every block in ``blocks`` passes its input through unchanged; hooks go also on exceptions."""
    handles = [block.register_forward_hook(_return_input) for block in blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclasses.dataclass
class _Batch:
    speech: torch.Tensor
    speech_lengths: torch.Tensor
    text: torch.Tensor
    text_lengths: torch.Tensor
    refs: Sequence[str]


def _split(batch: _Batch, batch_size: int | None) -> list[_Batch]:
    n = batch.speech.shape[0]
    size = n if batch_size is None else batch_size
    return [
        _Batch(
            batch.speech[start : start + size],
            batch.speech_lengths[start : start + size],
            batch.text[start : start + size],
            batch.text_lengths[start : start + size],
            batch.refs[start : start + size],
        )
        for start in range(0, n, size)
    ]


@torch.no_grad()
def _score(
    model: nn.Module, batches: list[_Batch], decode: Callable[[list[int]], str], blank: int
) -> tuple[float, float]:
    """(CTC loss averaged per utterance, corpus CER) of the model as it runs now."""
    loss_sum, hyps, refs = 0.0, [], []
    for b in batches:
        encoder_out, encoder_lengths = model.encode(b.speech, b.speech_lengths)
        if isinstance(encoder_out, tuple):  # intermediate CTC outputs ride along
            encoder_out = encoder_out[0]
        loss = model.ctc(encoder_out, encoder_lengths, b.text, b.text_lengths)
        # ESPnet's CTC returns sum/B (reduce=True) or per-utterance loss/B (reduce=False): both sum to total/B.
        loss_sum += float(loss.sum()) * b.speech.shape[0]
        hyps += ctc_greedy(model.ctc.log_softmax(encoder_out), encoder_lengths, blank)
        refs += list(b.refs)
    return loss_sum / len(refs), token_cer(hyps, decode, refs)


def layer_ablation(
    model: nn.Module,
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    text: torch.Tensor,
    text_lengths: torch.Tensor,
    decode: Callable[[list[int]], str],
    refs: list[str],
    mode: str = "single",
    batch_size: int | None = None,
) -> AblationResult:
    """Erase encoder blocks of ``model`` (``ESPnetASRModel`` / ``ESPnetS2TModel`` with a CTC head) and score each.

    ``speech``/``speech_lengths``: raw audio batch, as for ``model.encode``; ``text``/``text_lengths``: CTC target
    token ids padded with -1 (the model's ``text``, or ``text_ctc`` for S2T); ``decode``: token ids -> text;
    ``refs``: one reference text per utterance. ``batch_size`` splits the batch (None: one forward pass); in ESPnet
    the padding inside a batch can change convolution outputs near the end of shorter utterances, so compare runs at
    the same batch size. The model must be in eval mode (no dropout, no SpecAugment).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if model.training:
        raise ValueError("call model.eval() first: dropout and SpecAugment would perturb every score")
    if len(refs) != speech.shape[0]:
        raise ValueError(f"{speech.shape[0]} utterances but {len(refs)} references")
    access = EspnetEncoderAccess.for_asr_model(model)
    blocks = list(access.layer_modules())
    batches = _split(_Batch(speech, speech_lengths, text, text_lengths, refs), batch_size)
    blank = int(getattr(model, "blank_id", 0))

    baseline_loss, baseline_cer = _score(model, batches, decode, blank)
    losses, cers = [], []
    for i in tqdm(range(len(blocks)), desc=f"{mode} ablation", unit="layer"):
        erased = blocks[: i + 1] if mode == "cumulative" else [blocks[i]]
        with erase_blocks(erased):
            loss, cer = _score(model, batches, decode, blank)
        losses.append(loss)
        cers.append(cer)
    return AblationResult(
        layers=access.layers(),
        mode=mode,
        baseline_ctc_loss=baseline_loss,
        baseline_cer=baseline_cer,
        ctc_loss=losses,
        cer=cers,
    )
