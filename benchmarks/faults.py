#!/usr/bin/env python
"""Run the fault suite (every test marked ``fault_case``: ``tests/test_faults.py`` and the marked cases of other test
files) and write its tally to ``benchmarks/results/faults.json``.

Counts the faults injected (SIGKILL at named points of training, merging, packaging and decoding, and of the recipe
driver), those survived with results identical to an uninterrupted run, the bad inputs tried (edited, cut-short or
mixed inputs among them), and those refused, dropped or redone with a message naming the file, utterance, flag or
tensor. Exits non-zero when any of them fails.

    python benchmarks/faults.py [--output benchmarks/results/faults.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from espnet_peft.utils.environment import head_commit
from harness.output import utc_timestamp, write_record
from harness.paths import REPO, RESULTS_DIR
from harness.subprocess_runs import checkout_environment


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "faults.json")
    args = parser.parse_args()
    env = {**checkout_environment(), "FAULTS_JSON": str(args.output.resolve())}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "fault_case", "tests"], cwd=REPO, env=env)
    tally = json.loads(args.output.read_text())
    # the unmarked hash: the suite has just rewritten this tracked file, so git_commit would always say "uncommitted"
    tally = {"created": utc_timestamp(), "command": "python benchmarks/faults.py",
             "git_commit": head_commit(REPO) or "", **tally}
    write_record(args.output, tally)
    print(json.dumps({k: v for k, v in tally.items() if not isinstance(v, list)}, indent=2))
    print(f"wrote {args.output}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
