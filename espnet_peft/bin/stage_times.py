"""Wall time of each recipe stage, from the timestamps of the ``Stage N:`` lines that ``peft.sh`` logs.

    make demo 2>&1 | tee demo.log
    python -m espnet_peft.bin.stage_times demo.log     # a Markdown table: stage, start, duration

A stage lasts until the next stage starts; the last one until the log's last timestamped line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) \(peft\.sh:\d+\) (.*)$")
_STAGE = re.compile(r"^Stage (\d+): (.*)$")


def stage_times(lines: Sequence[str]) -> List[Tuple[int, str, dt.datetime, float]]:
    """(stage, what, start, seconds) for every stage the log started, in order."""
    stamps = [(dt.datetime.fromisoformat(m.group(1)), m.group(2)) for m in map(_STAMP.match, lines) if m]
    if not stamps:
        raise ValueError("no timestamped peft.sh lines: is this the output of a recipe's run.sh?")
    starts = [(int(s.group(1)), s.group(2), t) for t, text in stamps if (s := _STAGE.match(text))]
    ends = [t for _, _, t in starts[1:]] + [stamps[-1][0]]
    return [(n, what, t, (end - t).total_seconds()) for (n, what, t), end in zip(starts, ends)]


def _duration(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes else f"{sec} s"


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path)
    args = parser.parse_args(cmd)
    rows = stage_times(args.log.read_text(encoding="utf-8", errors="replace").splitlines())
    print("| stage | what | time |\n| --- | --- | ---: |")
    for number, what, _, seconds in rows:
        print(f"| {number} | {what.split(' (')[0][:70]} | {_duration(seconds)} |")
    print(f"| all | | {_duration(sum(r[3] for r in rows))} |")


if __name__ == "__main__":
    main()
