"""LibriSpeech (OpenSLR 12): the source-domain / forgetting sets, e.g. ``librispeech_test_clean``.

Layout (as released, https://www.openslr.org/12)::

    <root>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <root>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "<utt id> WORDS ..." per line

``--root`` may be the directory holding ``LibriSpeech/`` or ``LibriSpeech/`` itself. Part ``test-clean`` becomes
the set ``librispeech_test_clean`` (``-`` -> ``_``).

Transcripts: upper-case words and apostrophes only; normalisation is the shared ``finish_text`` (lower-case).
Speaker id ``<speaker>`` (LibriSpeech ids are already speaker-prefixed). The official parts are speaker-disjoint.
Audio: 16 kHz mono 16-bit FLAC, listed as it is (``--convert always`` makes wav copies).

    python -m espnet_peft.recipe.corpora.librispeech --root /data/LibriSpeech --out data \\
        --parts test-clean,test-other
"""

from __future__ import annotations

from pathlib import Path

from espnet_peft.recipe.corpora.cli import base_parser, output_options, run_cli
from espnet_peft.recipe.corpora.kaldi_writing import OutputOptions, write_sets
from espnet_peft.recipe.corpora.records import CorpusError, Drops, Utterance
from espnet_peft.recipe.corpora.transcripts import finish_text

CORPUS = "librispeech"
DEFAULT_PARTS = ("test-clean", "test-other")


def find_root(root: Path) -> Path:
    for candidate in (root / "LibriSpeech", root):
        if any((candidate / part).is_dir() for part in ("test-clean", "test-other", "dev-clean", "dev-other",
                                                        "train-clean-100", "train-clean-360", "train-other-500")):
            return candidate
    raise CorpusError(f"{root}: no LibriSpeech parts found (expected {root}/LibriSpeech/test-clean/... or "
                      f"{root}/test-clean/...); download from https://www.openslr.org/12")


def set_name(part: str) -> str:
    return f"librispeech_{part.replace('-', '_')}"


def scan_part(part_dir: Path, drops: Drops) -> list[Utterance]:
    utts: list[Utterance] = []
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utt_id, _, words = line.strip().partition(" ")
            text = finish_text(words)
            audio = (trans.parent / f"{utt_id}.flac").resolve()
            if not text:
                drops.add("empty_text", utt_id)
                continue
            utts.append(Utterance(utt_id, utt_id.split("-")[0], audio, text))
    if not utts:
        raise CorpusError(f"{part_dir}: no <spk>/<chapter>/*.trans.txt transcripts found")
    return utts


def prepare(root: Path, output: OutputOptions, parts: tuple[str, ...] = DEFAULT_PARTS) -> dict[str, dict]:
    base = find_root(Path(root))
    drops = Drops()
    sets = {}
    for part in parts:
        if not (base / part).is_dir():
            raise CorpusError(f"{base / part}: missing LibriSpeech part {part!r}")
        sets[set_name(part)] = scan_part(base / part, drops)
    return write_sets(sets, output, corpus=CORPUS, drops=drops)


def main() -> dict:
    parser = base_parser(__doc__, CORPUS)
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS), help="comma-separated (default %(default)s)")
    args = parser.parse_args()
    parts = tuple(p for p in args.parts.split(",") if p)
    return prepare(args.root, output_options(args), parts=parts)


if __name__ == "__main__":
    run_cli(main)
