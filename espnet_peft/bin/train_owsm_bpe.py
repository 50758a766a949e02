"""Train an OWSM-style BPE model and token list for a from-scratch S2T model (espnet_peft.recipe.owsm_tokens)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.recipe.owsm_tokens import train_owsm_bpe


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text", type=Path, required=True, help="Kaldi text with plain words (e.g. text.ctc)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vocab_size", type=int, default=300, help="BPE pieces on top of the special tokens")
    parser.add_argument("--speech_length", type=float, default=30.0, help="seconds covered by the time tokens")
    parser.add_argument("--lang", action="append", default=None, help="language token(s), e.g. <eng>")
    parser.add_argument("--task", action="append", default=None, help="task token(s), e.g. <asr>")
    args = parser.parse_args(cmd)
    lines = args.text.read_text(encoding="utf-8").splitlines()
    texts = [line.split(maxsplit=1)[1] for line in lines if len(line.split(maxsplit=1)) == 2]
    if not texts:
        raise SystemExit(f"{args.text} has no transcripts to train the BPE model on")
    model, tokens = train_owsm_bpe(texts, args.out, args.vocab_size, args.speech_length,
                                   args.lang or ["<eng>"], args.task or ["<asr>"])
    print(f"wrote {model} and {tokens}")


if __name__ == "__main__":
    main()
