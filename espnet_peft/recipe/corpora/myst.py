"""MyST (My Science Tutor, LDC2021S05): children's conversational speech -> ``child_{train,dev,test}``.

Layout (as in ESPnet's egs2/myst/asr1 README)::

    <root>/myst_child_conv_speech/data/{train,development,test}/<student>/<session>/<utterance>.flac
    <root>/myst_child_conv_speech/data/{train,development,test}/<student>/<session>/<utterance>.trn

``--root`` may be the directory holding ``myst_child_conv_speech/``, that directory, or its ``data/``. A ``.flac``
without a ``.trn`` is untranscribed and skipped (reason ``no_transcript``). Sets: the official partitions
``train`` / ``development`` / ``test`` -> ``<domain>_train`` / ``_dev`` / ``_test``; they are split by student,
which is checked: a student found in more than one partition is removed from the later one in the order
test, development, train (test data is never given away), and counted as ``speaker_in_two_partitions``.

Speaker id ``myst_<student>``; utterance id = the file stem (``myst_<student>_<session...>_<turn>``), prefixed
with the speaker id when it does not already start with it. Audio: 16 kHz FLAC, listed as it is.

Transcript normalisation (:func:`normalize_myst`), in order; ESPnet's egs2/myst ``text_preprocess.py`` practice:

1. One line: BOM dropped, line breaks and non-breaking spaces -> spaces.
2. An utterance containing ``<discard>`` (transcriber: unusable) is dropped (reason ``discard_tag``).
3. Markup removed with its content: ``<...>`` tags (``<no_signal>``, ``<side_speech>``, ``<noise>``,
   ``<breath>``, ``<laugh>``, ...), ``[...]`` and ``{...}`` annotations, and parenthesised spans, innermost first,
   so ``(())`` / ``(( ))`` (unintelligible), ``(*)`` and ``((best guess))`` all go (ESPnet removes them too: the
   guess is not reliable enough to train on).
4. ``+``-marked tokens: ``+...+`` spans inside a token and tokens starting with ``+`` (``+um``, ``+uh``) are
   removed; any other ``+`` is deleted. ``*`` is deleted. ``&`` -> ``and``; ``/`` -> ``slash`` (as ESPnet).
5. Spaced contractions re-joined: ``I 'M`` -> ``I'M`` (any word followed by ``'m 're 's 've 'll 'd``).
6. ``finish_text``: numbers spelled out, lower-case, punctuation removed (a truncated ``wh-`` keeps ``wh``).

An utterance whose result is empty (only noise / unintelligible markup) is dropped (``noise_only``), as is one
with fewer than ``--min_words`` words (default 1; ESPnet's Whisper-filtered lists use 3).

    python -m espnet_peft.recipe.corpora.myst --root /data/myst --out data [--domain child]
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from espnet_peft.recipe.corpora.cli import base_parser, output_options, run_cli
from espnet_peft.recipe.corpora.kaldi_writing import OutputOptions, write_sets
from espnet_peft.recipe.corpora.records import CorpusError, Drops, Utterance, safe_id, utt_id_for
from espnet_peft.recipe.corpora.transcripts import finish_text, read_text_file

CORPUS = "myst"
PARTITIONS = {"train": "train", "development": "dev", "test": "test"}
PRIORITY = ("test", "development", "train")  # who keeps a student found in several partitions

_ANGLE = re.compile(r"<[^<>]*>")
_SQUARE = re.compile(r"\[[^\[\]]*\]")
_CURLY = re.compile(r"\{[^{}]*\}")
_PAREN = re.compile(r"\([^()]*\)")
_PLUS_SPAN = re.compile(r"\+[^\s+]*\+")
_PLUS_TOKEN = re.compile(r"(?<!\S)\+\S*")
_SPACED_CONTRACTION = re.compile(r"(\w) '(m|re|s|ve|ll|d)\b", re.IGNORECASE)


def normalize_myst(raw: str) -> str | None:
    """The normalised transcript, or None when the utterance must be dropped (``<discard>``)."""
    text = " ".join(raw.replace("\ufeff", "").replace("\xa0", " ").split())
    if re.search(r"<\s*discard\s*>", text, re.IGNORECASE):
        return None
    text = _ANGLE.sub(" ", text)
    text = _SQUARE.sub(" ", text)
    text = _CURLY.sub(" ", text)
    while _PAREN.search(text):
        text = _PAREN.sub(" ", text)
    text = _PLUS_SPAN.sub(" ", text)
    text = _PLUS_TOKEN.sub(" ", text)
    text = text.replace("+", "").replace("*", "").replace("&", " and ").replace("/", " slash ")
    text = _SPACED_CONTRACTION.sub(r"\1'\2", text)
    return finish_text(text)


def find_data_dir(root: Path) -> Path:
    for candidate in (root / "myst_child_conv_speech" / "data", root / "data", root):
        if any((candidate / part).is_dir() for part in PARTITIONS):
            return candidate
    raise CorpusError(f"{root}: no MyST partitions found (expected {root}/myst_child_conv_speech/data/"
                      "{train,development,test}/<student>/<session>/*.flac); get the corpus from "
                      "https://catalog.ldc.upenn.edu/LDC2021S05")


def scan(root: Path, drops: Drops, min_words: int = 1) -> dict[str, list[Utterance]]:
    """Official partition name -> utterances (before the cross-partition student check)."""
    data = find_data_dir(Path(root)).resolve()
    found: dict[str, list[Utterance]] = {}
    for partition in PARTITIONS:
        utts: list[Utterance] = []
        for audio in sorted((data / partition).glob("*/*/*.flac")):
            student = audio.parent.parent.name
            trn = audio.with_suffix(".trn")
            if not trn.is_file():
                drops.add("no_transcript", str(audio))
                continue
            text = normalize_myst(read_text_file(trn))
            if text is None:
                drops.add("discard_tag", str(trn))
                continue
            if not text:
                drops.add("noise_only", str(trn))
                continue
            if len(text.split()) < min_words:
                drops.add("too_few_words", str(trn))
                continue
            speaker = f"myst_{safe_id(student)}"
            utts.append(Utterance(utt_id_for(speaker, audio.stem), speaker, audio, text))
        found[partition] = utts
    if not any(found.values()):
        raise CorpusError(f"{data}: no transcribed <student>/<session>/*.flac + .trn found")
    return found


def enforce_disjoint(found: dict[str, list[Utterance]], drops: Drops) -> dict[str, list[Utterance]]:
    owner: dict[str, str] = {}
    for partition in PRIORITY:
        for utt in found.get(partition, []):
            owner.setdefault(utt.speaker, partition)
    out: dict[str, list[Utterance]] = defaultdict(list)
    for partition, utts in found.items():
        for utt in utts:
            if owner[utt.speaker] == partition:
                out[partition].append(utt)
            else:
                drops.add("speaker_in_two_partitions", f"{utt.speaker} ({partition}, kept in {owner[utt.speaker]})")
    return out


def prepare(root: Path, output: OutputOptions, domain: str = "child", min_words: int = 1) -> dict[str, dict]:
    drops = Drops()
    found = enforce_disjoint(scan(Path(root), drops, min_words), drops)
    sets = {f"{domain}_{PARTITIONS[p]}": found.get(p, []) for p in PARTITIONS}
    return write_sets(sets, output, corpus=CORPUS, drops=drops)


def main() -> dict:
    parser = base_parser(__doc__, CORPUS)
    parser.add_argument("--domain", default="child", help="sets are DOMAIN_{train,dev,test} (default child)")
    parser.add_argument("--min_words", type=int, default=1, help="drop shorter transcripts (default 1)")
    args = parser.parse_args()
    return prepare(args.root, output_options(args), domain=args.domain, min_words=args.min_words)


if __name__ == "__main__":
    run_cli(main)
