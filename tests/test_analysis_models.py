"""Model access, logit lens and layer contribution on tiny, randomly initialised ESPnet and Hugging Face models."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from espnet_peft.analysis.contribution import layer_contribution
from espnet_peft.analysis.lens import ctc_greedy, logit_lens
from espnet_peft.analysis.model_access import EspnetEncoderAccess, HFAccess

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
NUM_BLOCKS = 2

#: per encoder type, the tiny encoder_conf beyond the shared sizes
ENCODERS: dict[str, list[str]] = {
    "e_branchformer": [
        "cgmlp_linear_units=64",
        "cgmlp_conv_kernel=7",
        "merge_conv_kernel=7",
    ],
    "conformer": ["macaron_style=True", "use_cnn_module=True", "cnn_module_kernel=7"],
    "transformer": [],
}


def _conf(flag: str, items: list[str]) -> list[str]:
    return [arg for item in items for arg in (flag, item)]


def _build_asr_model(encoder: str) -> torch.nn.Module:
    from espnet2.tasks.asr import ASRTask

    argv = [
        "--token_list",
        "unused",  # replaced by the list below: the parser only takes a path here
        "--encoder",
        encoder,
        "--decoder",
        "transformer",
        "--frontend",
        "default",
        "--normalize",
        "utterance_mvn",
        *_conf(
            "--encoder_conf",
            [
                "output_size=32",
                "attention_heads=2",
                "linear_units=64",
                f"num_blocks={NUM_BLOCKS}",
                *ENCODERS[encoder],
            ],
        ),
        *_conf(
            "--decoder_conf", ["num_blocks=1", "linear_units=32", "attention_heads=2"]
        ),
        *_conf("--frontend_conf", ["n_fft=512", "hop_length=160", "n_mels=20"]),
    ]
    args = ASRTask.get_parser().parse_args(argv)
    args.token_list = list(TOKENS)
    torch.manual_seed(0)
    return ASRTask.build_model(args).eval()


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def asr_model(request: Any) -> torch.nn.Module:
    return _build_asr_model(request.param)


@pytest.fixture()
def audio() -> tuple:
    torch.manual_seed(1)
    lengths = torch.tensor([16000, 11000])  # 1 s and 0.69 s at 16 kHz: padded batch
    speech = torch.randn(2, 16000) * 0.1
    speech[1, 11000:] = 0.0
    return speech, lengths


def test_espnet_capture_shapes_and_last_block(
    asr_model: torch.nn.Module, audio: tuple
) -> None:
    access = EspnetEncoderAccess.for_asr_model(asr_model)
    cap = access.capture(*audio, with_inputs=True)
    out, olens = cap.output

    assert access.layers() == [f"encoders.{i}" for i in range(NUM_BLOCKS)]
    assert len(cap.hidden_states) == len(cap.layer_inputs) == NUM_BLOCKS
    for h in cap.hidden_states + cap.layer_inputs:
        assert h.shape == out.shape  # [B, T, D]
    assert cap.mask.shape == out.shape[:2]
    assert cap.mask.sum(dim=1).tolist() == olens.tolist()
    # blocks are chained: each block's input is the previous block's output
    torch.testing.assert_close(cap.layer_inputs[1], cap.hidden_states[0])
    # the encoder output is the last block's output through after_norm (when the encoder has one)
    norm = access.final_norm()
    last = norm(cap.hidden_states[-1]) if norm is not None else cap.hidden_states[-1]
    torch.testing.assert_close(last, out, atol=1e-6, rtol=1e-5)


def test_capture_removes_hooks_also_on_error(asr_model: torch.nn.Module) -> None:
    access = EspnetEncoderAccess.for_asr_model(asr_model)
    with pytest.raises(RuntimeError):
        access.capture(
            torch.randn(2, 3, 4, 5), torch.tensor([1, 1])
        )  # wrong rank: the frontend's STFT fails
    assert all(not block._forward_hooks for block in access.layer_modules())


def test_logit_lens_last_layer_is_model_ctc(
    asr_model: torch.nn.Module, audio: tuple
) -> None:
    lens = logit_lens(asr_model, *audio)
    with torch.no_grad():
        enc, enc_lens = asr_model.encode(*audio)
        own = asr_model.ctc.log_softmax(enc)

    assert len(lens.log_probs) == len(lens.hyps) == len(lens.kl) == NUM_BLOCKS
    torch.testing.assert_close(lens.log_probs[-1], own, atol=1e-5, rtol=1e-5)
    assert lens.lengths.tolist() == enc_lens.tolist()
    assert lens.hyps[-1] == ctc_greedy(own, enc_lens)
    assert lens.kl[-1] == pytest.approx(0.0, abs=1e-6)
    assert all(k >= -1e-6 for k in lens.kl)


def test_ctc_greedy_collapses_repeats_and_drops_blank() -> None:
    ids = torch.tensor([[2, 2, 0, 2, 3, 3, 0, 4]])
    log_probs = torch.nn.functional.one_hot(ids, 6).float().log()
    assert ctc_greedy(log_probs, torch.tensor([8])) == [[2, 2, 3, 4]]
    assert ctc_greedy(log_probs, torch.tensor([4])) == [
        [2, 2]
    ]  # frames past the length are ignored


def test_layer_contribution(
    asr_model: torch.nn.Module, audio: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = EspnetEncoderAccess.for_asr_model(asr_model)
    contrib = layer_contribution(access.capture(*audio, with_inputs=True))
    assert len(contrib.update_ratio) == len(contrib.cosine) == NUM_BLOCKS
    assert all(r >= 0 and torch.isfinite(torch.tensor(r)) for r in contrib.update_ratio)
    assert all(-1 - 1e-9 <= c <= 1 + 1e-9 for c in contrib.cosine)

    # an identity block (output = input) makes no update
    block = access.layer_modules()[0]
    monkeypatch.setattr(block, "forward", lambda x, mask, *args, **kwargs: (x, mask))
    contrib = layer_contribution(access.capture(*audio, with_inputs=True))
    assert contrib.update_ratio[0] == pytest.approx(0.0, abs=1e-12)
    assert contrib.update_ratio[1] > 0


def test_layer_contribution_needs_inputs(
    asr_model: torch.nn.Module, audio: tuple
) -> None:
    with pytest.raises(ValueError, match="with_inputs"):
        layer_contribution(EspnetEncoderAccess.for_asr_model(asr_model).capture(*audio))


# --- Hugging Face ---------------------------------------------------------------------------------------------

_W2V_SMALL: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": NUM_BLOCKS,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 8,
    "conv_dim": (16, 16),
    "conv_stride": (5, 2),
    "conv_kernel": (10, 3),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


def _hf_case(name: str) -> tuple:
    """(model, inputs, whether the encoder applies a norm after its last layer)."""
    import transformers as tf

    torch.manual_seed(0)
    if name == "whisper":
        config = tf.WhisperConfig(
            d_model=32,
            encoder_layers=NUM_BLOCKS,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_mel_bins=16,
            max_source_positions=50,
            max_target_positions=20,
            vocab_size=60,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
        return (
            tf.WhisperModel(config),
            {"input_features": torch.randn(2, 16, 100)},
            True,
        )
    audio = {"input_values": torch.randn(2, 4000)}
    if name == "wav2vec2_ctc":
        return tf.Wav2Vec2ForCTC(tf.Wav2Vec2Config(**_W2V_SMALL)), audio, False
    if (
        name == "wav2vec2_stable_ctc"
    ):  # pre-norm ("large") layout: a final encoder layer norm
        config = tf.Wav2Vec2Config(
            **_W2V_SMALL, do_stable_layer_norm=True, feat_extract_norm="layer"
        )
        return tf.Wav2Vec2ForCTC(config), audio, True
    if name == "wav2vec2":
        return tf.Wav2Vec2Model(tf.Wav2Vec2Config(**_W2V_SMALL)), audio, False
    if name == "hubert_ctc":
        return tf.HubertForCTC(tf.HubertConfig(**_W2V_SMALL)), audio, False
    raise ValueError(name)


@pytest.mark.parametrize(
    "name", ["whisper", "wav2vec2", "wav2vec2_ctc", "wav2vec2_stable_ctc", "hubert_ctc"]
)
def test_hf_capture_matches_hidden_states(name: str, tmp_path: Any) -> None:
    model, inputs, final_norm = _hf_case(name)
    model.save_pretrained(tmp_path)
    access = HFAccess.from_pretrained(str(tmp_path), type(model))

    cap = access.capture(**inputs, output_hidden_states=True)
    hidden = cap.output.hidden_states  # (embeddings, layer 1, ..., layer L)
    assert (
        len(access.layers()) == len(cap.hidden_states) == NUM_BLOCKS == len(hidden) - 1
    )
    # every layer but the last: exactly HF's hidden state
    for ours, theirs in zip(cap.hidden_states[:-1], hidden[1:-1]):
        torch.testing.assert_close(ours, theirs)
    # the last layer: HF's last_hidden_state is it after the final encoder norm, where there is one (Whisper and
    # the stable-layer-norm layout); whether hidden_states[-1] includes that norm differs between models.
    norm = access.final_norm()
    assert (norm is not None) == final_norm
    last = norm(cap.hidden_states[-1]) if norm is not None else cap.hidden_states[-1]
    last_hidden_state = cap.output.last_hidden_state if name == "whisper" else None
    if (
        last_hidden_state is None
    ):  # *ForCTC outputs carry no last_hidden_state: read it from the encoder itself
        with torch.no_grad():
            last_hidden_state = access.model.base_model(**inputs).last_hidden_state
    torch.testing.assert_close(last, last_hidden_state)
    assert any(torch.allclose(h, hidden[-1]) for h in (cap.hidden_states[-1], last))
