"""The one text normalisation applied to every reference and hypothesis before scoring, for every system.

Steps, in order (``normalize_text``):

1. Unicode NFKC (full-width forms and ligatures become plain characters); curly apostrophes become ``'``.
2. Remove tags: anything in angle brackets (ESPnet / OWSM special tokens ``<eng> <asr> <notimestamps> <na> <0.00>
   <sos/eos> <unk>``, Whisper's ``<|en|>``, corpus noise tags ``<noise> <laughter>``) and square-bracket tags
   (``[noise]``, Kaldi style). A tag becomes a space, so it never glues two words together.
3. Lowercase (``str.lower``, so non-ASCII letters fold too: sclite only folds ASCII case).
4. Punctuation and symbols (Unicode categories ``P*`` and ``S*``) become spaces, except an apostrophe between two
   letters or digits (``don't``, ``rock'n'roll`` keep theirs; ``'quoted'`` and ``students'`` lose it). So
   ``well-known`` scores as two words, as in Whisper's normaliser.
5. Collapse whitespace runs to one space and strip both ends.

Numbers are not spelled out and spellings are not unified: both sides get exactly the same treatment, which is what
a comparison between systems needs.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

_TAG = re.compile(r"<[^<>]*>|\[[^\[\]]*\]")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LMN"


def _strip_punctuation(text: str) -> str:
    out = []
    for i, char in enumerate(text):
        if char == "'" and 0 < i < len(text) - 1 and _is_word_char(text[i - 1]) and _is_word_char(text[i + 1]):
            out.append(char)  # in-word apostrophe: part of the word
        elif unicodedata.category(char)[0] in "PS":
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def normalize_text(text: str) -> str:
    """Normalise one transcript (see the module docstring); the result may be empty."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    text = _TAG.sub(" ", text).lower()
    return " ".join(_strip_punctuation(text).split())


def whisper_english(text: str) -> str:
    """openai-whisper's ``EnglishTextNormalizer`` (spellings, numbers as digits, contractions, fillers out), then
    :func:`normalize_text`: the normaliser Whisper's English WERs are reported with, applied to both sides."""
    from whisper.normalizers import EnglishTextNormalizer

    global _WHISPER_ENGLISH
    if _WHISPER_ENGLISH is None:
        _WHISPER_ENGLISH = EnglishTextNormalizer()
    return normalize_text(_WHISPER_ENGLISH(text))


_WHISPER_ENGLISH = None
#: ``score --normalizer``: the same function for references and hypotheses
NORMALIZERS: dict[str, Callable[[str], str]] = {"default": normalize_text, "whisper_english": whisper_english}
