"""Write OWSM S2T text files (text, text.prev, text.ctc; plain words kept in text.plain) for a Kaldi data dir.

    python -m espnet_peft.bin.make_s2t_text --data_dir data/child_train --lang '<eng>' --task '<asr>' --use_prev false
        [--notime false]   # OWSM-CTC: no <notimestamps> after the task token
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet2.utils.types import str2bool

from espnet_peft.recipe.s2t_text import write_s2t_text


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--dst_dir", type=Path, help="default: rewrite DATA_DIR in place")
    parser.add_argument("--lang", default="<eng>")
    parser.add_argument("--task", default="<asr>")
    parser.add_argument("--use_prev", type=str2bool, default=False,
                        help="prompt with the previous utterance of the same speaker instead of <na>")
    parser.add_argument("--notime", type=str2bool, default=True,
                        help="lead with <notimestamps> after the task token (OWSM); false for OWSM-CTC")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        out = write_s2t_text(args.data_dir, args.dst_dir, lang=args.lang, task=args.task, use_prev=args.use_prev,
                             notime=args.notime)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"make_s2t_text: {error}") from None
    print(f"S2T text files written to {out}")


if __name__ == "__main__":
    main()
