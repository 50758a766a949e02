"""What every corpus preparer shares: the utterance record, speaker-disjoint splits, audio conversion, writing.

A preparer (``myst.py``, ``l2_arctic.py``, ...) scans its corpus into :class:`Utterance` records (speaker, audio
source, normalised transcript), assigns them to sets, and hands them to :func:`write_sets`, which

1. decides per utterance whether the source file can be listed as it is (``convert="auto"``: a 16-bit PCM WAV or
   FLAC file, mono, at ``fs``, and not a segment of a longer recording) or must be decoded with sox to
   ``<wav_dir>/<utt>.wav`` (16 kHz mono 16-bit; SPHERE, MP3, other rates, segments of conversations);
2. converts in parallel (``nj`` sox processes), keeping wavs left by an earlier run (each is written to a temporary
   name and renamed, so a killed run never leaves a half-written file under the final name);
3. writes each set as a Kaldi dir through :mod:`espnet_peft.utils.kaldi_data` (sorted tables, derived
   ``spk2utt``) and checks it with ``check_data_dir`` (tables only; stage 2/3 of ``peft.sh`` decode the audio).

``wav.scp`` lists plain paths (``kaldi_data`` refuses ``sox ... |`` pipes): original corpus files by absolute
path, converted files under ``wav_dir`` as given (relative to the recipe directory when ``--out`` is relative).

Speaker-disjoint splits (:func:`split_speakers`) are deterministic: speakers are ordered by a SHA-256 hash of
``"<salt>/<speaker>"`` (independent of scan order, file system and Python's hash seed), the first speakers in
that order seed the smallest sets, and every further speaker goes to the set furthest below its target share of
utterances. Adding speakers to a corpus moves few existing ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import soundfile

from espnet_peft.atomic import atomic_write_text
from espnet_peft.utils.kaldi_data import DataDir, check_data_dir, write_data_dir, write_table
from espnet_peft.utils.text_norm import normalize_text

log = logging.getLogger("espnet_peft.corpora")

FS = 16000
SPLITS = ("train", "dev", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}
SOX_HINT = "apt-get install sox (and libsox-fmt-mp3 for Common Voice .mp3)"


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


# ---------------------------------------------------------------- ids and text


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def safe_id(text: str) -> str:
    """A Kaldi key: runs of characters other than letters, digits, ``_ . -`` become ``_``."""
    return _UNSAFE.sub("_", text).strip("_")


def utt_id_for(speaker: str, name: str) -> str:
    """``name`` when it already starts with ``speaker`` (e.g. MyST, LibriSpeech), else ``<speaker>_<name>``, so that
    utterance ids sort by speaker (Kaldi's sort-consistency rule)."""
    name = safe_id(name)
    return name if name.startswith(speaker) else f"{speaker}_{name}"


_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(st|nd|rd|th)?(?!\w)", re.IGNORECASE)
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ("", " thousand", " million", " billion", " trillion")
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
            "twelve": "twelfth"}


def _below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    tens, ones = divmod(rest, 10)
    low = _ONES[rest] if rest < 20 else _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if not hundreds:
        return low
    return f"{_ONES[hundreds]} hundred" + (f" and {low}" if rest else "")


def cardinal(n: int) -> str:
    """English words of a non-negative integer, British style as ESPnet's egs2/myst (``inflect``) writes them:
    ``105`` -> ``one hundred and five``, ``1005`` -> ``one thousand and five``, ``21`` -> ``twenty-one``.
    Numbers of 10**15 and more are read digit by digit."""
    if n == 0:
        return "zero"
    if n >= 10**15:
        return " ".join(_ONES[int(d)] for d in str(n))
    groups = []
    while n:
        n, group = divmod(n, 1000)
        groups.append(group)
    words = [f"{_below_1000(g)}{_SCALES[i]}" for i, g in reversed(list(enumerate(groups))) if g]
    if len(words) > 1 and 0 < groups[0] < 100:
        words[-1] = f"and {words[-1]}"
    return " ".join(words)


