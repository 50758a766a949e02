"""Reading YAML and JSON files that a run wrote, with errors that name the file and say how to fix it.

A file cut short by a kill, or edited into invalid syntax, otherwise surfaces as a bare ``ScannerError`` or
``JSONDecodeError`` that names no path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

import yaml


class UnreadableFileError(ValueError):
    """A file that does not parse (which file, and how to fix it, is in the message)."""


def _unreadable(path: Path, kind: str, error: Exception) -> UnreadableFileError:
    return UnreadableFileError(f"{path} is not valid {kind} ({str(error).splitlines()[0]}): it was cut short or edited "
                               "by hand; restore it, or delete it and re-run the step that wrote it")


def read_yaml(path: Union[str, Path]) -> Any:
    """``yaml.safe_load`` of a file; an unparsable file raises ``UnreadableFileError`` naming it."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise _unreadable(path, "YAML", error) from None


def read_json(path: Union[str, Path]) -> Any:
    """``json.loads`` of a file; an unparsable file raises ``UnreadableFileError`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise _unreadable(path, "JSON", error) from None
