"""EdAcc (The Edinburgh International Accents of English Corpus, v1.0) -> ``accent_{train,dev,test}``.

Layout (the release README; ``edacc_v1.0.tar.gz`` from https://datashare.ed.ac.uk/handle/10283/4836)::

    <root>/data/<conversation>.wav                      whole conversations (32 kHz mono)
    <root>/{dev,test}/segments                          '<utt> <conversation> <start s> <end s>'
    <root>/{dev,test}/text                              '<utt> <transcript>'
    <root>/{dev,test}/utt2spk                           '<utt> <speaker>' (speaker = <conversation>-A / -B)
    <root>/{dev,test}/stm                               scoring references; read-speech segments are marked
                                                        IGNORE_TIME_SEGMENT_IN_SCORING
    <root>/{dev,test}/conv.list, company.ctm            not used
    <root>/linguistic_background.csv                    one row per speaker (PARTICIPANT_ID, self-described
                                                        accent, first language, ...)

``--root`` may also hold ``edacc_v1.0/``; ``segment`` is accepted for ``segments`` (the README spells it so).

There is no training split: ``test`` -> ``<domain>_test`` (the official test set, untouched), and the official
``dev`` is divided into an adaptation ``<domain>_train`` and ``<domain>_dev`` by **conversation** (both speakers of
a conversation share the recording and its cross-talk, so they stay together; this also makes the two sets
speaker-disjoint). Conversations are ordered by a SHA-256 hash and filled towards ``--adapt_fractions``
(default train=0.8,dev=0.2 of the dev utterances; see ``splits.split_speakers``).

Segment selection: segments the stm marks IGNORE_TIME_SEGMENT_IN_SCORING (the read control passage, excluded
from the official scoring) are dropped unless ``--keep_read``; segments containing ``<overlap>`` (cross-talk: the
reference covers one of several voices) are dropped unless ``--keep_overlap``; segments with end <= start too.

Transcript normalisation (:func:`normalize_edacc`): the special tokens ``<breath> <click> <cough> <dtmf>
<foreign> <laugh> <lipsmack> <no-speech> <overlap> <ring>`` (any ``<...>``) removed; parenthesised spans
(``(( ))`` unintelligible) removed; ``*`` and ``~`` (mispronunciation / truncation marks of the Babel conventions
the corpus follows) deleted; then ``finish_text``. Hesitations (``um``, ``uh``) are kept as words (the official
GLM removes them at scoring time; ``peft.sh`` scores both systems identically). Empty results are dropped.

Speaker ids and utterance ids are the corpus' own (sanitised; an utterance id not starting with its speaker id
is prefixed with it). ``utt2accent`` and ``utt2l1`` are written from linguistic_background.csv when present.
Audio: each segment is cut from its conversation and converted to 16 kHz wav.

    python -m espnet_peft.recipe.corpora.edacc --root /data/edacc_v1.0 --out data
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from espnet_peft.recipe.corpora.cli import base_parser, output_options, run_cli
from espnet_peft.recipe.corpora.kaldi_writing import OutputOptions, write_sets
from espnet_peft.recipe.corpora.records import CorpusError, Drops, Utterance, safe_id, utt_id_for
from espnet_peft.recipe.corpora.splits import parse_fractions, split_speakers
from espnet_peft.recipe.corpora.transcripts import finish_text

CORPUS = "edacc"
IGNORE = "IGNORE_TIME_SEGMENT_IN_SCORING"
DEFAULT_ADAPT = {"train": 0.8, "dev": 0.2}

_ANGLE = re.compile(r"<[^<>]*>")
_PAREN = re.compile(r"\([^()]*\)")


def normalize_edacc(raw: str) -> str:
    text = _ANGLE.sub(" ", raw)
    while _PAREN.search(text):
        text = _PAREN.sub(" ", text)
    return finish_text(text.replace("*", "").replace("~", ""))


def find_root(root: Path) -> Path:
    for candidate in (root, root / "edacc_v1.0", root / "edacc"):
        if (candidate / "dev").is_dir() and (candidate / "data").is_dir():
            return candidate
    raise CorpusError(f"{root}: not an EdAcc release (expected {root}/{{data,dev,test}}/); get edacc_v1.0.tar.gz "
                      "from https://datashare.ed.ac.uk/handle/10283/4836")


def _table(path: Path) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            rows[key] = value.strip()
    return rows


def read_ignored(stm: Path) -> set[tuple[str, float, float]]:
    """(speaker, start, end) of the stm segments marked IGNORE_TIME_SEGMENT_IN_SCORING (times rounded to 10 ms)."""
    ignored: set[tuple[str, float, float]] = set()
    if not stm.is_file():
        return ignored
    for line in stm.read_text(encoding="utf-8-sig").splitlines():
        if line.startswith(";;") or IGNORE not in line:
            continue
        parts = line.split()
        if len(parts) >= 5:
            try:
                ignored.add((parts[2], round(float(parts[3]), 2), round(float(parts[4]), 2)))
            except ValueError:
                continue
    return ignored


def read_background(path: Path) -> dict[str, dict[str, str]]:
    """speaker -> {"accent": ..., "l1": ...} from linguistic_background.csv (column names matched loosely: the
    participant column is PARTICIPANT_ID or the first containing 'participant'; the accent column the first whose
    name contains 'accent'; the L1 column the first containing 'first language' or 'l1')."""
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        names = reader.fieldnames or []

        def column(*needles: str) -> str | None:
            return next((n for n in names if any(needle in n.lower() for needle in needles)), None)

        pid = "PARTICIPANT_ID" if "PARTICIPANT_ID" in names else column("participant")
        accent, l1 = column("accent"), column("first language", "l1")
        if pid is None:
            return {}
        return {row[pid].strip(): {"accent": (row.get(accent) or "").strip() if accent else "",
                                   "l1": (row.get(l1) or "").strip() if l1 else ""} for row in reader}


def scan_split(base: Path, split: str, drops: Drops, keep_read: bool, keep_overlap: bool,
               background: dict[str, dict[str, str]]) -> list[Utterance]:
    folder = base / split
    segments_file = next((folder / n for n in ("segments", "segment") if (folder / n).is_file()), None)
    for name, path in (("segments", segments_file), ("text", folder / "text"), ("utt2spk", folder / "utt2spk")):
        if path is None or not path.is_file():
            raise CorpusError(f"{folder}: missing {name}")
    texts, utt2spk = _table(folder / "text"), _table(folder / "utt2spk")
    ignored = read_ignored(folder / "stm")
    if not (folder / "stm").is_file():
        drops.add("no_stm_read_speech_not_filtered", str(folder / "stm"))
    utts: list[Utterance] = []
    for line in segments_file.read_text(encoding="utf-8-sig").splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        utt, conv, start_s, end_s = parts
        start, end = float(start_s), float(end_s)
        raw, spk = texts.get(utt), utt2spk.get(utt)
        if raw is None or spk is None:
            drops.add("not_in_text_or_utt2spk", utt)
            continue
        if end <= start:
            drops.add("bad_times", utt)
            continue
        if not keep_read and (spk, round(start, 2), round(end, 2)) in ignored:
            drops.add("read_passage", utt)
            continue
        if not keep_overlap and "<overlap>" in raw.lower():
            drops.add("overlap", utt)
            continue
        text = normalize_edacc(raw)
        if not text:
            drops.add("no_speech", utt)
            continue
        audio = base / "data" / f"{conv}.wav"
        speaker = safe_id(spk)
        info = {"conversation": conv}
        if spk in background:
            info.update({k: v for k, v in background[spk].items() if v})
        utts.append(Utterance(utt_id_for(speaker, utt), speaker, audio, text, start, end, info))
    if not utts:
        raise CorpusError(f"{folder}: no usable segment")
    return utts


def adaptation_split(dev: list[Utterance], fractions: dict[str, float]) -> dict[str, list[Utterance]]:
    per_conv = Counter(u.info["conversation"] for u in dev)
    where = split_speakers(per_conv, fractions, salt=CORPUS)
    sets: dict[str, list[Utterance]] = {name: [] for name in fractions if fractions[name] > 0}
    for utt in dev:
        sets[where[utt.info["conversation"]]].append(utt)
    return sets


def prepare(root: Path, output: OutputOptions, domain: str = "accent",
            adapt_fractions: dict[str, float] | None = None, keep_read: bool = False,
            keep_overlap: bool = False) -> dict[str, dict]:
    fractions = adapt_fractions or DEFAULT_ADAPT
    if set(fractions) != {"train", "dev"}:
        raise ValueError(f"adapt fractions must name train and dev, not {sorted(fractions)}")
    base = find_root(Path(root)).resolve()
    drops = Drops()
    background = read_background(base / "linguistic_background.csv")
    dev = scan_split(base, "dev", drops, keep_read, keep_overlap, background)
    test = scan_split(base, "test", drops, keep_read, keep_overlap, background)
    adapt = adaptation_split(dev, fractions)
    sets = {f"{domain}_train": adapt["train"], f"{domain}_dev": adapt["dev"], f"{domain}_test": test}
    conversations = {name: sorted({u.info["conversation"] for u in utts}) for name, utts in sets.items()}
    for utts in sets.values():  # the conversation is bookkeeping, not a per-utterance table worth writing
        utts[:] = [Utterance(u.utt_id, u.speaker, u.audio, u.text, u.start, u.end,
                             {k: v for k, v in u.info.items() if k != "conversation"}) for u in utts]
    # segments are cut out of whole conversations: always converted
    return write_sets(sets, replace(output, convert="always"), corpus=CORPUS, drops=drops,
                      extra_report={"conversations": conversations})


def main() -> dict:
    parser = base_parser(__doc__, CORPUS, convert=False)
    parser.add_argument("--domain", default="accent")
    parser.add_argument("--adapt_fractions", default="train=0.8,dev=0.2",
                        help="how the official dev set is divided, by conversation (default %(default)s)")
    parser.add_argument("--keep_read", action="store_true", help="keep the read control passage segments")
    parser.add_argument("--keep_overlap", action="store_true", help="keep segments containing <overlap>")
    args = parser.parse_args()
    return prepare(args.root, output_options(args), domain=args.domain,
                   adapt_fractions=parse_fractions(args.adapt_fractions), keep_read=args.keep_read,
                   keep_overlap=args.keep_overlap)


if __name__ == "__main__":
    run_cli(main)
