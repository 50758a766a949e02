"""Check or write the record of what a recipe output was made from (``made_from.json``), for shell stages.

    python -m espnet_peft.bin.made_from check --out DIR --input model=M --audio wav_scp=W --setting args="..."
    python -m espnet_peft.bin.made_from mark  --out DIR --input model=M --audio wav_scp=W --setting args="..." \
        --output text

``check`` exits 0 when ``DIR`` was completed from exactly these inputs (by sha256), audio files (every file a
``--audio`` wav.scp names, by sha256) and settings, and its recorded outputs are unchanged; 1 otherwise, saying why
on stderr. ``mark`` writes the record, with the sha256 of each ``--output`` file (relative to ``DIR``); call it once
the output is complete. See ``espnet_peft.recipe.provenance``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_peft.recipe.provenance import ProvenanceError, is_current_or_say_why, made_from, mark_made_from


def _pairs(items: List[str], what: str) -> Dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"made_from: --{what} {item!r} is not NAME=VALUE")
        pairs[name] = value
    return pairs


def main(cmd: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["check", "mark"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE")
    parser.add_argument("--audio", action="append", default=[], metavar="NAME=WAV_SCP",
                        help="a wav.scp whose every audio file counts as an input")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--output", action="append", default=[], metavar="FILE",
                        help="mark: a file the step wrote (relative to --out), checked unchanged from then on")
    args = parser.parse_args(cmd)
    inputs = {name: Path(path) for name, path in _pairs(args.input, "input").items()}
    audio = {name: Path(path) for name, path in _pairs(args.audio, "audio").items()}
    missing = [str(path) for path in [*inputs.values(), *audio.values()] if not path.is_file()]
    if missing:
        raise SystemExit(f"made_from: input file(s) not found: {missing}")
    try:
        record = made_from(inputs, audio, **_pairs(args.setting, "setting"))
    except ProvenanceError as err:
        raise SystemExit(f"made_from: {err}") from None
    if args.action == "check":
        return 0 if is_current_or_say_why(args.out, record) else 1
    mark_made_from(args.out, record, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
