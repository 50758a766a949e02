"""Character error rate, shared by layer ablation and the logit lens.

Spaces are excluded before aligning, as ESPnet's ``ErrorCalculator.calculate_cer`` does: word boundaries are the
WER's business, and a CTC model's ``<space>`` token would otherwise count twice (as a character and as a split).
Unit-cost Levenshtein distance (``editdistance``, an ESPnet dependency), summed over utterances and divided by the
summed reference lengths, so long utterances weigh more than short ones (corpus CER, not a mean of per-utterance CERs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import editdistance


def _chars(text: str) -> str:
    return text.replace(" ", "")


def char_edits(hyp: str, ref: str) -> tuple[int, int]:
    """``(edit distance, reference length)`` in characters, spaces excluded."""
    hyp_chars, ref_chars = _chars(hyp), _chars(ref)
    return int(editdistance.eval(hyp_chars, ref_chars)), len(ref_chars)


def corpus_cer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Summed character edits / summed reference characters (spaces excluded)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    edits = ref_chars = 0
    for hyp, ref in zip(hyps, refs):
        e, n = char_edits(hyp, ref)
        edits += e
        ref_chars += n
    if ref_chars == 0:
        raise ValueError("the references hold no characters (besides spaces): CER is undefined")
    return edits / ref_chars


def token_cer(hyp_ids: Sequence[Sequence[int]], decode: Callable[[list[int]], str], refs: Sequence[str]) -> float:
    """Corpus CER of token-id hypotheses, each turned into text by ``decode``."""
    return corpus_cer([decode(list(ids)) for ids in hyp_ids], refs)
