"""Check or write the record of what a recipe output was made from (``made_from.json``), for shell stages.

    python -m espnet_peft.bin.made_from check --out DIR --input model=M --input config=C --setting args="..."
    python -m espnet_peft.bin.made_from mark  --out DIR --input model=M --input config=C --setting args="..."

``check`` exits 0 when ``DIR`` was completed from exactly these inputs (by sha256) and settings, 1 otherwise;
``mark`` writes the record (call it once the output is complete).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_peft.recipe.fingerprint import is_current, made_from, mark_made_from


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
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(cmd)
    inputs = {name: Path(path) for name, path in _pairs(args.input, "input").items()}
    missing = [str(path) for path in inputs.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"made_from: input file(s) not found: {missing}")
    record = made_from(inputs, **_pairs(args.setting, "setting"))
    if args.action == "check":
        return 0 if is_current(args.out, record) else 1
    mark_made_from(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
