"""Common Voice English (Mozilla): accent subsets -> ``accent_{train,dev,test}``.

Layout (every release, https://commonvoice.mozilla.org/datasets)::

    <root>/cv-corpus-<version>/en/{train,dev,test,validated}.tsv    tab-separated, one header line
    <root>/cv-corpus-<version>/en/clips/<path>                       common_voice_en_<n>.mp3 (48 kHz)

``--root`` may be the ``en/`` directory, the ``cv-corpus-*`` directory, or a directory holding exactly one
``cv-corpus-*``. The TSVs are read with csv's QUOTE_NONE (sentences contain quotes).

Accent columns. Releases up to about v7 have ``accent``: one label from a fixed list (``us``, ``england``,
``indian``, ``scotland``, ``african``, ...). Later releases have ``accents``: free text, several descriptions
joined by ``|`` (``India and South Asia (India, Pakistan, Sri Lanka)|Scottish English``). Both are read (a row
with both uses both). Each description is normalised (lower-case, single spaces) and matched with ``re.fullmatch``
against the patterns of the accent map (:data:`DEFAULT_ACCENT_MAP`; ``--accent_map FILE`` replaces it: one
``<group> <regex>`` per line, ``#`` comments, several lines per group allowed). A clip belongs to a group when its
descriptions match exactly one group; clips matching two different groups are dropped (``ambiguous_accent``),
clips matching none are skipped (``accent_not_selected``, also when their group is not in ``--accents``).
Default ``--accents``: :data:`DEFAULT_ACCENTS` (non-US, non-England varieties).

Sets (``--split``): ``official`` (default) uses train/dev/test.tsv, which Common Voice makes speaker
(client_id)-disjoint; that is checked (a client in several is kept in test, then dev). ``validated`` pools
validated.tsv and splits it by client_id deterministically (``--fractions``, default 0.8/0.1/0.1): more data,
but not comparable with results on the official test set. ``--max_per_speaker N`` keeps at most N clips per
client (the first by clip name) so that a few prolific speakers do not dominate.

Speaker id ``cv_<first 12 hex digits of client_id>`` (longer if two clients would collide); utterance id
``<speaker>_<clip stem>``. Transcript: the ``sentence`` column through ``finish_text``. ``utt2accent`` holds the
group. Audio: MP3 decoded to 16 kHz wav with sox (Debian ``libsox-fmt-mp3``; without it libsndfile decodes).

    python -m espnet_peft.recipe.corpora.common_voice --root /data/cv-corpus-17.0-2024-03-15 --out data \\
        --accents indian,scottish --split official
"""

from __future__ import annotations

import csv
import re
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

from espnet_peft.recipe.corpora.cli import base_parser, output_options, run_cli
from espnet_peft.recipe.corpora.kaldi_writing import OutputOptions, write_sets
from espnet_peft.recipe.corpora.records import CorpusError, Drops, Utterance, safe_id
from espnet_peft.recipe.corpora.splits import DEFAULT_FRACTIONS, assign_by_speaker, parse_fractions
from espnet_peft.recipe.corpora.transcripts import finish_text

CORPUS = "commonvoice"
DEFAULT_ACCENT_MAP: dict[str, tuple[str, ...]] = {
    "us": (r"us", r"united states english", r"american english"),
    "england": (r"england", r"england english", r"english english"),
    "indian": (r"indian", r"india and south asia \(india, pakistan, sri lanka\)", r"indian english",
               r"south asian english"),
    "scottish": (r"scotland", r"scottish english"),
    "irish": (r"ireland", r"irish english"),
    "welsh": (r"wales", r"welsh english"),
    "african": (r"african", r"southern african \(south africa, zimbabwe, namibia\)", r"south african english",
                r"kenyan english", r"nigerian english", r"west african english", r"east african english"),
    "australian": (r"australia", r"australian english"),
    "canadian": (r"canada", r"canadian english"),
    "newzealand": (r"newzealand", r"new zealand english"),
    "filipino": (r"philippines", r"filipino", r"philippine english"),
    "hongkong": (r"hongkong", r"hong kong english"),
    "malaysian": (r"malaysia", r"malaysian english"),
    "singaporean": (r"singapore", r"singaporean english"),
    "westindies": (r"bermuda", r"west indies and bermuda \(bahamas, bermuda, jamaica, trinidad\)",
                   r"caribbean english"),
    "southatlantic": (r"southatlandtic", r"south atlantic \(falkland islands, saint helena\)"),
}
DEFAULT_ACCENTS = ("indian", "scottish", "irish", "african", "filipino", "hongkong", "singaporean", "malaysian",
                   "westindies")
