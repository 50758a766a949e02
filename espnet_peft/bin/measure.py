"""Run a command and record its wall time and peak memory (max RSS of its largest descendant) in a JSON file.

    python -m espnet_peft.bin.measure --out exp/x/resources.json -- python -m espnet2.bin.launch ...

Re-runs (a resumed training) add their time to the file and keep the larger peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.atomic import atomic_write_text


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(cmd)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    start = time.perf_counter()
    returncode = subprocess.call(command)
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {"wall_time_s": 0.0, "peak_rss_mb": 0.0}
    record = {"wall_time_s": previous["wall_time_s"] + elapsed, "peak_rss_mb": max(previous["peak_rss_mb"], peak_mb),
              "runs": previous.get("runs", 0) + 1, "last_returncode": returncode}
    atomic_write_text(args.out, json.dumps(record, indent=2))
    sys.exit(returncode)


if __name__ == "__main__":
    main()
