"""CMU Kids (LDC97S63): children reading sentences aloud, NIST SPHERE audio -> ``child_{train,dev,test}``.

Layout (the paths Kaldi's cmu_cslu_kids and ESPnet's myst_ogi_cmu_kids recipes read)::

    <root>/kids/<speaker>/signal/<utt>.sph     <utt> = <speaker (4 chars, 1st = f/m)><prompt (3)><take (1)>
    <root>/kids/<speaker>/trans/<utt>.trn      what the child actually said, with noise markers
    <root>/tables/sentence.tbl                 '<prompt>\\t<count>\\t<sentence>': the prompts
    <root>/tables/transcrp.tbl                 '<utt> <transcript>' (every .trn in one table)

``--root`` may also hold ``cmu_kids/`` (or several ``*/kids`` directories, e.g. one per CD). No official split:
speakers are split deterministically (``--fractions``, default train=0.8,dev=0.1,test=0.1).

Transcripts (``--text_source``): ``trn`` (default) uses the per-utterance ``.trn`` (falling back to
``transcrp.tbl``): what was said, including the reading miscues; ``prompt`` uses the ``sentence.tbl`` prompt (as
Kaldi's recipe does), which ignores miscues. ``.trn`` normalisation (:func:`normalize_cmu`): tokens with square
brackets removed (noise and event markers such as ``[noise]``, ``[breath]``, as in the OSU CMU-Kids annotation
script, which skips every token containing ``[`` or ``]``), ``/.../`` spans removed (phonetic spelling of a
mispronunciation), ``<...>`` removed, ``*`` deleted, then ``finish_text``. Empty results are dropped.

Audio: SPHERE files are always decoded to 16 kHz wav. PCM SPHERE is read by sox. Shorten-compressed SPHERE
(header ``sample_coding`` containing ``shorten``, e.g. ``pcm,embedded-shorten-v2.00``) needs LDC's ``sph2pipe``,
which is in neither Debian nor PyPI: every header is checked before anything is converted, and without
``--sph2pipe PATH`` (or ``sph2pipe`` on PATH) the preparation stops with build instructions.

    python -m espnet_peft.recipe.corpora.cmu_kids --root /data/cmu_kids --out data [--sph2pipe /opt/sph2pipe]
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from espnet_peft.recipe.corpora.audio import find_sph2pipe
from espnet_peft.recipe.corpora.cli import base_parser, output_options, run_cli
from espnet_peft.recipe.corpora.kaldi_writing import OutputOptions, write_sets
from espnet_peft.recipe.corpora.records import CorpusError, Drops, Utterance, safe_id, utt_id_for
from espnet_peft.recipe.corpora.splits import DEFAULT_FRACTIONS, assign_by_speaker, parse_fractions
from espnet_peft.recipe.corpora.transcripts import finish_text, read_text_file

CORPUS = "cmu_kids"
TEXT_SOURCES = ("trn", "prompt")

_BRACKET_TOKEN = re.compile(r"\S*[\[\]]\S*")
_SLASHED = re.compile(r"/[^/]*/")
_ANGLE = re.compile(r"<[^<>]*>")


def normalize_cmu(raw: str) -> str:
    text = _SLASHED.sub(" ", raw)
    text = _BRACKET_TOKEN.sub(" ", text)
    text = _ANGLE.sub(" ", text).replace("*", "")
    return finish_text(text)


def find_kids_dirs(root: Path) -> list[Path]:
    for pattern in ("kids", "cmu_kids/kids", "*/kids"):
        found = sorted(p for p in root.glob(pattern) if p.is_dir())
        if found:
            return found
    raise CorpusError(f"{root}: no kids/ directory (expected {root}/kids/<speaker>/signal/*.sph); get the corpus "
                      "from https://catalog.ldc.upenn.edu/LDC97S63")


def read_table(path: Path, tab: bool) -> dict[str, str]:
    if not path.is_file():
        return {}
    rows: dict[str, str] = {}
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        if tab and "\t" in line:
            parts = line.split("\t")
            rows[parts[0].strip().lower()] = parts[-1].strip()
        else:
            key, _, value = line.strip().partition(" ")
            rows[key.lower()] = value.strip()
    return rows


def scan(root: Path, text_source: str, drops: Drops) -> list[Utterance]:
    if text_source not in TEXT_SOURCES:
        raise ValueError(f"text_source must be one of {TEXT_SOURCES}, not {text_source!r}")
    kids_dirs = [d.resolve() for d in find_kids_dirs(Path(root))]
    tables = next((d.parent / "tables" for d in kids_dirs if (d.parent / "tables").is_dir()), None)
    sentences = read_table(tables / "sentence.tbl", tab=True) if tables else {}
    transcripts = read_table(tables / "transcrp.tbl", tab=False) if tables else {}
    if text_source == "prompt" and not sentences:
        raise CorpusError(f"--text_source prompt needs tables/sentence.tbl next to {kids_dirs[0]}")
    utts: list[Utterance] = []
    for kids in kids_dirs:
        for sph in sorted(kids.glob("*/signal/*.sph")):
            speaker = safe_id(sph.parent.parent.name.lower())
            stem = sph.stem.lower()
            if text_source == "prompt":
                prompt_id = stem[len(speaker):len(speaker) + 3]
                if prompt_id not in sentences:
                    drops.add("prompt_not_in_sentence_tbl", f"{sph} (prompt {prompt_id!r})")
                    continue
                text = finish_text(sentences[prompt_id])
            else:
                trn = sph.parent.parent / "trans" / f"{sph.stem}.trn"
                if trn.is_file():
                    raw = read_text_file(trn)
                elif stem in transcripts:
                    raw = transcripts[stem]
                else:
                    drops.add("no_transcript", str(sph))
                    continue
                text = normalize_cmu(raw)
            if not text:
                drops.add("empty_text", str(sph))
                continue
            utts.append(Utterance(utt_id_for(speaker, stem), speaker, sph, text))
    if not utts:
        raise CorpusError(f"{', '.join(map(str, kids_dirs))}: no usable <speaker>/signal/*.sph utterance")
    return utts


def prepare(root: Path, output: OutputOptions, domain: str = "child", text_source: str = "trn",
            fractions: dict[str, float] | None = None, sph2pipe: str | None = None) -> dict[str, dict]:
    drops = Drops()
    utts = scan(Path(root), text_source, drops)
    by_split = assign_by_speaker(utts, fractions or DEFAULT_FRACTIONS, salt=CORPUS)
    sets = {f"{domain}_{split}": group for split, group in by_split.items()}
    # SPHERE is never listed as it is: always decoded to wav
    return write_sets(sets, replace(output, convert="always"), corpus=CORPUS, drops=drops,
                      sph2pipe=find_sph2pipe(sph2pipe))


def main() -> dict:
    parser = base_parser(__doc__, CORPUS, convert=False)
    parser.add_argument("--domain", default="child")
    parser.add_argument("--text_source", choices=TEXT_SOURCES, default="trn")
    parser.add_argument("--fractions", default="train=0.8,dev=0.1,test=0.1")
    parser.add_argument("--sph2pipe", default=None, help="sph2pipe binary for shorten-compressed SPHERE")
    args = parser.parse_args()
    return prepare(args.root, output_options(args), domain=args.domain, text_source=args.text_source,
                   fractions=parse_fractions(args.fractions), sph2pipe=args.sph2pipe)


if __name__ == "__main__":
    run_cli(main)
