"""Synthesise the near-natural forgetting sets (Piper ``en_US-joe-medium``; see :mod:`espnet_peft.recipe.piper_corpus`).

    python -m espnet_peft.bin.synthesize_piper --out data/local/piper --seed 0 --piper_sizes dev=60,test=600 \\
        --espeak_sizes train=400,dev=60,test=300   # the espeak-ng corpus whose sentences are held out

Writes ``<out>/piper_<split>/`` Kaldi dirs (+ ``wav/``) and ``<out>/piper.json``; re-running keeps finished wavs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.recipe.piper_corpus import parse_split_sizes, synthesize_piper_corpus
from espnet_peft.recipe.sentences import MAX_WORDS
from espnet_peft.recipe.synth import DEFAULT_UTTS, parse_sizes


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--piper_sizes", default="dev=60,test=600")
    parser.add_argument("--espeak_sizes", default=DEFAULT_UTTS,
                        help="sizes of the espeak-ng corpus at the same seed (synthesize_corpus --sizes): its "
                             "sentences are excluded")
    parser.add_argument("--max_words", type=int, default=MAX_WORDS)
    args = parser.parse_args(cmd)
    try:
        record = synthesize_piper_corpus(args.out, args.seed, parse_split_sizes(args.piper_sizes),
                                         parse_sizes(args.espeak_sizes), args.max_words)
    except (ValueError, RuntimeError) as error:
        raise SystemExit(f"synthesize_piper: {error}") from None
    for name, info in record["dirs"].items():
        print(f"{args.out / name}: {info['utterances']} utterances, {len(info['speakers'])} voice variants of "
              f"{record['real_voices']} real voice ({record['voice']})")


if __name__ == "__main__":
    main()
