"""CSLU: Kids' Speech (OGI Kids, LDC2007S18): scripted and spontaneous children's speech -> ``child_*``.

Layout (release 1.1; the same paths Kaldi's cmu_cslu_kids, Lhotse's cslu_kids and ESPnet's myst_ogi_cmu_kids
recipes read)::

    <root>/docs/all.map                                           '<prompt id> "<prompt text>"' per line
    <root>/speech/scripted/<grade>/<n>/<speaker>/<utt>.wav        read prompts; <utt> = <speaker><pp><take>
    <root>/speech/spontaneous/<grade>/<n>/<speaker>/<utt>.wav     ~1-3 min monologues
    <root>/trans/spontaneous/<grade>/<n>/<speaker>/<utt>.txt      their word-level transcripts
    <root>/verify/**/*-verified.txt                               '<wav path> <label>' for scripted files

``--root`` may also be a directory holding ``cslu_kids/``. The prompt of a scripted file is ``<pp>``, the two
characters before the last one of its name (``ks0010a0`` -> ``0a``), looked up case-insensitively in
``docs/all.map`` (Kaldi and ESPnet take the same two characters). Verification labels (LDC note): 1 good,
2 maybe (other junk in the file), 3 bad (the prompt is not said), 4 puff (good, with an air puff); only
``--keep_labels`` (default 1,4) are kept, and files without a label are kept. No official split: speakers (the
``<speaker>`` directory, the same child in both parts) are split deterministically (``--fractions``, default
train=0.8,dev=0.1,test=0.1; see ``splits.split_speakers``).

Transcript normalisation: scripted -> the all.map prompt through ``finish_text``. Spontaneous
(:func:`normalize_cslu_spontaneous`, following the clean-up in ESPnet's ``ogi_spon_all_data_prepare.sh``):
BOM dropped; ``<...>`` noise tags removed (``<bn>`` background noise, ``<bs>``, ``<sil>``, ``<ln>``, ...);
parenthesised tokens ``(...)`` removed; square brackets removed but their words kept (``[word]`` -> ``word``);
``*`` deleted (``*word`` marks a mispronunciation of ``word``); then ``finish_text``. Empty results are dropped.

Caveat: spontaneous files are whole monologues (minutes long) without time stamps. ``peft.sh`` drops utterances
longer than ``max_sec`` (stage 3) / ``speech_length`` (stage 2), so they only survive with those raised or after
segmenting them (e.g. CTC segmentation as in ESPnet's myst_ogi_cmu_kids); ``--parts scripted`` leaves them out.

    python -m espnet_peft.recipe.corpora.cslu_kids --root /data/cslu_kids --out data [--parts scripted,spontaneous]
"""

from __future__ import annotations

import re
from pathlib import Path

from espnet_peft.recipe.corpora.cli import base_parser, output_options, run_cli
from espnet_peft.recipe.corpora.kaldi_writing import OutputOptions, write_sets
from espnet_peft.recipe.corpora.records import CorpusError, Drops, Utterance, safe_id, utt_id_for
from espnet_peft.recipe.corpora.splits import DEFAULT_FRACTIONS, assign_by_speaker, parse_fractions
from espnet_peft.recipe.corpora.transcripts import finish_text, read_text_file

CORPUS = "cslu_kids"
PARTS = ("scripted", "spontaneous")
DEFAULT_KEEP_LABELS = (1, 4)

_ANGLE = re.compile(r"<[^<>]*>")
_PAREN = re.compile(r"\([^()]*\)")


def normalize_cslu_spontaneous(raw: str) -> str:
    text = raw.replace("\ufeff", "")
    text = _ANGLE.sub(" ", text)
    while _PAREN.search(text):
        text = _PAREN.sub(" ", text)
    text = text.replace("[", " ").replace("]", " ").replace("*", "")
    return finish_text(text)


def find_root(root: Path) -> Path:
    for candidate in (root, root / "cslu_kids", root / "cslu"):
        if (candidate / "speech").is_dir():
            return candidate
    raise CorpusError(f"{root}: no speech/ directory (expected {root}/speech/{{scripted,spontaneous}}/...); "
                      "get the corpus from https://catalog.ldc.upenn.edu/LDC2007S18")


