"""Kaldi data directories: read, write (sorted, atomic), check, and filter down to the usable utterances.

A data dir holds ``wav.scp``, ``text``, ``utt2spk`` and the derived ``spk2utt``, one ``key value`` line each,
sorted by key (byte order, as ``LC_ALL=C sort``). Utterance ids must start with their speaker id so that sorting by
utterance also groups speakers (Kaldi's sort-consistency rule).

``wav.scp`` entries must be plain file paths: Kaldi pipe entries (``sox in.flac -t wav - |``) and ``segments`` are
not supported, because every audio file is opened directly with soundfile. Relative paths are resolved against the
current directory, as Kaldi does, so run from the recipe root.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from espnet_peft.atomic import atomic_write_text
from espnet_peft.utils.text_norm import normalize_text

TABLES = ("wav.scp", "text", "utt2spk")
# Utterance-keyed files that travel with a data dir when it is filtered (e.g. the OWSM text variants).
EXTRA_UTT_TABLES = ("text.prev", "text.ctc", "text.plain", "utt2category", "utt2lang")


# ---------------------------------------------------------------- tables


def _decoded_lines(path: Path) -> list[str]:
    """The file's lines as UTF-8 text, without a byte-order mark; a bad byte is an error naming file and line."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):  # a BOM would otherwise become part of the first utterance id
        data = data[3:]
    try:
        return data.decode("utf-8").split("\n")
    except UnicodeDecodeError as error:
        newline = b"\n"
        line_start = data.rfind(newline, 0, error.start) + 1
        line_end = data.find(newline, error.start)
        line = data[line_start:line_end if line_end >= 0 else len(data)]
        number = data.count(newline, 0, error.start) + 1
        raise ValueError(
            f"{path}, line {number}: byte 0x{data[error.start]:02x} at column "
            f"{error.start - line_start + 1} is not UTF-8 ({line[:60]!r}); convert the file to UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8)"
        ) from None


def parse_table(path: Path) -> tuple[dict[str, str], list[str]]:
    """``key value`` lines -> (dict, duplicate keys). A key alone on its line gets the value ``""``."""
    rows: dict[str, str] = {}
    duplicates: list[str] = []
    for line in _decoded_lines(Path(path)):
        parts = line.split(None, 1)  # space or tab after the key
        if not parts:
            continue
        key, value = parts[0], parts[1].strip() if len(parts) > 1 else ""
        if key in rows:
            duplicates.append(key)
        rows[key] = value
    return rows, duplicates


def read_table(path: Path) -> dict[str, str]:
    """Strict reader: a repeated key is an error that names the file."""
    rows, duplicates = parse_table(path)
    if duplicates:
        raise ValueError(f"{path}: duplicate keys {duplicates[:5]} (each utterance id must appear once)")
    return rows


def write_table(path: Path, rows: Mapping[str, str]) -> None:
    """Sorted by key in byte order (what ``LC_ALL=C sort`` and Kaldi expect)."""
    for key, value in rows.items():
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"{path}: key {key!r} is empty or contains whitespace")
        if "\n" in value:
            raise ValueError(f"{path}: value for {key} contains a newline")
    atomic_write_text(path, "".join(f"{k} {rows[k]}\n" for k in sorted(rows)))


def spk2utt(utt2spk: Mapping[str, str]) -> dict[str, str]:
    groups: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        groups.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in groups.items()}


# ---------------------------------------------------------------- data dirs


@dataclass
class DataDir:
    """The three primary tables of a Kaldi data dir (``spk2utt`` is always derived)."""

    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    extra: dict[str, dict[str, str]] = field(default_factory=dict)  # e.g. {"utt2dur": {...}}

    def subset(self, utts: Iterable[str]) -> DataDir:
        keep = set(utts)

        def pick(table: Mapping[str, str]) -> dict[str, str]:
            return {k: v for k, v in table.items() if k in keep}

        return DataDir(pick(self.wav_scp), pick(self.text), pick(self.utt2spk),
                       {name: pick(table) for name, table in self.extra.items()})


def read_data_dir(data_dir: Path) -> DataDir:
    data_dir = Path(data_dir)
    missing = [name for name in TABLES if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir}: missing {', '.join(missing)} "
                                f"(a Kaldi data dir needs {', '.join(TABLES)})")
    wav_scp, text, utt2spk = (read_table(data_dir / name) for name in TABLES)
    extra = {name: read_table(data_dir / name) for name in EXTRA_UTT_TABLES if (data_dir / name).is_file()}
    return DataDir(wav_scp, text, utt2spk, extra)


def write_data_dir(data_dir: Path, data: DataDir) -> None:
    """Writes every table sorted plus ``spk2utt``; the caller is responsible for the keys agreeing."""
    data_dir = Path(data_dir)
    write_table(data_dir / "wav.scp", data.wav_scp)
    write_table(data_dir / "text", data.text)
    write_table(data_dir / "utt2spk", data.utt2spk)
    write_table(data_dir / "spk2utt", spk2utt(data.utt2spk))
    for name, table in data.extra.items():
        write_table(data_dir / name, table)


