"""Corpus audio as ``wav.scp`` entries: listed as it is when usable, else decoded with sox (and sph2pipe) to wav.

:func:`materialise` decides per utterance whether the source file can be listed as it is (``convert="auto"``: a
16-bit PCM WAV or FLAC file, mono, at ``fs``, and not a segment of a longer recording) or must be decoded with sox
to ``<wav_dir>/<utt>.wav`` (16 kHz mono 16-bit; SPHERE, MP3, other rates, segments of conversations). It converts
in parallel (``nj`` sox processes), keeping wavs left by an earlier run (each is written to a temporary name and
renamed, so a killed run never leaves a half-written file under the final name).

``wav.scp`` lists plain paths (``kaldi_data`` refuses ``sox ... |`` pipes): original corpus files by absolute
path, converted files under ``wav_dir`` as given (relative to the recipe directory when ``--out`` is relative).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import soundfile

from espnet_peft.recipe.corpora.records import CorpusError, Drops, Utterance

log = logging.getLogger("espnet_peft.corpora")

FS = 16000
SOX_HINT = "apt-get install sox (and libsox-fmt-mp3 for Common Voice .mp3)"


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
