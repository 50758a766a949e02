"""The analyses on ESPnet's Whisper ASR models (``encoder: whisper``, ``decoder: whisper``): the real tiny.en as the
recipe makes it (``whisper_source``), a few Piper utterances zero-padded to one window on disk (``utt2num_samples``
keeps their real lengths), and fine-tuned models B as adapter-only LoRA checkpoints over it."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
import torch

pytest.importorskip("whisper")
from espnet_peft.analysis.branches import branch_updates  # noqa: E402
from espnet_peft.analysis.decoder import decoder_targets, teacher_forced  # noqa: E402
from espnet_peft.analysis.families import load_model  # noqa: E402
from espnet_peft.analysis.loaded_model import LoadedModel  # noqa: E402
from espnet_peft.analysis.many_models import compare_models  # noqa: E402
from espnet_peft.analysis.resolve import resolve_model  # noqa: E402
from espnet_peft.analysis.runner import Settings, run_analysis  # noqa: E402
from espnet_peft.analysis.utterances import load_audio, read_utterances  # noqa: E402
from espnet_peft.bin import analyze  # noqa: E402
from espnet_peft.utils.kaldi_data import read_table  # noqa: E402
from helpers.whisper_fixtures import (  # noqa: E402,F401 (fixtures)
    PIPER_SENTENCES, adapter_checkpoint, padded_piper_set, piper_speech, source, tiny_en,
)

torch.set_num_threads(1)

WINDOW_SEC = 4.0
UTTS = 4
#: samples per encoder output frame: the mel hop (160) times conv2's stride (2)
SAMPLES_PER_FRAME = 160 * 2
ENCODER_LAYERS = [f"encoders.blocks.{i}" for i in range(4)]
DECODER_LAYERS = [f"decoder.decoders.blocks.{i}" for i in range(4)]
DEFAULT = "cka,lens,contribution,branches,energy,decoder_drift,decoder_contribution,decoder_branches"


@pytest.fixture(scope="module")
def padded_set(piper_speech: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return padded_piper_set(piper_speech, tmp_path_factory.mktemp("piper_set"), UTTS, WINDOW_SEC, written=True)


@pytest.fixture(scope="module")
def lora_everywhere(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return adapter_checkpoint(source, tmp_path_factory.mktemp("lora"), ["query", "value"])


@pytest.fixture(scope="module")
def models(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, LoadedModel]:
    """A (the source) and, as B, the source with LoRA on the decoder's first two self-attention queries only."""
    # the budget gives these two a high rank (a small LoRA scale): a larger move makes their change plain
    decoder_only = adapter_checkpoint(source, tmp_path_factory.mktemp("lora_decoder"),
                                      ["decoders.blocks.0.attn.query", "decoders.blocks.1.attn.query"], scale=0.5)
    return {"A": load_model("A", resolve_model("A", str(source))),
            "B": load_model("B", resolve_model("B", str(decoder_only)))}


def real_frames(data: Path) -> List[int]:
    """Encoder output frames that cover each utterance's real samples, in key order."""
    lengths = read_table(data / "utt2num_samples")
    return [math.ceil(int(lengths[utt]) / SAMPLES_PER_FRAME) for utt in sorted(lengths)]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = (m.double() - m.double().mean(dim=0) for m in (x, y))
    return float((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))


def encoder_layers(m: LoadedModel, data: Path) -> List[List[torch.Tensor]]:
    """Every encoder block's output per utterance ``[T, D]`` (all the window's frames), read by hooks of our own."""
    utts = read_utterances(str(data))
    speech = torch.stack([torch.from_numpy(load_audio(u, m.fs)) for u in utts])
    outputs: List[torch.Tensor] = []
    blocks = m.model.encoder.encoders.blocks
    handles = [b.register_forward_hook(lambda mod, args, out: outputs.append(out.detach())) for b in blocks]
    try:
        with torch.no_grad():
            m.model.encode(speech, torch.full((len(utts),), speech.shape[1]))
    finally:
        for handle in handles:
            handle.remove()
    return [[layer[b] for b in range(len(utts))] for layer in outputs]


