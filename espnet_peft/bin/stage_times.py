"""Wall time of each recipe stage, from the timestamps of the ``Stage N:`` lines that ``peft.sh`` logs.

    make demo 2>&1 | tee demo.log
    python -m espnet_peft.bin.stage_times demo.log     # a Markdown table: stage, what, duration
    python -m espnet_peft.bin.stage_times demo.log --json stage_times.json   # also the record the docs are made from

A stage lasts until the next stage starts; the last one until the log's last timestamped line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

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


def record(rows: Sequence[Tuple[int, str, dt.datetime, float]], log: str) -> Dict[str, Any]:
    """The JSON form of ``stage_times``: what ``stage_table`` (and so the docs) renders."""
    return {"log": log, "stages": [{"stage": n, "what": what.split(" (")[0][:70], "start": start.isoformat(),
                                    "seconds": seconds} for n, what, start, seconds in rows],
            "total_seconds": sum(r[3] for r in rows)}


def stage_table(times: Mapping[str, Any]) -> str:
    """A Markdown table of a ``record``: one row per stage and the total."""
    lines = ["| stage | what | time |", "| --- | --- | ---: |"]
    lines += [f"| {row['stage']} | {row['what']} | {_duration(row['seconds'])} |" for row in times["stages"]]
    lines.append(f"| all | | {_duration(times['total_seconds'])} |")
    return "\n".join(lines)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="also write the stage times as JSON to this file")
    args = parser.parse_args(cmd)
    times = record(stage_times(args.log.read_text(encoding="utf-8", errors="replace").splitlines()), str(args.log))
    print(stage_table(times))
    if args.json is not None:
        args.json.write_text(json.dumps(times, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
