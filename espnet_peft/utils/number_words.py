"""English number words: the project's one speller, for corpus transcripts and for the synthetic sentences.

``cardinal`` writes British-style words (``one hundred and five``), as ESPnet's egs2/myst preprocessing (with
``inflect``) does. The tens and units of 21..99 are joined in one of two styles, because the two callers need
different tokens:

* ``"hyphenated"`` (the default): ``twenty-one``, as inflect writes it; corpus transcripts
  (``recipe/corpora/transcripts.py``) then turn the hyphen into a space through the text normaliser.
* ``"spaced"``: ``forty two``, one token per word, as the synthetic sentence grammar (``recipe/sentences.py``)
  emits it.

Both styles give the same words otherwise; numbers of 10**15 and more are read digit by digit in both.
"""

from __future__ import annotations

from typing import Literal

NumberStyle = Literal["hyphenated", "spaced"]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ("", " thousand", " million", " billion", " trillion")
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
            "twelve": "twelfth"}
_TENS_JOINER: dict[str, str] = {"hyphenated": "-", "spaced": " "}


def digit_words(digits: str) -> str:
    """``"007"`` -> ``zero zero seven``: a string of digits read one by one (codes, decimals, huge numbers)."""
    return " ".join(_ONES[int(d)] for d in digits)


def _below_1000(n: int, joiner: str) -> str:
    hundreds, rest = divmod(n, 100)
    tens, ones = divmod(rest, 10)
    low = _ONES[rest] if rest < 20 else _TENS[tens] + (f"{joiner}{_ONES[ones]}" if ones else "")
    if not hundreds:
        return low
    return f"{_ONES[hundreds]} hundred" + (f" and {low}" if rest else "")


def cardinal(n: int, style: NumberStyle = "hyphenated") -> str:
    """English words of a non-negative integer, British style as ESPnet's egs2/myst (``inflect``) writes them:
    ``105`` -> ``one hundred and five``, ``1005`` -> ``one thousand and five``, ``21`` -> ``twenty-one``
    (``twenty one`` with ``style="spaced"``). Numbers of 10**15 and more are read digit by digit."""
    joiner = _TENS_JOINER[style]
    if n == 0:
        return "zero"
    if n >= 10**15:
        return digit_words(str(n))
    groups = []
    while n:
        n, group = divmod(n, 1000)
        groups.append(group)
    words = [f"{_below_1000(g, joiner)}{_SCALES[i]}" for i, g in reversed(list(enumerate(groups))) if g]
    if len(words) > 1 and 0 < groups[0] < 100:
        words[-1] = f"and {words[-1]}"
    return " ".join(words)


def ordinal(words: str) -> str:
    """The ordinal of cardinal words: ``twenty-one`` -> ``twenty-first``, ``one hundred`` -> ``one hundredth``."""
    head, sep, last = words.rpartition("-") if "-" in words.split()[-1] else words.rpartition(" ")
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}{sep}{last}"
