"""Copy the usable utterances of a Kaldi data dir to a new one and say what was dropped and why.

    python -m espnet_peft.bin.validate_data --src data/local/synth/child_train --dst data/child_train \\
        --min_sec 0.3 --max_sec 20 --fs 16000

Writes DST/{wav.scp,text,utt2spk,spk2utt,utt2dur,utt2num_samples,dropped.tsv,filter_summary.txt}. Exits non-zero
only when nothing is left (or the source dir itself is unusable); wav.scp must list plain paths, not pipes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.utils.kaldi_data import validate_and_filter


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--dst", type=Path, required=True)
    parser.add_argument("--min_sec", type=float, default=0.3)
    parser.add_argument("--max_sec", type=float, default=20.0)
    parser.add_argument("--fs", type=int, default=16000, help="expected sample rate; 0 accepts any")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        report = validate_and_filter(args.src, args.dst, args.min_sec, args.max_sec, args.fs or None)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"validate_data: {error}") from None
    print(report.summary())
    if report.kept == 0:
        raise SystemExit(f"validate_data: no usable utterance left in {args.src}; see {args.dst / 'dropped.tsv'}")


if __name__ == "__main__":
    main()