def sort_inconsistent(utt2spk: Mapping[str, str]) -> str | None:
    """First utterance that breaks Kaldi's sort-consistency (utterance order must group speakers), else None."""
    seen: set[str] = set()
    previous = None
    for utt in sorted(utt2spk):
        spk = utt2spk[utt]
        if spk != previous and spk in seen:
            return utt
        seen.add(spk)
        previous = spk
    return None


# ---------------------------------------------------------------- audio


def wav_truncation(path: Path) -> str | None:
    """For RIFF/WAVE files: the header's data size against the bytes present, since libsndfile silently reads a
    truncated file as a shorter one. Streaming headers (size 0 or 0xFFFFFFFF) cannot be checked and pass."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF) or chunk_size >= 0x7FFFF000:
                    return None
                present = size - f.tell()
                if present < chunk_size:
                    return f"header declares {chunk_size} data bytes, file holds {present}"
                return None
            f.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)


@dataclass(frozen=True)
class AudioCheck:
    """``reason`` is a short code (see ``validate_and_filter``) or None when the audio is usable."""

    num_samples: int = 0
    sample_rate: int = 0
    reason: str | None = None
    detail: str = ""

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0


def check_audio(location: str, fs: int | None) -> AudioCheck:
    """Decode the whole file (header-only checks miss corrupt data) and check it is mono, at ``fs``, non-silent."""
    if location.rstrip().endswith("|"):
        return AudioCheck(reason="pipe_not_supported",
                          detail="wav.scp pipes are not supported: decode to a wav file and list its path")
    if not location.strip():
        return AudioCheck(reason="missing_audio", detail="no path in wav.scp")
    path = Path(location)
    if not path.is_file():
        return AudioCheck(reason="missing_audio", detail=f"no such file: {path}")
    truncated = wav_truncation(path)
    if truncated:
        return AudioCheck(reason="truncated_audio", detail=f"{path}: {truncated}")
    try:
        audio, sample_rate = soundfile.read(path, dtype="int16", always_2d=True)
    except Exception as error:  # libsndfile raises several types; all mean "not decodable"
        return AudioCheck(reason="unreadable_audio", detail=f"{path}: {error}")
    num_samples, channels = audio.shape
    if channels != 1:
        return AudioCheck(num_samples, sample_rate, "not_mono", f"{path}: {channels} channels")
    if fs is not None and sample_rate != fs:
        return AudioCheck(num_samples, sample_rate, "wrong_sample_rate", f"{path}: {sample_rate} Hz, expected {fs}")
    if num_samples == 0:
        return AudioCheck(num_samples, sample_rate, "empty_audio", f"{path}: 0 samples")
    if not np.any(audio):
        return AudioCheck(num_samples, sample_rate, "silent_audio", f"{path}: every sample is zero")
    return AudioCheck(num_samples, sample_rate)


# ---------------------------------------------------------------- checking and filtering


def check_data_dir(data_dir: Path, fs: int | None = None, audio: bool = True) -> list[str]:
    """Every problem found, as readable lines naming the file or utterance; an empty list means valid."""
    data_dir = Path(data_dir)
    try:
        data = read_data_dir(data_dir)
    except (FileNotFoundError, ValueError) as error:
        return [str(error)]
    problems: list[str] = []
    for name in (*TABLES, "spk2utt"):
        path = data_dir / name
        if path.is_file():
            keys = [line.split(None, 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if keys != sorted(keys):
                problems.append(f"{path}: not sorted by key (LC_ALL=C sort)")
    if (data_dir / "spk2utt").is_file() and read_table(data_dir / "spk2utt") != spk2utt(data.utt2spk):
        problems.append(f"{data_dir / 'spk2utt'}: does not match utt2spk (regenerate it from utt2spk)")
    keys = {name: set(table) for name, table in zip(TABLES, (data.wav_scp, data.text, data.utt2spk))}
    everything = set().union(*keys.values())
    for name, present in keys.items():
        for utt in sorted(everything - present)[:10]:
            problems.append(f"{utt}: missing from {data_dir / name}")
    breaker = sort_inconsistent(data.utt2spk)
    if breaker:
        problems.append(f"{breaker}: utt2spk is not sort-consistent (prefix utterance ids with their speaker id)")
    problems += [f"{utt}: empty transcript in {data_dir / 'text'}" for utt, words in sorted(data.text.items())
                 if not words]
    if audio:
        for utt in tqdm(sorted(data.wav_scp), desc=f"check {data_dir.name}", unit="utt", leave=False):
            result = check_audio(data.wav_scp[utt], fs)
            if result.reason:
                problems.append(f"{utt}: {result.reason}: {result.detail}")
    return problems


@dataclass
class FilterReport:
    src: Path
    dst: Path
    kept: int
    kept_seconds: float
    dropped: dict[str, tuple[str, str]]  # utt -> (reason code, detail)

    def reason_counts(self) -> Counter:
        return Counter(reason for reason, _ in self.dropped.values())

    def summary(self, max_listed: int = 20) -> str:
        lines = [f"{self.src} -> {self.dst}: kept {self.kept} utterances ({self.kept_seconds / 3600:.2f} h), "
                 f"dropped {len(self.dropped)}"]
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.reason_counts().items())]
        for utt in sorted(self.dropped)[:max_listed]:
            reason, detail = self.dropped[utt]
            lines.append(f"  dropped {utt}: {reason} ({detail})")
        if len(self.dropped) > max_listed:
            lines.append(f"  ... {len(self.dropped) - max_listed} more in {self.dst / 'dropped.tsv'}")
        return "\n".join(lines)


def _table_problems(src_dir: Path) -> tuple[DataDir, dict[str, tuple[str, str]]]:
    """Lenient read: duplicate ids and ids missing from a table become per-utterance drop reasons."""
    tables: list[dict[str, str]] = []
    dropped: dict[str, tuple[str, str]] = {}
    for name in TABLES:
        path = src_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{src_dir}: missing {name} (a Kaldi data dir needs {', '.join(TABLES)})")
        rows, duplicates = parse_table(path)
        for utt in duplicates:
            dropped.setdefault(utt, ("duplicate_id", f"{utt} appears more than once in {path}"))
        tables.append(rows)
    everything = set().union(*tables)
    for name, rows in zip(TABLES, tables):
        for utt in everything - set(rows):
            dropped.setdefault(utt, (f"not_in_{name}", f"listed elsewhere but missing from {src_dir / name}"))
    extra = {name: parse_table(src_dir / name)[0] for name in EXTRA_UTT_TABLES if (src_dir / name).is_file()}
    return DataDir(*tables, extra=extra), dropped


def validate_and_filter(src_dir: Path, dst_dir: Path, min_sec: float = 0.3, max_sec: float = 20.0,
                        fs: int | None = 16000) -> FilterReport:
    """Copy the usable utterances of ``src_dir`` to ``dst_dir`` (plus ``utt2dur``, ``utt2num_samples``), and write
    ``dst_dir/dropped.tsv`` (utterance id, reason code, detail) and ``dst_dir/filter_summary.txt``.

    Reason codes: duplicate_id, not_in_wav.scp / not_in_text / not_in_utt2spk, empty_text, pipe_not_supported,
    missing_audio, truncated_audio, unreadable_audio, not_mono, wrong_sample_rate, empty_audio, silent_audio,
    too_short, too_long.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if (src_dir / "segments").exists():
        raise ValueError(f"{src_dir / 'segments'}: segments are not supported; cut the recordings into one file "
                         "per utterance (e.g. sox in.wav out.wav trim START =END) and list those in wav.scp")
    if src_dir.resolve() == dst_dir.resolve():
        raise ValueError(f"--src and --dst are the same directory ({src_dir}); filter into a new one")
    data, dropped = _table_problems(src_dir)
    breaker = sort_inconsistent(data.utt2spk)
    if breaker:
        raise ValueError(f"{src_dir / 'utt2spk'}: {breaker} breaks sort-consistency; prefix every utterance id "
                         "with its speaker id so that sorting by utterance groups speakers")
    durations: dict[str, float] = {}
    samples: dict[str, int] = {}
    candidates = sorted(set(data.wav_scp) - set(dropped))
    for utt in tqdm(candidates, desc=f"validate {src_dir.name}", unit="utt"):
        if not normalize_text(data.text.get(utt, "")):  # punctuation or tags only: no word to score it on
            dropped[utt] = ("empty_text", f"no words in {src_dir / 'text'} after normalisation "
                                          f"({data.text.get(utt, '')!r})")
            continue
        result = check_audio(data.wav_scp[utt], fs)
        if result.reason is None and result.seconds < min_sec:
            result = AudioCheck(result.num_samples, result.sample_rate, "too_short",
                                f"{result.seconds:.3f} s < {min_sec} s")
        elif result.reason is None and result.seconds > max_sec:
            result = AudioCheck(result.num_samples, result.sample_rate, "too_long",
                                f"{result.seconds:.3f} s > {max_sec} s")
        if result.reason:
            dropped[utt] = (result.reason, result.detail)
        else:
            durations[utt], samples[utt] = result.seconds, result.num_samples
    kept = data.subset(durations)
    kept.extra["utt2dur"] = {utt: f"{sec:.4f}" for utt, sec in durations.items()}
    kept.extra["utt2num_samples"] = {utt: str(n) for utt, n in samples.items()}
    for stale in set(EXTRA_UTT_TABLES) - set(kept.extra):  # left by an earlier run over a different source
        (dst_dir / stale).unlink(missing_ok=True)
    write_data_dir(dst_dir, kept)
    atomic_write_text(dst_dir / "dropped.tsv", "".join(f"{utt}\t{reason}\t{detail}\n"
                                                       for utt, (reason, detail) in sorted(dropped.items())))
    report = FilterReport(src_dir, dst_dir, len(durations), sum(durations.values()), dropped)
    atomic_write_text(dst_dir / "filter_summary.txt", report.summary(max_listed=len(dropped)) + "\n")
    return report
