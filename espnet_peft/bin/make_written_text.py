"""Write a data dir's transcripts as written sentences, for models that read and write them (Whisper).

    python -m espnet_peft.bin.make_written_text --data_dir dump/raw/child_train

Whisper was trained on written text and writes sentences: "The cat sat on the mat." A plain transcript ("the cat
sat on the mat") as its training target would spend the adapter's budget on unlearning capitals and full stops,
which scoring (``--normalizer whisper_english``) ignores anyway. Each ``text`` line gets a capital first letter and
a full stop unless it already ends in ``.?!``; the plain words are kept in ``text.plain``. A ``text`` that is already
the written form of its ``text.plain`` is left as it is, and any other ``text`` counts as new plain words (so a
refreshed data dir is never paired with an old ``text.plain``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.utils.kaldi_data import read_table, write_table


def written_sentence(words: str) -> str:
    words = " ".join(words.split())
    if not words:
        return words
    return words[0].upper() + words[1:] + ("" if words[-1] in ".?!" else ".")


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True)
    args = parser.parse_args(cmd)
    text, plain = args.data_dir / "text", args.data_dir / "text.plain"
    if not text.is_file():
        raise SystemExit(f"make_written_text: {text} not found")
    current = read_table(text)
    words = read_table(plain) if plain.is_file() else {}
    if set(words) != set(current) or any(written_sentence(words[u]) != line for u, line in current.items()):
        words = current
        write_table(plain, words)
    write_table(text, {utt: written_sentence(w) for utt, w in words.items()})
    print(f"{text}: written sentences (plain words in {plain})")


if __name__ == "__main__":
    main()
