"""The attention decoder of an ESPnet ASR or S2T model, run teacher-forced on the encoder output of the shared pass.

The decoder sees what it sees in training: the model's own attention loss (``_calc_att_loss``) builds the decoder
input from the batch's token ids (ASR: ``<sos>`` + text; S2T: ``<sos>`` + the prompted text, behind ``<sop>`` + the
``text_prev`` prompt when that is not ``<na>``) and runs the decoder on the encoder output it is given. Going through
that method keeps the input exactly what the installed ESPnet trains on, without a copy of its code; passing it the
shared pass's encoder output means nothing is encoded twice.

``DecoderAccess`` is a ``ModelAccess`` over the decoder blocks (``decoder.decoders``; ESPnet's Whisper decoder:
``decoder.decoders.blocks``), so layer capture and the branch hooks of ``branches`` work on it as on an
encoder. A Whisper decoder is fed as ESPnet trains it: ``<sos>`` (``sym_sos``) + the text's Whisper tokens. Its
mask marks the real (non-padded) positions of the decoder input; every position of a row up to its length is real,
the prompt included.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import torch
from torch import nn

from espnet_peft.analysis.branches import BranchUpdates, block_branches, branch_updates
from espnet_peft.analysis.model_access import ModelAccess, lengths_to_mask, stack_blocks
from espnet_peft.analysis.utterances import Batch

#: why a batch gives no decoder pass (a run on such data lists this under ``skipped``)
NO_TARGETS = ("the data has no decoder input for the model: ASR needs transcripts (text); S2T needs a prompted text "
              "(<lang><task>... in text)")


@dataclasses.dataclass
class TeacherForced:
    """What one teacher-forced pass returned: the attention loss, and the decoder input (``tokens`` ``[B, L]``,
    ``lengths`` ``[B]``, as the attention loss built them)."""

    loss: torch.Tensor
    tokens: torch.Tensor
    lengths: torch.Tensor


def no_decoder_reason(model: nn.Module) -> Optional[str]:
    """Why ``model`` has no attention decoder that this module can run (None: it has one)."""
    decoder = getattr(model, "decoder", None)
    if decoder is None:
        return "no attention decoder (a CTC-only model)"
    if not callable(getattr(model, "_calc_att_loss", None)):
        return f"{type(model).__name__} has no attention loss (_calc_att_loss) to teacher-force its decoder with"
    stack = getattr(decoder, "decoders", None)
    blocks = stack_blocks(stack)[0] if isinstance(stack, nn.Module) else None
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) == 0:  # ESPnet's are MultiSequential
        return (f"{type(decoder).__name__} has no decoder blocks (decoder.decoders): Transformer and Whisper "
                f"decoders only")
    try:
        block_branches(blocks[0])
    except TypeError as error:
        return str(error)
    return None


class DecoderAccess(ModelAccess):
    """The decoder blocks of an ESPnet ASR / S2T model; ``capture(encoder_out, encoder_out_lens, *targets)`` runs
    the model's attention loss on that encoder output (``targets``: what ``decoder_targets`` returns)."""

    def __init__(self, model: nn.Module):
        reason = no_decoder_reason(model)
        if reason is not None:
            raise TypeError(reason)
        self.model = model
        self.blocks, below = stack_blocks(model.decoder.decoders)
        self.prefix = f"decoder.decoders{below}"

    def layer_modules(self) -> Sequence[nn.Module]:
        return list(self.blocks)

    def _run(self, encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor, *targets: torch.Tensor
             ) -> TeacherForced:
        seen: dict[str, torch.Tensor] = {}

        def record_input(module: nn.Module, args: tuple) -> None:
            # both models call decoder(encoder_out, encoder_out_lens, ys_in_pad, ys_in_lens)
            seen["tokens"], seen["lengths"] = args[2], args[3]

        handle = self.model.decoder.register_forward_pre_hook(record_input)
        try:
            # clones: the ASR loss adds its language token's length to ys_pad_lens in place
            loss = self.model._calc_att_loss(encoder_out, encoder_out_lens, *(t.clone() for t in targets))[0]
        finally:
            handle.remove()
        return TeacherForced(loss.detach(), seen["tokens"], seen["lengths"])

    def _mask(self, output: Any, hidden: torch.Tensor) -> torch.Tensor:
        return lengths_to_mask(output.lengths, hidden.shape[1])


def decoder_targets(batch: Batch) -> Optional[tuple[torch.Tensor, ...]]:
    """What the attention loss takes after the encoder output, from the collated training batch: ``text`` and its
    lengths, then (S2T) ``text_prev`` and its lengths; None when the data lacks them."""
    inputs = batch.loss_inputs
    if inputs is None:
        return None
    names = ("text", "text_prev") if "text_prev" in inputs else ("text",)
    return tuple(tensor for name in names for tensor in (inputs[name], inputs[f"{name}_lengths"]))


def teacher_forced(model: nn.Module, encoded: Any, targets: Sequence[torch.Tensor]) -> BranchUpdates:
    """Every decoder block's input, output and branch updates, teacher-forced on ``encoded`` (what
    ``model.encode(speech, lengths)`` returned). ``capture.output`` is the ``TeacherForced`` result."""
    encoder_out, encoder_out_lens = encoded[0], encoded[1]
    if isinstance(encoder_out, tuple):  # with intermediate CTC: (encoder output, intermediate outputs)
        encoder_out = encoder_out[0]
    return branch_updates(DecoderAccess(model), encoder_out, encoder_out_lens, *targets)