def read_prompts(path: Path) -> dict[str, str]:
    """all.map: ``ID "text"`` per line -> {id (lower-case): text}."""
    if not path.is_file():
        raise CorpusError(f"{path}: missing (the prompt list of the scripted part)")
    prompts: dict[str, str] = {}
    for line in read_text_file_lines(path):
        key, _, text = line.partition(" ")
        text = text.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
        if key:
            prompts[key.lower()] = text
    return prompts


def read_text_file_lines(path: Path) -> list[str]:
    raw = path.read_bytes().decode("utf-8-sig", errors="replace")
    return [line.strip() for line in raw.splitlines() if line.strip()]


def read_verification(root: Path) -> dict[str, int]:
    """utterance stem -> label, from every ``*-verified.txt`` (``<path> <label>`` lines)."""
    labels: dict[str, int] = {}
    for path in sorted(root.rglob("*-verified.txt")):
        for line in read_text_file_lines(path):
            parts = line.split()
            if len(parts) >= 2 and parts[-1].isdigit():
                labels[Path(parts[0]).stem.lower()] = int(parts[-1])
    return labels


def scan(root: Path, parts: tuple[str, ...], drops: Drops,
         keep_labels: tuple[int, ...] = DEFAULT_KEEP_LABELS) -> list[Utterance]:
    base = find_root(Path(root)).resolve()
    utts: list[Utterance] = []
    prompts = read_prompts(base / "docs" / "all.map") if "scripted" in parts else {}
    labels = read_verification(base) if "scripted" in parts else {}
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"unknown CSLU part {part!r} (expected {', '.join(PARTS)})")
        wavs = sorted(p for p in (base / "speech" / part).rglob("*") if p.suffix.lower() == ".wav")
        if not wavs:
            raise CorpusError(f"{base / 'speech' / part}: no .wav files")
        for wav in wavs:
            rel = wav.relative_to(base / "speech" / part)
            speaker = safe_id(wav.parent.name.lower())
            stem = wav.stem.lower()
            if part == "scripted":
                label = labels.get(stem)
                if label is not None and label not in keep_labels:
                    drops.add(f"verification_label_{label}", str(wav))
                    continue
                prompt = stem[-3:-1]
                if prompt not in prompts:
                    drops.add("prompt_not_in_all_map", f"{wav} (prompt {prompt!r})")
                    continue
                text = finish_text(prompts[prompt])
            else:
                trans = base / "trans" / part / rel.with_suffix(".txt")
                if not trans.is_file():
                    matches = [p for p in trans.parent.glob("*") if p.stem.lower() == stem] if trans.parent.is_dir() \
                        else []
                    if not matches:
                        drops.add("no_transcript", str(wav))
                        continue
                    trans = matches[0]
                text = normalize_cslu_spontaneous(read_text_file(trans))
            if not text:
                drops.add("empty_text", str(wav))
                continue
            utts.append(Utterance(utt_id_for(speaker, stem), speaker, wav, text, info={"category": part}))
    return utts


def prepare(root: Path, output: OutputOptions, domain: str = "child", parts: tuple[str, ...] = PARTS,
            fractions: dict[str, float] | None = None,
            keep_labels: tuple[int, ...] = DEFAULT_KEEP_LABELS) -> dict[str, dict]:
    drops = Drops()
    utts = scan(Path(root), parts, drops, keep_labels)
    by_split = assign_by_speaker(utts, fractions or DEFAULT_FRACTIONS, salt=CORPUS)
    sets = {f"{domain}_{split}": group for split, group in by_split.items()}
    return write_sets(sets, output, corpus=CORPUS, drops=drops)


def main() -> dict:
    parser = base_parser(__doc__, CORPUS)
    parser.add_argument("--domain", default="child")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of %(default)s")
    parser.add_argument("--fractions", default="train=0.8,dev=0.1,test=0.1",
                        help="share of utterances per speaker-disjoint set (default %(default)s)")
    parser.add_argument("--keep_labels", default="1,4", help="verification labels kept (default %(default)s)")
    args = parser.parse_args()
    return prepare(args.root, output_options(args), domain=args.domain,
                   parts=tuple(p for p in args.parts.split(",") if p), fractions=parse_fractions(args.fractions),
                   keep_labels=tuple(int(x) for x in args.keep_labels.split(",") if x))


if __name__ == "__main__":
    run_cli(main)
