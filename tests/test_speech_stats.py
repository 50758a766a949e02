"""Global MVN statistics of unpadded speech (espnet_peft.recipe.speech_stats, stage 5 of the recipe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from espnet2.layers.global_mvn import GlobalMVN

from espnet_peft.bin import speech_stats as speech_stats_cli
from espnet_peft.recipe.speech_stats import build_frontend, speech_feature_stats

CONFIG = {"frontend": "default", "frontend_conf": {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 80}}


def _write_corpus(root: Path, n: int = 4) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    lines, waves = [], []
    for i in range(n):
        t = np.arange(int(16000 * (0.5 + 0.3 * i))) / 16000
        wave = (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        path = root / f"utt{i}.wav"
        soundfile.write(path, wave, 16000)  # 16-bit PCM: keep what the file holds, not the float original
        lines.append(f"utt{i} {path}")
        waves.append(soundfile.read(path, dtype="float32")[0])
    wav_scp = root / "wav.scp"
    wav_scp.write_text("\n".join(lines) + "\n")
    return wav_scp, waves


def test_stats_equal_a_direct_computation_and_normalise_the_speech(tmp_path: Path) -> None:
    wav_scp, waves = _write_corpus(tmp_path)
    frontend = build_frontend(CONFIG)
    stats = speech_feature_stats(wav_scp, frontend)
    with torch.no_grad():
        feats = torch.cat([frontend(torch.from_numpy(w)[None], torch.tensor([w.size]))[0][0] for w in waves]).double()
    assert int(stats["count"]) == feats.shape[0]
    np.testing.assert_allclose(stats["sum"], feats.sum(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats["sum_square"], (feats**2).sum(0).numpy(), rtol=1e-6)

    out = tmp_path / "exp" / "feats_stats.npz"
    speech_stats_cli.main(["--config", str(_yaml(tmp_path)), "--wav_scp", str(wav_scp), "--out", str(out)])
    normalised, _ = GlobalMVN(out)(feats.float()[None], torch.tensor([feats.shape[0]]))
    assert normalised[0].mean(0).abs().max() < 1e-3
    assert (normalised[0].std(0) - 1).abs().max() < 1e-2
    assert not list(out.parent.glob("*.tmp*")), "the atomic write leaves no temporary file"


def test_unreadable_audio_is_named_by_utterance(tmp_path: Path) -> None:
    wav_scp, _ = _write_corpus(tmp_path, n=2)
    (tmp_path / "utt1.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(SystemExit, match="utterance utt1: cannot read"):
        speech_stats_cli.main(["--config", str(_yaml(tmp_path)), "--wav_scp", str(wav_scp),
                               "--out", str(tmp_path / "s.npz")])


def _yaml(root: Path) -> Path:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path
