"""Running a copy of the embedded recipe (egs2/synthetic/peft1) from the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[2]


def copy_recipe(root: Path) -> Path:
    """``egs2/`` copied under ``root`` (only the recipe files: a run in the working tree leaves data/, dump/, exp/
    that must not leak in); returns the embedded recipe's dir in the copy."""
    shutil.copytree(REPO / "egs2", root / "egs2", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp", "run.log", "RESULTS.md"))
    return root / "egs2" / "synthetic" / "peft1"


def recipe_env(base_env: Optional[dict] = None) -> dict:
    base_env = base_env if base_env is not None else dict(os.environ)
    return {**base_env, "PATH": f"{Path(sys.executable).parent}:{base_env['PATH']}", "PYTHONPATH": str(REPO)}


def run_quick(recipe_dir: Path, options: Sequence[str], base_env: Optional[dict] = None
              ) -> subprocess.CompletedProcess:
    """``./run.sh --quick`` with this interpreter and one job; fails the test with the log's end unless it succeeds."""
    command = ["./run.sh", "--quick", "--python", sys.executable, "--nj", "1", *options]
    result = subprocess.run(command, cwd=recipe_dir, env=recipe_env(base_env), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-5000:]
    return result
