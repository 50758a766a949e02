"""Speaker-disjoint, deterministic train/dev/test splits, for corpora without an official split.

Speakers are ordered by a SHA-256 hash of ``"<salt>/<speaker>"`` (independent of scan order, file system and
Python's hash seed), the first speakers in that order seed the smallest sets, and every further speaker goes to
the set furthest below its target share of utterances. Adding speakers to a corpus moves few existing ones. The
"speaker" may be any grouping key (EdAcc splits by conversation).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence

from espnet_peft.recipe.corpora.records import Utterance

DEFAULT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}


def _rank(salt: str, speaker: str) -> str:
    return hashlib.sha256(f"{salt}/{speaker}".encode()).hexdigest()


def split_speakers(utts_per_speaker: Mapping[str, int], fractions: Mapping[str, float],
                   salt: str) -> dict[str, str]:
    """Speaker -> set name, speaker-disjoint and deterministic (see the module docstring).

    Every set with a positive fraction gets at least one speaker (an error if there are too few speakers).
    """
    targets = {name: share for name, share in fractions.items() if share > 0}
    if not targets:
        raise ValueError(f"no set has a positive fraction: {dict(fractions)}")
    if len(utts_per_speaker) < len(targets):
        raise ValueError(f"{len(utts_per_speaker)} speaker(s) cannot fill {len(targets)} speaker-disjoint sets "
                         f"({', '.join(targets)})")
    norm = sum(targets.values())
    total = sum(utts_per_speaker.values())
    order = sorted(utts_per_speaker, key=lambda spk: (_rank(salt, spk), spk))
    assigned: dict[str, str] = {}
    filled = Counter()
    # seed: one speaker per set, smallest set first (so a tiny test set is never starved by a big train set)
    for name, speaker in zip(sorted(targets, key=lambda n: (targets[n], n)), order):
        assigned[speaker] = name
        filled[name] += utts_per_speaker[speaker]
    for speaker in order[len(targets):]:
        name = max(targets, key=lambda n: (targets[n] / norm * total - filled[n], targets[n], n))
        assigned[speaker] = name
        filled[name] += utts_per_speaker[speaker]
    return assigned


def parse_fractions(spec: str) -> dict[str, float]:
    """``"train=0.8,dev=0.1,test=0.1"`` -> dict."""
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"bad fraction {item!r} in {spec!r} (expected NAME=FLOAT,...)") from None
    return out


def assign_by_speaker(utts: Sequence[Utterance], fractions: Mapping[str, float],
                      salt: str) -> dict[str, list[Utterance]]:
    """Set name -> utterances, by :func:`split_speakers` over the utterance counts per speaker."""
    counts = Counter(u.speaker for u in utts)
    where = split_speakers(counts, fractions, salt)
    sets: dict[str, list[Utterance]] = {name: [] for name in fractions if fractions[name] > 0}
    for utt in utts:
        sets[where[utt.speaker]].append(utt)
    return sets
