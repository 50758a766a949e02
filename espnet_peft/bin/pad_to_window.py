"""Zero-pad every utterance of Kaldi data dirs to one window (see :mod:`espnet_peft.utils.audio_window`).

    python -m espnet_peft.bin.pad_to_window --seconds 15 dump/raw/child_test [dump/raw/child_dev ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.utils.audio_window import pad_data_dir


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--fs", type=int, default=16000)
    parser.add_argument("data_dirs", nargs="+", type=Path)
    args = parser.parse_args(cmd)
    for data_dir in args.data_dirs:
        try:
            n = pad_data_dir(data_dir, args.seconds, args.fs)
        except (ValueError, FileNotFoundError) as error:
            raise SystemExit(f"pad_to_window: {error}") from None
        print(f"{data_dir}: {n} utterances padded to {args.seconds:g} s")


if __name__ == "__main__":
    main()
