"""Run one entry module several times in a single process, one argument line each.

    python -m espnet_peft.bin.run_many espnet_peft.bin.s2t_inference args.txt

Importing ESPnet's S2T task costs 10-16 s per process; decoding every test set of a model in one process pays it once.
Each line of the arguments file is split like a shell command line; blank lines and `#` comments are skipped.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = list(sys.argv[1:] if cmd is None else cmd)
    if len(args) != 2:
        raise SystemExit("usage: python -m espnet_peft.bin.run_many <entry.module> <arguments-file>")
    module = importlib.import_module(args[0])
    lines = [line for line in Path(args[1]).read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    for number, line in enumerate(lines, 1):
        print(f"[run_many] {number}/{len(lines)}: {args[0]} {line}", file=sys.stderr, flush=True)
        module.main(shlex.split(line))


if __name__ == "__main__":
    main()
