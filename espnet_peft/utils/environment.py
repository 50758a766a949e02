"""Where a result was made: package versions, the CPU and GPUs, the git commit, the date.

The project's one environment probe: RESULTS.md's "Environments" block (``espnet_peft.recipe.report``), the source
model's card (``espnet_peft.bin.ship_source_model``) and the benchmarks describe their machine with it.

* :func:`package_version`: an installed distribution's version, from package metadata;
* :func:`cpu_model`: the CPU's model name (``/proc/cpuinfo`` on Linux, read once per process);
* :func:`gpu_names`: the NVIDIA GPUs, as ``nvidia-smi`` names them;
* :func:`head_commit`: the checkout's commit; :func:`git_commit`: the same, marked when tracked code differs;
* :func:`environment`: all of these and the date, python and host, as the report records them.

Only the standard library is imported: versions come from package metadata because importing torch or espnet here
would cost seconds.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

#: the checkout this package runs from (a git work tree in development; an installed copy is in none)
REPO = Path(__file__).resolve().parents[2]
#: tracked files that the project writes itself: the recipes' RESULTS.md are outputs of the report, so a change of
#: theirs is not a change of the code
GENERATED_FILES = ("egs2/*/peft1/RESULTS.md",)
NOT_INSTALLED = "not installed"
#: seconds a probe command may take (a hung nvidia-smi must not hang the report)
COMMAND_TIMEOUT_S = 20


def _run(cmd: List[str], cwd: Optional[Path] = None) -> str:
    """The command's stripped stdout; "" when it cannot run or runs too long."""
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def package_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution`` (its pip name, e.g. ``"espnet-peft"``); None when not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``; without one (not Linux), what :mod:`platform` knows of it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> List[str]:
    """One name per NVIDIA GPU, as ``nvidia-smi`` gives it; none where there is no ``nvidia-smi``."""
    if not shutil.which("nvidia-smi"):
        return []
    return _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]).splitlines()


def head_commit(repo: Path = REPO) -> Optional[str]:
    """HEAD's short hash, unmarked; None outside a git checkout (or without git)."""
    return _run(["git", "rev-parse", "--short", "HEAD"], cwd=repo) or None


def git_commit(repo: Path = REPO) -> Optional[str]:
    """:func:`head_commit`, plus " (with uncommitted changes)" when tracked files other than :data:`GENERATED_FILES`
    differ from it; None outside a git checkout (or without git)."""
    commit = head_commit(repo)
    if commit is None:
        return None
    excluded = [f":(exclude){pattern}" for pattern in GENERATED_FILES]
    if _run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded], cwd=repo):
        commit += " (with uncommitted changes)"
    return commit


def environment(training_devices: Optional[List[str]] = None) -> Dict[str, Any]:
    """Where and when this runs, as RESULTS.md lists it::

        {"date", "python", "espnet", "torch", "espnet_peft", "git_commit", "host", "cpu", "gpu", "training_devices"}

    All values are strings (a missing package is "not installed", no git "unknown", no GPU "none"), but
    ``training_devices``: the accelerators the runs trained on (their ``device`` in run_info.json), [] by default.
    """
    return {
        "date": datetime.datetime.now().astimezone().strftime("%a %b %d %H:%M:%S %Z %Y"),
        "python": platform.python_version(),
        "espnet": package_version("espnet") or NOT_INSTALLED,
        "torch": package_version("torch") or NOT_INSTALLED,
        "espnet_peft": package_version("espnet-peft") or NOT_INSTALLED,
        "git_commit": git_commit() or "unknown",
        "host": platform.node(), "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "gpu": ", ".join(gpu_names()) or "none",
        "training_devices": training_devices or [],
    }


def head_commit(repo: Path = REPO) -> Optional[str]:
    """HEAD's short hash alone, unmarked; None outside a git checkout (or without git).

    For a record that is itself a tracked file (``benchmarks/results/faults.json``): rewriting it would make
    :func:`git_commit` mark every run "(with uncommitted changes)".
    """
    return _run(["git", "rev-parse", "--short", "HEAD"], cwd=repo) or None
