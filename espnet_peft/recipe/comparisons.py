"""Which differences between methods the data support: paired bootstrap intervals, and a sentence made from each.

Every method (its default config's row) is compared with full fine-tuning and with LoRA, each pair once, and SSVD-O
with SSVD (the pair the SSVD-O paper's claim is about), on learning
(the difference of target WERs) and on forgetting (the difference of source WERs), in absolute points: negative means
the method learns more / forgets less than the reference. Both systems are resampled on the same utterances and their
seeds pooled (``bootstrap.pooled_errors``). A difference is *significant* when its interval, rounded as printed,
excludes 0; the sentence says "significant" then and only then, so that the text never claims more than the interval.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping

import numpy as np

from espnet_peft.recipe import bootstrap

#: the references every method is compared with, in this order (full fine-tuning first: PEFT vs full, then vs LoRA)
REFERENCES = ("full", "lora")
#: method pairs compared besides those with a reference: (method, reference)
EXTRA_PAIRS = (("ssvd_o", "ssvd"),)
#: aspect -> the test set role whose WER difference measures it
ASPECTS = {"learning": "target", "forgetting": "source"}
#: what a negative / positive significant difference means
VERBS = {"learning": ("learns more than", "learns less than"), "forgetting": ("forgets less than", "forgets more than")}
DIGITS = 2  # decimals of the printed interval, on which significance is decided


@dataclasses.dataclass(frozen=True)
class Comparison:
    domain: str
    method: str
    reference: str
    aspect: str  # "learning" or "forgetting"
    difference: bootstrap.Interval  # WER(method) - WER(reference) on the aspect's set, absolute points

    @property
    def significant(self) -> bool:
        return self.difference.low > 0 or self.difference.high < 0

    @property
    def statement(self) -> str:
        role = ASPECTS[self.aspect]
        numbers = f"{role} WER {self.difference.format(DIGITS, signed=True)} points"
        if not self.significant:
            return (f"{self.method} and {self.reference} are not distinguishable in {self.aspect} on {self.domain}: "
                    f"{numbers}")
        better, worse = VERBS[self.aspect]
        verb = better if self.difference.high < 0 else worse
        return f"{self.method} {verb} {self.reference} on {self.domain}: {numbers}, significant"

    def as_dict(self) -> Dict[str, Any]:
        return {"method": self.method, "reference": self.reference, "aspect": self.aspect,
                "set": ASPECTS[self.aspect], "difference": self.difference.as_dict(DIGITS),
                "significant": self.significant, "statement": self.statement}


def _rounded(interval: bootstrap.Interval) -> bootstrap.Interval:
    """As printed; + 0.0 turns a rounded -0.0 into 0.0."""
    return bootstrap.Interval(*(round(v, DIGITS) + 0.0 for v in (interval.point, interval.low, interval.high)))


def compare(domain: str, errors: Mapping[str, Mapping[str, np.ndarray]], ref_words: Mapping[str, np.ndarray],
            n_resamples: int = bootstrap.N_RESAMPLES, seed: int = bootstrap.SEED,
            confidence: float = bootstrap.CONFIDENCE) -> List[Comparison]:
    """Comparisons of every method with each reference present in ``errors``.

    ``errors``: method -> role ("target" / "source") -> per-utterance errors pooled over seeds, all on the same
    utterances as ``ref_words`` (role -> reference words per utterance).
    """
    pairs = [(m, r) for r in REFERENCES if r in errors for m in errors if m != r]
    pairs += [(m, r) for m, r in EXTRA_PAIRS if m in errors and r in errors]
    done, comparisons = set(), []
    for method, reference in pairs:
        if frozenset((method, reference)) in done:
            continue
        done.add(frozenset((method, reference)))
        for aspect, role in ASPECTS.items():
            difference = bootstrap.paired_difference_ci(errors[method][role], errors[reference][role],
                                                        ref_words[role], n_resamples, seed, confidence)
            comparisons.append(Comparison(domain, method, reference, aspect, _rounded(difference)))
    return comparisons
