"""Content fingerprints of files: what derived outputs record so that a changed input is noticed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping

from espnet_peft.atomic import atomic_write_text
from espnet_peft.utils.file_hash import file_sha256  # noqa: F401 (the recipe imports it from here)

#: written into a derived output dir: the inputs (by sha256) and settings it was made from
MADE_FROM = "made_from.json"


def made_from(inputs: Mapping[str, Path], **settings: Any) -> Dict[str, Any]:
    """The record of what an output is derived from: each input file's sha256, and the settings."""
    return {"inputs": {name: file_sha256(Path(path)) for name, path in inputs.items()}, "settings": dict(settings)}


def is_current(out_dir: Path, record: Mapping[str, Any]) -> bool:
    """True only when ``out_dir`` was completed from exactly these inputs and settings."""
    path = Path(out_dir) / MADE_FROM
    return path.is_file() and json.loads(path.read_text(encoding="utf-8")) == dict(record)


def mark_made_from(out_dir: Path, record: Mapping[str, Any]) -> None:
    """Write the record last, once the output is complete: a killed run leaves no record and is redone."""
    atomic_write_text(Path(out_dir) / MADE_FROM, json.dumps(dict(record), indent=2, sort_keys=True))
