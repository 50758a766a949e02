"""The JSON record a benchmark leaves: when it was made, and the file itself.

Every script keeps its own record's keys (the committed ones under ``benchmarks/results/`` are quoted by the README
and docs); what they share is how the record is stamped and written.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
import sys
from typing import Any, Dict, Mapping, Optional, Sequence


def utc_timestamp() -> str:
    """Now, in UTC to the second, as the records' ``created`` field: ``2025-11-30T12:34:56+00:00``."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_record(path: Path, record: Mapping[str, Any], indent: int = 2) -> None:
    """``record`` as indented JSON with a final newline, its folder made first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=indent) + "\n")


def stamp(script: str, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``benchmark``, ``created`` and ``command`` of a record made by ``benchmarks/<script>.py`` with ``argv``
    (the process's own arguments when None), the command written as run from the repository root."""
    arguments = list(argv if argv is not None else sys.argv[1:])
    return {"benchmark": script, "created": utc_timestamp(), "command": ["python", f"benchmarks/{script}.py", *arguments]}


def save_if_asked(path: Optional[Path], record: Mapping[str, Any]) -> None:
    """Write ``record`` to ``path`` and say so; nothing when no ``--output`` was given."""
    if path:
        write_record(path, record)
        print(f"wrote {path}")
