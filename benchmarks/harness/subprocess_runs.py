"""One measurement in a fresh interpreter: the script runs itself as a worker and hands its result back as JSON.

A fresh process gives every measurement its own peak memory and no state left by the ones before. The parent runs
``python <script> <worker arguments> --result-file FILE``; the worker (``--worker`` in the scripts) measures, then
:func:`write_result` s to ``FILE``, which the parent reads back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

from .paths import REPO


def checkout_environment() -> Dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH``: a child imports this ``espnet_peft``."""
    # no empty entry: Python would read one as the working directory
    entries = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(entries)}


def run_worker(script: Path, arguments: Sequence[str], what: str, show_stderr: bool = False) -> Dict[str, Any]:
    """Run ``script`` with ``arguments`` and ``--result-file`` in a fresh interpreter; the result it wrote.

    Its stdout is dropped, its stderr shown as it runs (``show_stderr``) or kept for the error that names ``what``
    when it fails.
    """
    with tempfile.TemporaryDirectory() as scratch:
        result_file = Path(scratch) / "result.json"
        command = [sys.executable, str(Path(script).resolve()), *arguments, "--result-file", str(result_file)]
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=None if show_stderr else subprocess.PIPE,
                              text=True, env=checkout_environment())
        if done.returncode != 0:
            stderr = f":\n{done.stderr[-4000:]}" if done.stderr else ""
            raise RuntimeError(f"{what} failed (exit {done.returncode}){stderr}")
        return json.loads(result_file.read_text())


def write_result(result_file: Path, result: Mapping[str, Any]) -> None:
    """The worker's side of :func:`run_worker`."""
    Path(result_file).write_text(json.dumps(result))