def test_cli_compares_whisper_a_with_its_lora_b(source: Path, lora_everywhere: Path, padded_set: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "analysis"
    with caplog.at_level(logging.WARNING, logger="espnet_peft.analysis.runner"):
        analyze.main(["--model_a_config", str(source / "config.yaml"), "--model_a_file", str(source / "model.pth"),
                      "--model_b_config", str(lora_everywhere.parent / "config.yaml"), "--model_b_file",
                      str(lora_everywhere), "--data", str(padded_set), "--max_utts", "8", "--analyses", DEFAULT,
                      "--out", str(out), "--no_progress"])
    results = json.loads((out / "analysis.json").read_text())
    assert [m["layers"] for m in results["models"].values()] == [ENCODER_LAYERS, ENCODER_LAYERS]
    assert results["cka"]["frames"] == sum(real_frames(padded_set))  # the window's padding is left out
    assert len(results["cka"]["drift"]) == 4 and max(results["cka"]["drift"]) < 1 - 1e-4
    assert len(results["decoder_drift"]["drift"]) == 4 and max(results["decoder_drift"]["drift"]) < 1 - 1e-4
    for label in "AB":
        assert set(results["branches"][label]["branches"]) == {"self_attn", "feed_forward"}
        assert results["decoder_branches"][label]["layers"] == DECODER_LAYERS
        assert set(results["decoder_branches"][label]["branches"]) == {"self_attn", "src_attn", "feed_forward"}
        assert len(results["contribution"][label]["update_ratio"]) == 4
        assert len(results["decoder_contribution"][label]["update_ratio"]) == 4
    # the decoder loss reaches every adapter (encoder ones through the cross-attention): no all-zero gradient
    assert results["energy_loss"]["B"] == "training loss"
    assert len(results["energy"]["B"]) == 24 and min(s["grad_k90"] for s in results["energy"]["B"].values()) > 0
    # no CTC head: the lens is skipped, saying so, in analysis.json, summary.md and the log
    for label in "AB":
        assert "no CTC head" in results["skipped"]["lens"][label] and "Whisper" in results["skipped"]["lens"][label]
    assert "lens" not in results
    assert "- lens (A): the model has no CTC head" in (out / "summary.md").read_text()
    assert any("analysis lens skipped (model B)" in r.getMessage() for r in caplog.records)
    assert {"drift.png", "decoder_drift.png", "energy_B.png"} <= {p.name for p in out.iterdir()}


def test_a_vs_itself_is_unchanged_and_decoder_adapters_leave_the_encoder_alone(
        models: Dict[str, LoadedModel], padded_set: Path) -> None:
    utts = read_utterances(str(padded_set))
    settings = Settings(analyses=("cka", "decoder_drift"), progress=False)
    a = models["A"]
    itself = run_analysis([a, dataclasses.replace(a, label="B")], utts, settings)
    assert itself["cka"]["drift"] == pytest.approx([1.0] * 4, abs=1e-9)
    assert itself["decoder_drift"]["drift"] == pytest.approx([1.0] * 4, abs=1e-9)
    decoder_only = run_analysis([a, models["B"]], utts, settings)
    assert decoder_only["cka"]["drift"] == pytest.approx([1.0] * 4, abs=1e-9)
    assert max(decoder_only["decoder_drift"]["drift"]) < 1 - 1e-4
    # the same in the --models comparison, over the same real frames
    many = compare_models([a, models["B"]], utts, progress=False)
    assert many["frames"] == sum(real_frames(padded_set))
    assert [layer[0][1] for layer in many["per_layer"]] == pytest.approx([1.0] * 4, abs=1e-9)


@pytest.mark.parametrize("with_lengths", [True, False], ids=["utt2num_samples", "no_utt2num_samples"])
def test_only_real_frames_count(models: Dict[str, LoadedModel], padded_set: Path, tmp_path: Path,
                                with_lengths: bool) -> None:
    data = padded_set
    if not with_lengths:  # then every frame of the window is real
        data = tmp_path / "data"
        shutil.copytree(padded_set, data)
        (data / "utt2num_samples").unlink()
    window_frames = int(WINDOW_SEC * 16000) // SAMPLES_PER_FRAME
    counts = real_frames(padded_set) if with_lengths else [window_frames] * UTTS
    results = run_analysis([models["A"]], read_utterances(str(data)), Settings(analyses=("cka",), progress=False))
    assert results["cka"]["frames"] == sum(counts)
    layers = [torch.cat([h[:n] for h, n in zip(per_utt, counts)]) for per_utt in encoder_layers(models["A"], data)]
    by_hand = [[linear_cka(x, y) for y in layers] for x in layers]
    torch.testing.assert_close(torch.tensor(results["cka"]["intra"]["A"]), torch.tensor(by_hand), rtol=0, atol=1e-6)
    if with_lengths:  # and the padding would have made a difference
        padded = [torch.cat(per_utt) for per_utt in encoder_layers(models["A"], data)]
        assert abs(linear_cka(padded[0], padded[3]) - by_hand[0][3]) > 1e-3


def test_whisper_branch_updates_add_up_to_each_block_update(models: Dict[str, LoadedModel], padded_set: Path) -> None:
    m = models["A"]
    utts = read_utterances(str(padded_set))[:2]
    batch = m.batch(utts, [load_audio(u, m.fs) for u in utts])
    encoder = branch_updates(m.access, *batch.args)
    decoder = teacher_forced(m.model, encoder.capture.output, decoder_targets(batch))
    layouts = ((encoder, ["self_attn", "feed_forward"]), (decoder, ["self_attn", "src_attn", "feed_forward"]))
    for result, names in layouts:
        cap = result.capture
        for updates, h_in, h_out in zip(result.updates, cap.layer_inputs, cap.hidden_states):
            assert list(updates) == names
            torch.testing.assert_close(h_in + sum(updates.values()), h_out, rtol=1e-4, atol=1e-4)


def test_the_decoder_is_fed_sos_and_the_whisper_tokens_of_the_text(models: Dict[str, LoadedModel],
                                                                   padded_set: Path) -> None:
    m = models["A"]
    utts = read_utterances(str(padded_set))[:1]
    batch = m.batch(utts, [load_audio(u, m.fs) for u in utts])
    with torch.no_grad():
        encoded = m.model.encode(batch.speech, batch.lengths)
    tokens = teacher_forced(m.model, encoded, decoder_targets(batch)).capture.output.tokens[0].tolist()
    token_list: Sequence[str] = m.model.token_list
    assert tokens[0] == m.model.sos
    assert "".join(token_list[t] for t in tokens[1:]).endswith(f"{PIPER_SENTENCES[0].capitalize()}.")
