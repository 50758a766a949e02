"""The sha256 of a file, read in blocks: shared by the recipe's provenance records and the Whisper sources' pins."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Union


def file_sha256(path: Union[str, Path]) -> str:
    """Hex sha256 of the file's bytes (read in 1 MiB blocks: checkpoints can be GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
