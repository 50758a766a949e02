"""Provenance of derived outputs: what every recipe output records so that a changed input, or an output edited by
hand, is noticed.

A derived output dir holds ``made_from.json``, written last, once the output is complete:

* ``inputs``: the sha256 of each input file (a model, a config, a ``wav.scp``, a hypothesis file);
* ``audio``: per named ``wav.scp``, the sha256 of its *manifest*, every utterance id with the sha256 of the audio
  file it names (so overwriting a wav in place is a change, though ``wav.scp`` is unchanged). A piped entry
  (``cmd ... |``) counts by its command line;
* ``settings``: whatever else shaped the output (decoding options, the normaliser);
* ``outputs``: the sha256 of the files the step wrote, relative to the dir.

``is_current`` is true only when inputs, audio and settings are the same as recorded *and* every recorded output still
has its recorded content: a hypothesis file or package edited by hand is redone, never reported. ``stale_reason``
says which of them changed, for messages that name the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from espnet_peft.atomic import atomic_write_text
from espnet_peft.utils.file_hash import file_sha256  # noqa: F401 (the recipe imports it from here)
from espnet_peft.utils.kaldi_data import read_table

#: written into a derived output dir: the inputs (by sha256) and settings it was made from, and what it wrote
MADE_FROM = "made_from.json"


class ProvenanceError(ValueError):
    """A derived file no longer matches the record of how it was made."""


@lru_cache(maxsize=64)
def _audio_manifest(wav_scp: str, wav_scp_sha256: str, stamps: tuple) -> str:
    digest = hashlib.sha256()
    for key, location in sorted(read_table(Path(wav_scp)).items()):
        if location.rstrip().endswith("|"):
            content = "pipe:" + location
        else:
            try:
                content = file_sha256(location)
            except OSError as err:
                raise ProvenanceError(f"{wav_scp}: utterance {key}: cannot read {location} ({err.strerror}); "
                                      "re-run data preparation (stage 1) or drop the utterance") from None
        digest.update(f"{key} {content}\n".encode())
    return digest.hexdigest()


def audio_manifest_sha256(wav_scp: Path) -> str:
    """The sha256 of "utt-id sha256-of-its-audio" over every utterance of ``wav_scp`` (sorted by id).

    Cached within a process by the files' paths, sizes and modification times (a decode checks the same sets for many
    models).
    """
    locations = read_table(Path(wav_scp)).values()
    stamps = []
    for location in locations:
        path = Path(location)
        if not location.rstrip().endswith("|") and path.is_file():
            stat = path.stat()
            stamps.append((location, stat.st_size, stat.st_mtime_ns))
    return _audio_manifest(str(wav_scp), file_sha256(wav_scp), tuple(stamps))


def made_from(inputs: Mapping[str, Path], audio: Optional[Mapping[str, Path]] = None,
              **settings: Any) -> Dict[str, Any]:
    """The record of what an output is derived from: each input file's sha256, each ``wav.scp``'s audio manifest
    (``audio``), and the settings."""
    record: Dict[str, Any] = {"inputs": {name: file_sha256(Path(path)) for name, path in inputs.items()},
                              "settings": dict(settings)}
    if audio:
        record["audio"] = {name: audio_manifest_sha256(Path(path)) for name, path in audio.items()}
    return record


def read_record(out_dir: Path) -> Optional[Dict[str, Any]]:
    """``out_dir``'s ``made_from.json``, or None when there is none (never completed) or it cannot be read."""
    path = Path(out_dir) / MADE_FROM
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # a hand-damaged record: the output is redone
        return None


def changed_outputs(out_dir: Path, stored: Mapping[str, Any]) -> list:
    """The recorded outputs of ``out_dir`` that are missing or whose content differs from the record."""
    changed = []
    for name, sha in (stored.get("outputs") or {}).items():
        path = Path(out_dir) / name
        if not path.is_file() or file_sha256(path) != sha:
            changed.append(str(path))
    return changed


def stale_reason(out_dir: Path, record: Mapping[str, Any]) -> Optional[str]:
    """None when ``out_dir`` was completed from exactly ``record`` and its outputs are as written; else why not."""
    stored = read_record(out_dir)
    if stored is None:
        return f"{Path(out_dir) / MADE_FROM} is missing (never completed)"
    for part in ("inputs", "audio", "settings"):
        now, then = dict(record.get(part) or {}), dict(stored.get(part) or {})
        if now != then:
            names = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
            return f"its {part} changed since it was made: {names}"
    changed = changed_outputs(out_dir, stored)
    if changed:
        return f"{changed} changed after it was written"
    return None


def is_current(out_dir: Path, record: Mapping[str, Any]) -> bool:
    """True only when ``out_dir`` was completed from exactly these inputs and settings and its outputs are intact."""
    return stale_reason(out_dir, record) is None


def is_current_or_say_why(out_dir: Path, record: Mapping[str, Any]) -> bool:
    """``is_current``, printing ``redo OUT_DIR: <why>`` on stderr when a completed output is stale (nothing for one
    that was never completed): what the recipe's logs show of each redo."""
    reason = stale_reason(out_dir, record)
    if reason is not None and read_record(out_dir) is not None:
        print(f"redo {out_dir}: {reason}", file=sys.stderr)
    return reason is None


def mark_made_from(out_dir: Path, record: Mapping[str, Any], outputs: Sequence[str] = ()) -> None:
    """Write the record last, once the output is complete (a killed run leaves no record and is redone), with the
    sha256 of each of ``outputs`` (paths relative to ``out_dir``)."""
    full = dict(record)
    if outputs:
        full["outputs"] = {name: file_sha256(Path(out_dir) / name) for name in outputs}
    atomic_write_text(Path(out_dir) / MADE_FROM, json.dumps(full, indent=2, sort_keys=True))