OFFICIAL = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
PRIORITY = ("test", "dev", "train")


def read_accent_map(path: Path) -> dict[str, tuple[str, ...]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        group, _, pattern = line.partition(" ") if "\t" not in line else line.partition("\t")
        if not pattern.strip():
            raise ValueError(f"{path}:{number}: expected '<group> <regex>'")
        re.compile(pattern.strip())
        groups[group.strip()].append(pattern.strip())
    if not groups:
        raise ValueError(f"{path}: no '<group> <regex>' lines")
    return {g: tuple(p) for g, p in groups.items()}


def accent_descriptions(row: dict[str, str]) -> list[str]:
    """Normalised accent descriptions of a TSV row: the old ``accent`` column and the new ``accents`` column
    (split on ``|``), lower-cased, single-spaced, empty ones dropped."""
    out: list[str] = []
    for column in ("accent", "accents"):
        value = row.get(column) or ""
        for part in value.split("|"):
            part = " ".join(part.lower().split())
            if part:
                out.append(part)
    return out


def accent_group(descriptions: list[str], accent_map: dict[str, tuple[str, ...]]) -> tuple[str | None, bool]:
    """(group, ambiguous): the one group matched by the descriptions, or (None, True) if several groups match."""
    hits = {group for desc in descriptions for group, patterns in accent_map.items()
            if any(re.fullmatch(p, desc) for p in patterns)}
    if len(hits) > 1:
        return None, True
    return (hits.pop() if hits else None), False


def find_root(root: Path) -> Path:
    root = Path(root)
    if (root / "validated.tsv").is_file() or (root / "train.tsv").is_file():
        return root
    if (root / "en").is_dir():
        return find_root(root / "en")
    releases = sorted(p for p in root.glob("cv-corpus-*") if (p / "en").is_dir())
    if len(releases) == 1:
        return releases[0] / "en"
    if len(releases) > 1:
        raise CorpusError(f"{root}: several releases ({', '.join(p.name for p in releases)}); pass one as --root")
    raise CorpusError(f"{root}: no Common Voice English TSVs (expected cv-corpus-*/en/{{train,dev,test,validated}}"
                      ".tsv); download from https://commonvoice.mozilla.org/datasets")


def read_selected(path: Path, accents: tuple[str, ...], accent_map: dict[str, tuple[str, ...]],
                  drops: Drops) -> tuple[list[tuple[dict[str, str], str]], list[str]]:
    """Stream a TSV and keep the rows of the selected accent groups: ([(row, group)], accent columns present).
    Streaming matters: validated.tsv of English has well over a million rows."""
    if not path.is_file():
        raise CorpusError(f"{path}: missing")
    csv.field_size_limit(sys.maxsize)
    memo: dict[tuple[str, ...], tuple[str | None, bool]] = {}
    kept: list[tuple[dict[str, str], str]] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        names = reader.fieldnames or []
        missing = {"client_id", "path", "sentence"} - set(names)
        if missing:
            raise CorpusError(f"{path}: missing column(s) {sorted(missing)}")
        for row in reader:
            descriptions = tuple(accent_descriptions(row))
            if descriptions not in memo:
                memo[descriptions] = accent_group(list(descriptions), accent_map)
            group, ambiguous = memo[descriptions]
            if ambiguous:
                drops.add("ambiguous_accent", row["path"])
            elif group is None or group not in accents:
                drops.add("accent_not_selected", row["path"])
            else:
                kept.append((row, group))
    return kept, [c for c in ("accent", "accents") if c in names]


def speaker_ids(clients: set[str]) -> dict[str, str]:
    for length in (12, 16, 24, None):
        short = {c: f"cv_{safe_id(c[:length] if length else c)}" for c in clients}
        if len(set(short.values())) == len(clients):
            return short
    raise CorpusError("client ids collide even in full")  # unreachable: distinct ids stay distinct


def rows_to_utts(rows: list[tuple[dict[str, str], str]], base: Path, speakers: dict[str, str],
                 drops: Drops) -> list[Utterance]:
    utts: list[Utterance] = []
    for row, group in rows:
        text = finish_text(row["sentence"] or "")
        if not text:
            drops.add("empty_text", row["path"])
            continue
        speaker = speakers[row["client_id"]]
        utts.append(Utterance(f"{speaker}_{safe_id(Path(row['path']).stem)}", speaker, base / "clips" / row["path"],
                              text, info={"accent": group}))
    return utts


def cap_per_speaker(utts: list[Utterance], cap: int, drops: Drops) -> list[Utterance]:
    if cap <= 0:
        return utts
    kept: list[Utterance] = []
    count: Counter = Counter()
    for utt in sorted(utts, key=lambda u: u.utt_id):
        count[utt.speaker] += 1
        if count[utt.speaker] <= cap:
            kept.append(utt)
        else:
            drops.add("over_max_per_speaker", utt.utt_id)
    return kept


def prepare(root: Path, output: OutputOptions, domain: str = "accent", accents: tuple[str, ...] = DEFAULT_ACCENTS,
            accent_map: dict[str, tuple[str, ...]] | None = None, split: str = "official",
            fractions: dict[str, float] | None = None, max_per_speaker: int = 0) -> dict[str, dict]:
    accent_map = accent_map or DEFAULT_ACCENT_MAP
    unknown = set(accents) - set(accent_map)
    if unknown:
        raise ValueError(f"accent group(s) {sorted(unknown)} are not in the accent map ({', '.join(accent_map)})")
    base = find_root(Path(root)).resolve()
    drops = Drops()
    if split == "official":
        names = {name: base / tsv for name, tsv in OFFICIAL.items()}
    elif split == "validated":
        names = {"all": base / "validated.tsv"}
    else:
        raise ValueError(f"split must be 'official' or 'validated', not {split!r}")
    tables, columns = {}, set()
    for name, path in names.items():
        tables[name], present = read_selected(path, accents, accent_map, drops)
        columns |= set(present)
    speakers = speaker_ids({row["client_id"] for rows in tables.values() for row, _ in rows})
    if split == "official":
        owner: dict[str, str] = {}
        for name in PRIORITY:
            for row, _ in tables[name]:
                owner.setdefault(row["client_id"], name)
        by_split: dict[str, list[Utterance]] = {}
        for name in OFFICIAL:
            rows = []
            for row, group in tables[name]:
                if owner[row["client_id"]] == name:
                    rows.append((row, group))
                else:
                    drops.add("speaker_in_two_splits", f"{row['path']} ({name}, kept in {owner[row['client_id']]})")
            by_split[name] = cap_per_speaker(rows_to_utts(rows, base, speakers, drops), max_per_speaker, drops)
    else:
        utts = cap_per_speaker(rows_to_utts(tables["all"], base, speakers, drops), max_per_speaker, drops)
        by_split = assign_by_speaker(utts, fractions or DEFAULT_FRACTIONS, salt=CORPUS)
    sets = {f"{domain}_{name}": group for name, group in by_split.items()}
    # MP3 is never listed as it is: always decoded to wav
    return write_sets(sets, replace(output, convert="always"), corpus=CORPUS, drops=drops,
                      extra_report={"accent_columns": sorted(columns), "accents": list(accents), "split": split})


def main() -> dict:
    parser = base_parser(__doc__, CORPUS, convert=False)
    parser.add_argument("--domain", default="accent")
    parser.add_argument("--accents", default=",".join(DEFAULT_ACCENTS), help="accent groups kept (default "
                        "%(default)s)")
    parser.add_argument("--accent_map", type=Path, default=None, help="'<group> <regex>' lines replacing the "
                        "built-in map")
    parser.add_argument("--split", choices=("official", "validated"), default="official")
    parser.add_argument("--fractions", default="train=0.8,dev=0.1,test=0.1", help="for --split validated")
    parser.add_argument("--max_per_speaker", type=int, default=0, help="0: no cap")
    args = parser.parse_args()
    accent_map = read_accent_map(args.accent_map) if args.accent_map else None
    return prepare(args.root, output_options(args), domain=args.domain,
                   accents=tuple(a for a in args.accents.split(",") if a), accent_map=accent_map, split=args.split,
                   fractions=parse_fractions(args.fractions), max_per_speaker=args.max_per_speaker)


if __name__ == "__main__":
    run_cli(main)