def ordinal(words: str) -> str:
    """``twenty-one`` -> ``twenty-first``, ``one hundred`` -> ``one hundredth``."""
    head, sep, last = words.rpartition("-") if "-" in words.split()[-1] else words.rpartition(" ")
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}{sep}{last}"


def _number_words(match: re.Match) -> str:
    digits, decimals, suffix = match.group(1).replace(",", ""), match.group(2), match.group(3)
    if len(digits) > 1 and digits.startswith("0"):  # "007", codes: digit by digit
        words = " ".join(_ONES[int(d)] for d in digits)
    else:
        words = cardinal(int(digits))
    if decimals:
        words += " point " + " ".join(_ONES[int(d)] for d in decimals[1:])
    elif suffix:
        words = ordinal(words)
    return f" {words} "


def spell_numbers(text: str) -> str:
    """Numbers become words as ESPnet's egs2/myst text_preprocess does (with ``inflect``): ``42`` -> ``forty-two``,
    ``3rd`` -> ``third``, ``2.5`` -> ``two point five``, ``1,000`` -> ``one thousand``, ``1990`` -> ``one thousand
    nine hundred and ninety`` (hyphens become spaces afterwards); numbers with leading zeros (``007``, codes) are
    read digit by digit. Digits glued to letters (``mp3``) stay. Checked against inflect in the tests' history:
    identical words for 0..2100 and thousands of random 12-digit numbers (inflect itself takes ~3 s to import)."""
    if not any(c.isdigit() for c in text):
        return text
    return _NUMBER.sub(_number_words, text)


def finish_text(text: str) -> str:
    """The last step of every corpus normaliser: digits spelled out (:func:`spell_numbers`), then
    ``text_norm.normalize_text`` (NFKC, tags out, lowercase, punctuation to spaces except word-internal
    apostrophes, single spaces), so training targets look exactly like what scoring compares. Corpus-specific
    markup must be resolved before (e.g. ``[word]`` unwrapped), because ``normalize_text`` drops anything in
    ``<...>`` or ``[...]``."""
    return normalize_text(spell_numbers(text))


def read_text_file(path: Path) -> str:
    """A transcript file as one line: UTF-8 (a BOM is dropped; undecodable bytes become U+FFFD and are then
    removed as symbols), line breaks and non-breaking spaces become spaces."""
    raw = Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    return " ".join(raw.replace("\xa0", " ").replace("\ufffd", " ").split())


# ---------------------------------------------------------------- speaker splits


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
    counts = Counter(u.speaker for u in utts)
    where = split_speakers(counts, fractions, salt)
    sets: dict[str, list[Utterance]] = {name: [] for name in fractions if fractions[name] > 0}
    for utt in utts:
        sets[where[utt.speaker]].append(utt)
    return sets


# ---------------------------------------------------------------- audio


def require_sox() -> None:
    if shutil.which("sox") is None:
        raise CorpusError(f"sox not found: {SOX_HINT}")


