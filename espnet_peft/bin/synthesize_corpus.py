"""Synthesise the offline three-domain corpus (source / child / accent speech) with espeak-ng + sox.

    python -m espnet_peft.bin.synthesize_corpus --out data/local/synth --seed 0 --nj 2 \\
        --utts_per_split train=200,dev=40,test=40,source.train=1000 --speakers_per_split train=12,dev=6,test=6

Writes ``<out>/<domain>_<split>/`` Kaldi dirs (+ ``wav/``) and ``<out>/corpus.json``; re-running keeps finished wavs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.recipe.sentences import MAX_WORDS
from espnet_peft.recipe.synth import DEFAULT_SPEAKERS, DEFAULT_UTTS, DOMAINS, parse_sizes, synthesize_corpus


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output root (paths in wav.scp are written as "
                        "OUT/..., so a relative OUT gives paths relative to the directory you run from)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=1, help="parallel synthesis processes")
    parser.add_argument("--utts_per_split", "--sizes", default=DEFAULT_UTTS,
                        help="utterances per split: SPLIT=N or DOMAIN.SPLIT=N, comma-separated (default %(default)s)")
    parser.add_argument("--speakers_per_split", default=DEFAULT_SPEAKERS,
                        help="speakers per split, same syntax (default %(default)s)")
    parser.add_argument("--max_words", type=int, default=MAX_WORDS,
                        help="longest sentence in words (%(default)s; shorter utterances train a model from scratch "
                             "much faster)")
    parser.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated subset of %(default)s")
    parser.add_argument("--skip", default="", help="comma-separated <domain>_<split> dirs not to synthesise (their "
                        "texts are still drawn, so every other dir is the same as in the full corpus)")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        utts = parse_sizes(args.utts_per_split)
        speakers = parse_sizes(args.speakers_per_split)
        corpus = synthesize_corpus(args.out, seed=args.seed, utts=utts, speakers=speakers,
                                   domains=[d for d in args.domains.split(",") if d], nj=args.nj,
                                   max_words=args.max_words, skip=[d for d in args.skip.split(",") if d])
    except (ValueError, RuntimeError) as error:
        raise SystemExit(f"synthesize_corpus: {error}") from None
    for name, info in corpus["dirs"].items():
        print(f"{args.out / name}: {info['utterances']} utterances, {len(info['speakers'])} speakers, "
              f"{info['hours']:.3f} h")
    print(json.dumps(corpus["last_run"]))


if __name__ == "__main__":
    main()
