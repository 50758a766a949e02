"""L2-ARCTIC (v5.0): CMU ARCTIC prompts read by 24 non-native speakers of English -> ``accent_{train,dev,test}``.

Layout (https://psi.engr.tamu.edu/l2-arctic-corpus/)::

    <root>/<SPEAKER>/wav/arctic_a0001.wav          44.1 kHz mono
    <root>/<SPEAKER>/transcript/arctic_a0001.txt   the prompt, one line, original case and punctuation
    (<SPEAKER>/annotation, <SPEAKER>/textgrid and suitcase_corpus/ are not used)

``--root`` may also hold ``l2arctic_release_v5.0/``. The release ships each speaker as ``<SPEAKER>.zip``: unzip
them first (a zip without its directory is reported).

Speakers by L1 (6 L1s x 4 speakers, 2 male + 2 female each) and the fixed, documented split :data:`SPLIT`:
each L1 gives 2 speakers (1 M, 1 F) to train, 1 to dev and 1 to test, so every set covers all six L1s and dev and
test are 3 M + 3 F each. ``--l1s`` keeps a subset of L1s::

    L1          train (M, F)    dev     test
    Arabic      ABA, SKA        YBAA    ZHAA
    Mandarin    BWC, LXC        NCC     TXHC
    Hindi       ASI, SVBI       RRBI    TNI
    Korean      HKK, HJK        YDCK    YKWK
    Spanish     EBVS, NJS       ERMS    MBMPS
    Vietnamese  HQTV, PNV       THV     TLV

(speaker genders as listed in the L2-ARCTIC README.)

All speakers read (nearly) the same 1,132 prompts, so speaker-disjoint sets still share sentences. By default
the prompts are also split (``--disjoint_prompts``, on): each prompt id goes to train/dev/test by a SHA-256 hash
of ``l2_arctic/<prompt id>`` with shares 0.8/0.1/0.1, and a set keeps only its own speakers' readings of its own
prompts (test: ~6 speakers x ~113 prompts), so no test sentence is ever seen in training. ``--shared_prompts``
keeps every reading (the usual speaker-only split).

Speaker id ``l2arctic_<SPEAKER>`` and utterance id ``l2arctic_<SPEAKER>_<stem>``. Transcripts: ``finish_text``
only (numbers spelled out, lower-case, punctuation removed). Audio: converted to 16 kHz wav.

    python -m espnet_peft.recipe.corpora.l2_arctic --root /data/l2arctic_release_v5.0 --out data
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from espnet_peft.recipe.corpora.cli import base_parser, output_options, run_cli
from espnet_peft.recipe.corpora.kaldi_writing import OutputOptions, write_sets
from espnet_peft.recipe.corpora.records import CorpusError, Drops, Utterance
from espnet_peft.recipe.corpora.transcripts import finish_text, read_text_file

CORPUS = "l2_arctic"
SPEAKERS = {  # speaker -> (L1, gender)
    "ABA": ("arabic", "m"), "SKA": ("arabic", "f"), "YBAA": ("arabic", "m"), "ZHAA": ("arabic", "f"),
    "BWC": ("mandarin", "m"), "LXC": ("mandarin", "f"), "NCC": ("mandarin", "f"), "TXHC": ("mandarin", "m"),
    "ASI": ("hindi", "m"), "RRBI": ("hindi", "m"), "SVBI": ("hindi", "f"), "TNI": ("hindi", "f"),
    "HJK": ("korean", "f"), "HKK": ("korean", "m"), "YDCK": ("korean", "f"), "YKWK": ("korean", "m"),
    "EBVS": ("spanish", "m"), "ERMS": ("spanish", "m"), "MBMPS": ("spanish", "f"), "NJS": ("spanish", "f"),
    "HQTV": ("vietnamese", "m"), "PNV": ("vietnamese", "f"), "THV": ("vietnamese", "f"), "TLV": ("vietnamese", "m"),
}  # fmt: skip
SPLIT = {
    "train": ("ABA", "SKA", "BWC", "LXC", "ASI", "SVBI", "HKK", "HJK", "EBVS", "NJS", "HQTV", "PNV"),
    "dev": ("YBAA", "NCC", "RRBI", "YDCK", "ERMS", "THV"),
    "test": ("ZHAA", "TXHC", "TNI", "YKWK", "MBMPS", "TLV"),
}
PROMPT_SHARES = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
L1S = tuple(sorted({l1 for l1, _ in SPEAKERS.values()}))


def prompt_split(prompt_id: str) -> str:
    """train/dev/test for a prompt id, from a SHA-256 hash (stable across runs, machines and releases)."""
    x = int(hashlib.sha256(f"{CORPUS}/{prompt_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for name, share in PROMPT_SHARES:
        edge += share
        if x < edge:
            return name
    return PROMPT_SHARES[-1][0]


def find_root(root: Path) -> Path:
    for candidate in (root, root / "l2arctic_release_v5.0", root / "l2arctic_release_v5", root / "l2arctic"):
        if any((candidate / spk / "wav").is_dir() for spk in SPEAKERS):
            return candidate
    zips = sorted(p.name for p in root.glob("*.zip"))
    hint = f" ({len(zips)} zip files found: unzip every <SPEAKER>.zip in {root} first)" if zips else ""
    raise CorpusError(f"{root}: no <SPEAKER>/wav directories{hint}; get the corpus from "
                      "https://psi.engr.tamu.edu/l2-arctic-corpus/")


def scan(root: Path, l1s: tuple[str, ...], drops: Drops) -> list[Utterance]:
    base = find_root(Path(root)).resolve()
    unknown = set(l1s) - set(L1S)
    if unknown:
        raise ValueError(f"unknown L1(s) {sorted(unknown)}; L2-ARCTIC has {', '.join(L1S)}")
    utts: list[Utterance] = []
    for spk, (l1, _) in sorted(SPEAKERS.items()):
        if l1 not in l1s:
            continue
        spk_dir = base / spk
        if not (spk_dir / "wav").is_dir():
            zipped = " (unzip it)" if (base / f"{spk}.zip").is_file() else ""
            raise CorpusError(f"{spk_dir}/wav: missing speaker {spk}{zipped}")
        speaker = f"l2arctic_{spk}"
        for wav in sorted((spk_dir / "wav").glob("*.wav")):
            trans = spk_dir / "transcript" / f"{wav.stem}.txt"
            if not trans.is_file():
                drops.add("no_transcript", str(wav))
                continue
            text = finish_text(read_text_file(trans))
            if not text:
                drops.add("empty_text", str(trans))
                continue
            utts.append(Utterance(f"{speaker}_{wav.stem}", speaker, wav, text, info={"l1": l1}))
    if not utts:
        raise CorpusError(f"{base}: no <SPEAKER>/wav/*.wav with a transcript/*.txt")
    return utts


def split(utts: list[Utterance], disjoint_prompts: bool, drops: Drops) -> dict[str, list[Utterance]]:
    where = {f"l2arctic_{spk}": name for name, spks in SPLIT.items() for spk in spks}
    sets: dict[str, list[Utterance]] = {name: [] for name in SPLIT}
    for utt in utts:
        name = where[utt.speaker]
        prompt = utt.utt_id[len(utt.speaker) + 1:]
        if disjoint_prompts and prompt_split(prompt) != name:
            drops.add(f"prompt_belongs_to_{prompt_split(prompt)}", utt.utt_id)
            continue
        sets[name].append(utt)
    return sets


def prepare(root: Path, output: OutputOptions, domain: str = "accent", l1s: tuple[str, ...] = L1S,
            disjoint_prompts: bool = True) -> dict[str, dict]:
    drops = Drops()
    sets = {f"{domain}_{name}": group for name, group in split(scan(Path(root), l1s, drops), disjoint_prompts,
                                                               drops).items()}
    return write_sets(sets, output, corpus=CORPUS, drops=drops,
                      extra_report={"split": {k: list(v) for k, v in SPLIT.items()},
                                    "disjoint_prompts": disjoint_prompts})


def main() -> dict:
    parser = base_parser(__doc__, CORPUS)
    parser.add_argument("--domain", default="accent")
    parser.add_argument("--l1s", default=",".join(L1S), help="comma-separated subset of %(default)s")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--disjoint_prompts", dest="disjoint_prompts", action="store_true", default=True,
                       help="also split the prompts (default)")
    group.add_argument("--shared_prompts", dest="disjoint_prompts", action="store_false",
                       help="keep every reading: sets share sentences")
    args = parser.parse_args()
    return prepare(args.root, output_options(args), domain=args.domain,
                   l1s=tuple(x for x in args.l1s.split(",") if x), disjoint_prompts=args.disjoint_prompts)


if __name__ == "__main__":
    run_cli(main)