@lru_cache(maxsize=1)
def sox_formats() -> frozenset[str]:
    """File types this sox build can read (``sox -h``: AUDIO FILE FORMATS); mp3 needs libsox-fmt-mp3."""
    out = subprocess.run(["sox", "-h"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("AUDIO FILE FORMATS:"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def sphere_header(path: Path) -> dict[str, str]:
    """The NIST SPHERE header fields (``key -type value`` lines up to ``end_head``), values as strings."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head.startswith(b"NIST_1A"):
        raise CorpusError(f"{path}: not a NIST SPHERE file (no NIST_1A magic)")
    lines = head.split(b"\n")
    try:
        size = int(lines[1].strip())
    except (IndexError, ValueError):
        raise CorpusError(f"{path}: unreadable SPHERE header size") from None
    if size > len(head):
        with open(path, "rb") as f:
            lines = f.read(size).split(b"\n")
    fields: dict[str, str] = {}
    for line in lines[2:]:
        text = line.decode("latin-1").strip()
        if text == "end_head":
            break
        parts = text.split(None, 2)
        if len(parts) == 3:
            fields[parts[0]] = parts[2]
    return fields


def sphere_is_shorten(path: Path) -> bool:
    """True when ``sample_coding`` names shorten compression (e.g. ``pcm,embedded-shorten-v2.00``)."""
    return "shorten" in sphere_header(path).get("sample_coding", "").lower()


SHORTEN_HELP = """{n} SPHERE file(s) are shorten-compressed (sample_coding {coding!r}), e.g. {example}.
Neither sox nor libsndfile decodes shorten, and sph2pipe (LDC's decoder) is in neither Debian nor PyPI.
Build it once from source and point the preparation at it:
    # sph2pipe_v2.5.tar.gz: from LDC (https://www.ldc.upenn.edu/language-resources/tools/sphere-conversion-tools)
    # or from Kaldi (cd kaldi/tools && make sph2pipe)
    tar xzf sph2pipe_v2.5.tar.gz && cd sph2pipe_v2.5 && gcc -o sph2pipe *.c -lm
then re-run with --sph2pipe /path/to/sph2pipe (local/data.sh: --sph2pipe PATH, or put sph2pipe on PATH).
Files already decoded are kept."""


def check_sphere(paths: Iterable[Path], sph2pipe: str | None) -> None:
    """Fail before any conversion when shorten-compressed SPHERE files are present and no sph2pipe is available."""
    shorten = [p for p in sorted(set(paths)) if Path(p).suffix.lower() == ".sph" and sphere_is_shorten(p)]
    if shorten and not sph2pipe:
        coding = sphere_header(shorten[0]).get("sample_coding", "")
        raise CorpusError(SHORTEN_HELP.format(n=len(shorten), coding=coding, example=shorten[0]))


def find_sph2pipe(explicit: str | None) -> str | None:
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise CorpusError(f"--sph2pipe {explicit}: not an executable file")
        return explicit
    return shutil.which("sph2pipe")


def usable_as_is(path: Path, fs: int) -> bool:
    """A file ``kaldi_data``/ESPnet can read directly: WAV or FLAC, 16-bit PCM, mono, at ``fs``."""
    if path.suffix.lower() not in (".wav", ".flac"):
        return False
    try:
        info = soundfile.info(str(path))
    except Exception:  # libsndfile raises several types; unreadable means "convert (and fail loudly there)"
        return False
    return (info.format in ("WAV", "FLAC") and info.subtype == "PCM_16" and info.channels == 1
            and info.samplerate == fs)


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True)
    if result.returncode != 0:
        raise CorpusError(f"{what} failed ({' '.join(map(str, cmd))}): "
                          f"{result.stderr.decode(errors='replace').strip()[-500:]}")


def convert(src: Path, dst: Path, fs: int = FS, start: float | None = None, end: float | None = None,
            sph2pipe: str | None = None) -> None:
    """Decode ``src`` (any sox-readable type, MP3, PCM or shorten SPHERE) to a 16-bit mono ``fs`` wav at ``dst``,
    optionally only ``[start, end)`` seconds. Written to a temporary name first, then renamed."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.tmp{os.getpid()}.wav")
    with tempfile.TemporaryDirectory(prefix="corpus_decode_") as scratch:
        source = Path(src)
        suffix = source.suffix.lower()
        if suffix == ".sph" and sphere_is_shorten(source):
            if not sph2pipe:
                raise CorpusError(SHORTEN_HELP.format(n=1, coding=sphere_header(source).get("sample_coding"),
                                                      example=source))
            decoded = Path(scratch) / "sph2pipe.wav"
            _run([sph2pipe, "-f", "wav", "-p", "-c", "1", str(source), str(decoded)], "sph2pipe")
            source = decoded
        elif suffix == ".mp3" and "mp3" not in sox_formats():
            # sox without libsox-fmt-mp3: libsndfile >= 1.1 decodes MP3 (checked by the tests); sox resamples.
            audio, rate = soundfile.read(str(source), dtype="float32", always_2d=True)
            decoded = Path(scratch) / "mp3.wav"
            soundfile.write(str(decoded), audio, rate, subtype="FLOAT")
            source = decoded
        cmd = ["sox", "-V1", str(source), "-r", str(fs), "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "wav",
               str(tmp)]
        if start is not None:
            cmd += ["trim", f"{start:.3f}"] + ([f"={end:.3f}"] if end is not None else [])
        try:
            _run(cmd, "sox")
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)


def _valid_wav(path: Path, fs: int) -> bool:
    try:
        info = soundfile.info(str(path))
    except Exception:
        return False
    return info.samplerate == fs and info.channels == 1 and info.frames > 0


def materialise(utts: Sequence[Utterance], wav_dir: Path, fs: int = FS, nj: int = 2, convert_mode: str = "auto",
                sph2pipe: str | None = None, drops: Drops | None = None) -> dict[str, str]:
    """utt id -> wav.scp location; converts what needs converting (see the module docstring). An utterance whose
    audio cannot be decoded is dropped (reason ``audio_conversion_failed``); every conversion failing is an error.
    Shorten-compressed SPHERE files without a ``sph2pipe`` stop everything before the first conversion."""
    if convert_mode not in ("auto", "always"):
        raise ValueError(f"convert must be 'auto' or 'always', not {convert_mode!r}")
    require_sox()
    locations: dict[str, str] = {}
    jobs: list[tuple[Utterance, Path]] = []
    as_is: dict[Path, bool] = {}
    for utt in utts:
        if not utt.audio.is_file():
            if drops is not None:
                drops.add("missing_audio", str(utt.audio))
            continue
        whole = utt.start is None and utt.end is None
        if whole and convert_mode == "auto":
            if utt.audio not in as_is:
                as_is[utt.audio] = usable_as_is(utt.audio, fs)
            if as_is[utt.audio]:
                locations[utt.utt_id] = str(utt.audio)
                continue
        dst = wav_dir / f"{utt.utt_id}.wav"
        locations[utt.utt_id] = str(dst)
        if not _valid_wav(dst, fs):
            jobs.append((utt, dst))
    check_sphere((utt.audio for utt, _ in jobs), sph2pipe)  # before converting anything
    failures: list[tuple[str, str]] = []

    def work(job: tuple[Utterance, Path]) -> None:
        utt, dst = job
        try:
            convert(utt.audio, dst, fs, utt.start, utt.end, sph2pipe)
        except CorpusError as error:
            failures.append((utt.utt_id, str(error)))

    if jobs:
        log.info("converting %d file(s) to %d Hz wav under %s (%d jobs)", len(jobs), fs, wav_dir, nj)
        with ThreadPoolExecutor(max(1, nj)) as pool:
            list(pool.map(work, jobs))
    if jobs and len(failures) == len(jobs):  # systematic (a missing sox format, a wrong sph2pipe), not a bad file
        raise CorpusError(f"every audio conversion ({len(jobs)}) failed; the first: {sorted(failures)[0][1]}")
    for utt_id, error in failures:
        locations.pop(utt_id, None)
        if drops is not None:
            drops.add("audio_conversion_failed", f"{utt_id}: {error}")
    return locations


# ---------------------------------------------------------------- writing


def write_sets(sets: Mapping[str, Sequence[Utterance]], out: Path, wav_dir: Path, fs: int = FS, nj: int = 2,
               convert_mode: str = "auto", sph2pipe: str | None = None, drops: Drops | None = None,
               report: Path | None = None, extra_report: Mapping | None = None) -> dict[str, dict]:
    """Write ``out/<name>/`` for every ``name -> utterances`` (existing dirs are replaced) and return a summary.

    Raises if an utterance id repeats, if a speaker is in two sets, if a set ends up empty, or if
    ``check_data_dir`` (tables only) finds a problem.
    """
    drops = drops if drops is not None else Drops()
    seen: dict[str, str] = {}
    speaker_set: dict[str, str] = {}
    for name, utts in sets.items():
        for utt in utts:
            if utt.utt_id in seen:
                raise CorpusError(f"utterance id {utt.utt_id} is in {seen[utt.utt_id]} and {name}")
            seen[utt.utt_id] = name
            if speaker_set.setdefault(utt.speaker, name) != name:
                raise CorpusError(f"speaker {utt.speaker} is in {speaker_set[utt.speaker]} and {name}: "
                                  "sets must be speaker-disjoint")
            if not utt.utt_id.startswith(utt.speaker):
                raise CorpusError(f"utterance id {utt.utt_id} does not start with its speaker id {utt.speaker}")
    everything = [u for utts in sets.values() for u in utts]
    locations = materialise(everything, wav_dir, fs, nj, convert_mode, sph2pipe, drops)
    summary: dict[str, dict] = {}
    for name, utts in sets.items():
        kept = [u for u in utts if u.utt_id in locations]
        if not kept:
            raise CorpusError(f"{out / name}: no utterance left (see the drop reasons: {drops.as_dict()})")
        data = DataDir(wav_scp={u.utt_id: locations[u.utt_id] for u in kept},
                       text={u.utt_id: u.text for u in kept},
                       utt2spk={u.utt_id: u.speaker for u in kept})
        target = Path(out) / name
        if target.exists():
            shutil.rmtree(target)
        write_data_dir(target, data)
        for key in sorted({k for u in kept for k in u.info}):
            write_table(target / f"utt2{key}", {u.utt_id: safe_id(u.info[key]) or "unknown"
                                                for u in kept if key in u.info})
        problems = check_data_dir(target, fs=fs, audio=False)
        if problems:
            raise CorpusError(f"{target}: " + "; ".join(problems[:10]))
        summary[name] = {"utterances": len(kept), "speakers": len({u.speaker for u in kept})}
        log.info("%s: %d utterances, %d speakers", target, len(kept), summary[name]["speakers"])
    if report is not None:
        atomic_write_text(report, json.dumps({"sets": summary, "dropped": drops.as_dict(),
                                              **(extra_report or {})}, indent=2, sort_keys=True) + "\n")
    for reason, count in sorted(drops.counts.items()):
        log.info("dropped %d: %s (e.g. %s)", count, reason, drops.examples[reason][0])
    return summary


# ---------------------------------------------------------------- command line


def base_parser(doc: str, corpus: str, convert: bool = True) -> argparse.ArgumentParser:
    """--root, --out, --wav_dir, --fs, --nj (and --convert, for corpora whose files may be usable as they are)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help=f"where the {corpus} release was unpacked")
    parser.add_argument("--out", type=Path, default=Path("data"), help="Kaldi dirs go to OUT/<set> (default data)")
    parser.add_argument("--wav_dir", type=Path, default=None,
                        help=f"converted audio (default OUT/local/{corpus}/wav)")
    parser.add_argument("--fs", type=int, default=FS)
    parser.add_argument("--nj", type=int, default=2, help="parallel sox processes")
    if convert:
        parser.add_argument("--convert", choices=("auto", "always"), default="auto",
                            help="auto: list 16-bit mono WAV/FLAC at --fs as they are; always: convert everything")
    return parser


def run_cli(main: Callable[[], dict]) -> None:
    """Shared ``__main__`` behaviour: INFO logging to stderr, a one-line error (exit 1) for corpus problems."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        summary = main()
    except (CorpusError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps(summary, sort_keys=True))


def default_wav_dir(out: Path, corpus: str, wav_dir: Path | None) -> Path:
    return wav_dir if wav_dir is not None else Path(out) / "local" / corpus / "wav"


def report_path(out: Path, corpus: str) -> Path:
    return Path(out) / "local" / corpus / "prep_report.json"
