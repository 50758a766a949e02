"""The last steps of every corpus transcript normaliser: numbers spelled out, then the scoring normalisation.

Corpus-specific markup (noise tags, mispronunciation marks, ...) is resolved by each preparer first; then
:func:`finish_text` makes training targets look exactly like what scoring compares.
"""

from __future__ import annotations

import re
from pathlib import Path

from espnet_peft.utils.number_words import cardinal, digit_words, ordinal
from espnet_peft.utils.text_norm import normalize_text

_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(st|nd|rd|th)?(?!\w)", re.IGNORECASE)


def _number_words(match: re.Match) -> str:
    digits, decimals, suffix = match.group(1).replace(",", ""), match.group(2), match.group(3)
    if len(digits) > 1 and digits.startswith("0"):  # "007", codes: digit by digit
        words = digit_words(digits)
    else:
        words = cardinal(int(digits))  # hyphenated, as inflect writes it; normalize_text splits the hyphen
    if decimals:
        words += " point " + digit_words(decimals[1:])
    elif suffix:
        words = ordinal(words)
    return f" {words} "


def spell_numbers(text: str) -> str:
    """Numbers become words as ESPnet's egs2/myst text_preprocess does (with ``inflect``): ``42`` -> ``forty-two``,
    ``3rd`` -> ``third``, ``2.5`` -> ``two point five``, ``1,000`` -> ``one thousand``, ``1990`` -> ``one thousand
    nine hundred and ninety`` (hyphens become spaces afterwards); numbers with leading zeros (``007``, codes) are
    read digit by digit. Digits glued to letters (``mp3``) stay. Checked against inflect in the tests' history:
    identical words for 0..2100 and thousands of random 12-digit numbers (inflect itself takes ~3 s to import)."""
    if not any(c.isdigit() for c in text):
        return text
    return _NUMBER.sub(_number_words, text)


def finish_text(text: str) -> str:
    """The last step of every corpus normaliser: digits spelled out (:func:`spell_numbers`), then
    ``text_norm.normalize_text`` (NFKC, tags out, lowercase, punctuation to spaces except word-internal
    apostrophes, single spaces), so training targets look exactly like what scoring compares. Corpus-specific
    markup must be resolved before (e.g. ``[word]`` unwrapped), because ``normalize_text`` drops anything in
    ``<...>`` or ``[...]``."""
    return normalize_text(spell_numbers(text))


def read_text_file(path: Path) -> str:
    """A transcript file as one line: UTF-8 (a BOM is dropped; undecodable bytes become U+FFFD and are then
    removed as symbols), line breaks and non-breaking spaces become spaces."""
    raw = Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    return " ".join(raw.replace("\xa0", " ").replace("\ufffd", " ").split())
