"""Batched greedy CTC decoding of ESPnet S2T-CTC (OWSM-CTC) models.

ESPnet's ``espnet2.bin.s2t_inference_ctc`` decodes with ``beam_size 1`` through ``Speech2TextGreedySearch``: one
utterance at a time, the encoder runs with the prompt (``text_prev``, here ``<na>``, and the ``<lang><task>`` prefix),
and the hypothesis is the frame-wise argmax of the CTC head with repeats merged and blanks dropped. This module makes
the same choice for a whole batch at once. Every input is padded or trimmed to the model's window
(``preprocessor_conf.speech_length``), as ESPnet's inference does through the S2T-CTC preprocessor and as OWSM-CTC's
model card does for short audio, so all rows have the same length and batching changes no frame.

``tests/test_recipe_ctc.py`` checks the hypotheses against ``s2t_inference_ctc --beam_size 1`` token for token (on
ESPnet 202511; 202611's CLI rejects mono audio lists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch


@dataclass(frozen=True)
class CTCPrompt:
    """What an OWSM-CTC encoder is conditioned on: no previous text, and the language and task tokens."""

    na: int        # <na>: no previous text
    lang: int
    task: int
    blank: int


def make_ctc_prompt(token_list: Sequence[str], blank: int, lang_sym: str, task_sym: str,
                    na_sym: str = "<na>") -> CTCPrompt:
    index = {token: i for i, token in enumerate(token_list)}
    for symbol in (lang_sym, task_sym, na_sym):
        if symbol not in index:
            raise ValueError(f"{symbol!r} is not in the model's token list: check --lang_sym/--task_sym")
    return CTCPrompt(na=index[na_sym], lang=index[lang_sym], task=index[task_sym], blank=blank)


@torch.no_grad()
def ctc_greedy_decode(model: torch.nn.Module, speech: torch.Tensor, prompt: CTCPrompt) -> List[List[int]]:
    """Token ids (repeats merged, blanks dropped) for every row of ``speech`` ``[batch, samples]``.

    ``model`` is an ESPnet S2T-CTC model (``ESPnetS2TCTCModel``) in eval mode; all rows have the same length.
    """
    batch, device = speech.size(0), speech.device
    ones = torch.ones(batch, dtype=torch.long, device=device)
    encoded, _ = model.encode(
        speech, ones * speech.size(1),
        text_prev=torch.full((batch, 1), prompt.na, dtype=torch.long, device=device), text_prev_lengths=ones,
        prefix=torch.tensor([[prompt.lang, prompt.task]], device=device).repeat(batch, 1), prefix_lengths=ones * 2)
    if isinstance(encoded, tuple):  # intermediate CTC outputs ride along
        encoded = encoded[0]
    best = model.ctc.argmax(encoded)
    hyps = []
    for row in best:
        ids = torch.unique_consecutive(row).tolist()
        hyps.append([t for t in ids if t != prompt.blank])
    return hyps
