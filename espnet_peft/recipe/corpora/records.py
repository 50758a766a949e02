"""What a corpus preparer produces and reports: the utterance record, the drop tally, Kaldi-safe ids, its error.

A preparer (``myst.py``, ``l2_arctic.py``, ...) scans its corpus into :class:`Utterance` records (speaker, audio
source, normalised transcript) and counts what it skips in :class:`Drops` (written to ``prep_report.json``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class CorpusError(RuntimeError):
    """The corpus on disk is not what the preparer expects (missing files, unknown layout, undecodable audio)."""


@dataclass(frozen=True)
class Utterance:
    """One utterance. ``start``/``end`` (seconds) cut it out of a longer recording (EdAcc conversations)."""

    utt_id: str
    speaker: str
    audio: Path
    text: str
    start: float | None = None
    end: float | None = None
    info: Mapping[str, str] = field(default_factory=dict)  # e.g. {"accent": "indian"}: written as utt2<key>


@dataclass
class Drops:
    """Why scanned items were not used: reason -> examples (the first few), for the log and prep_report.json."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < 5:
            bucket.append(example)

    def as_dict(self) -> dict:
        return {reason: {"count": n, "examples": self.examples.get(reason, [])}
                for reason, n in sorted(self.counts.items())}


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def safe_id(text: str) -> str:
    """A Kaldi key: runs of characters other than letters, digits, ``_ . -`` become ``_``."""
    return _UNSAFE.sub("_", text).strip("_")


def utt_id_for(speaker: str, name: str) -> str:
    """``name`` when it already starts with ``speaker`` (e.g. MyST, LibriSpeech), else ``<speaker>_<name>``, so that
    utterance ids sort by speaker (Kaldi's sort-consistency rule)."""
    name = safe_id(name)
    return name if name.startswith(speaker) else f"{speaker}_{name}"
