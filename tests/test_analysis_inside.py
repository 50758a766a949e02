"""Layer ablation, per-layer lens CER, Whisper classification lens, branch contribution and adapter SVD energy, on tiny
randomly initialised models with known answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from helpers.adapter_models import METHOD_FIELDS, TARGETS, build_model, perturb_adapters
from espnet_peft.analysis._cer import char_edits, corpus_cer, token_cer
from espnet_peft.analysis.ablation import erase_blocks, layer_ablation
from espnet_peft.analysis.branches import block_branches, branch_contribution, branch_updates
from espnet_peft.analysis.energy import (
    adapter_energy, compare_energy, cumulative_energy, k_at, untrained_adapters,
)
from espnet_peft.analysis.lens import classification_lens, ctc_greedy, logit_lens
from espnet_peft.analysis.model_access import EspnetEncoderAccess
from espnet_peft.compat import ebf_masks_padding_before_merge
from espnet_peft.injection import adapter_layers, initialise_adapters, inject_adapters
from espnet_peft.tuners import METHODS

torch.set_num_threads(1)

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<space>", "<sos/eos>"]
NUM_BLOCKS = 3
N_MELS = 20
ENCODERS = ("e_branchformer", "conformer", "transformer")


def decode(ids: list[int]) -> str:
    return "".join(" " if TOKENS[i] == "<space>" else TOKENS[i] for i in ids)


def _encoder(kind: str) -> nn.Module:
    common: dict[str, Any] = {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": NUM_BLOCKS}
    if kind == "e_branchformer":  # rel-pos blocks: ((x, pos_emb), mask)
        from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder

        return EBranchformerEncoder(N_MELS, **common, cgmlp_linear_units=64, cgmlp_conv_kernel=7,
                                    merge_conv_kernel=7, use_ffn=True, macaron_ffn=True)
    if kind == "conformer":
        from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

        return ConformerEncoder(N_MELS, **common, macaron_style=True, use_cnn_module=True, cnn_module_kernel=7,
                                rel_pos_type="latest")
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder  # abs-pos blocks: (x, mask)

    return TransformerEncoder(N_MELS, **common)


def _asr_model(kind: str) -> nn.Module:
    """A CTC-only ESPnetASRModel (raw audio -> STFT/mel frontend -> utterance MVN -> encoder -> CTC)."""
    from espnet2.asr.ctc import CTC
    from espnet2.asr.espnet_model import ESPnetASRModel
    from espnet2.asr.frontend.default import DefaultFrontend
    from espnet2.layers.utterance_mvn import UtteranceMVN

    torch.manual_seed(0)
    model = ESPnetASRModel(
        vocab_size=len(TOKENS), token_list=list(TOKENS),
        frontend=DefaultFrontend(n_fft=512, hop_length=160, n_mels=N_MELS), specaug=None, normalize=UtteranceMVN(),
        preencoder=None, encoder=_encoder(kind), postencoder=None, decoder=None, ctc=CTC(len(TOKENS), 32),
        joint_network=None, ctc_weight=1.0,
    )
    return model.eval()


@pytest.fixture(scope="module", params=ENCODERS)
def asr_model(request: Any) -> nn.Module:
    return _asr_model(request.param)


@pytest.fixture()
def batch() -> dict[str, Any]:
    """Three padded utterances with CTC targets (padded with -1) and their reference texts."""
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([16000, 12000, 9000])
    speech = torch.randn(3, 16000, generator=generator) * 0.1
    for b, n in enumerate(lengths.tolist()):
        speech[b, n:] = 0.0
    targets = [[2, 3, 5, 4], [4, 4, 2], [3, 2]]
    text = torch.full((3, 4), -1, dtype=torch.long)
    for b, ids in enumerate(targets):
        text[b, : len(ids)] = torch.tensor(ids)
    return {
        "speech": speech, "speech_lengths": lengths, "text": text,
        "text_lengths": torch.tensor([len(t) for t in targets]), "refs": [decode(t) for t in targets],
    }


# ----- CER ------------------------------------------------------------------------------------------------------


def test_cer_excludes_spaces_and_sums_over_utterances() -> None:
    assert char_edits("ab c", "abc") == (0, 3)
    assert char_edits("xbc", "a b c") == (1, 3)
    # (1 substitution + 2 deletions) / (3 + 2) reference characters, not the mean of per-utterance CERs
    assert corpus_cer(["abd", ""], ["abc", "de"]) == pytest.approx(3 / 5)
    assert token_cer([[2, 5, 3]], decode, ["ab"]) == 0.0
    with pytest.raises(ValueError, match="no characters"):
        corpus_cer(["a"], [" "])


# ----- layer ablation -------------------------------------------------------------------------------------------


def _encoder_out(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.encode(batch["speech"], batch["speech_lengths"])


def _ctc_loss_and_cer(model: nn.Module, out: torch.Tensor, lengths: torch.Tensor, batch: dict[str, Any]) -> tuple:
    with torch.no_grad():
        loss = float(model.ctc(out, lengths, batch["text"], batch["text_lengths"]))
        hyps = ctc_greedy(model.ctc.log_softmax(out), lengths, model.blank_id)
    return loss, corpus_cer([decode(h) for h in hyps], batch["refs"])


def test_erasing_every_block_leaves_the_frontend_output(asr_model: nn.Module, batch: dict[str, Any]) -> None:
    access = EspnetEncoderAccess.for_asr_model(asr_model)
    frontend_out = access.capture(batch["speech"], batch["speech_lengths"], with_inputs=True).layer_inputs[0]
    with erase_blocks(access.layer_modules()):
        erased, lengths = _encoder_out(asr_model, batch)
    torch.testing.assert_close(erased, asr_model.encoder.after_norm(frontend_out))
    assert all(not block._forward_hooks for block in access.layer_modules())


def test_ablation_baseline_single_and_cumulative(asr_model: nn.Module, batch: dict[str, Any]) -> None:
    args = [batch[k] for k in ("speech", "speech_lengths", "text", "text_lengths")]
    single = layer_ablation(asr_model, *args, decode=decode, refs=batch["refs"], mode="single")
    cumulative = layer_ablation(asr_model, *args, decode=decode, refs=batch["refs"], mode="cumulative")

    # baseline = the model's own CTC loss (its forward with ctc_weight=1) and the CER of its greedy CTC output
    with torch.no_grad():
        _, stats, _ = asr_model(*args)
    out, lengths = _encoder_out(asr_model, batch)
    assert single.baseline_ctc_loss == pytest.approx(float(stats["loss_ctc"]), rel=1e-5)
    assert single.baseline_cer == pytest.approx(_ctc_loss_and_cer(asr_model, out, lengths, batch)[1])

    # erasing block 0 alone is the first cumulative step; erasing all blocks leaves after_norm(frontend output)
    assert cumulative.ctc_loss[0] == pytest.approx(single.ctc_loss[0])
    assert cumulative.cer[0] == pytest.approx(single.cer[0])
    access = EspnetEncoderAccess.for_asr_model(asr_model)
    frontend_out = access.capture(batch["speech"], batch["speech_lengths"], with_inputs=True).layer_inputs[0]
    loss, cer = _ctc_loss_and_cer(asr_model, asr_model.encoder.after_norm(frontend_out), lengths, batch)
    assert cumulative.ctc_loss[-1] == pytest.approx(loss, rel=1e-5)
    assert cumulative.cer[-1] == pytest.approx(cer)
    # random blocks do change the output: erasing one moves the loss
    assert all(abs(x - single.baseline_ctc_loss) > 1e-6 for x in single.ctc_loss)

    assert single.layers == [f"encoders.{i}" for i in range(NUM_BLOCKS)]
    assert len(single.ctc_loss) == len(single.cer) == NUM_BLOCKS
    assert json.loads(json.dumps(cumulative.to_dict()))["mode"] == "cumulative"
    assert all(not block._forward_hooks for block in access.layer_modules())


def test_ablating_an_identity_block_changes_nothing(
    asr_model: nn.Module, batch: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    block = asr_model.encoder.encoders[1]
    monkeypatch.setattr(block, "forward", lambda x, mask, *args, **kwargs: (x, mask))
    args = [batch[k] for k in ("speech", "speech_lengths", "text", "text_lengths")]
    result = layer_ablation(asr_model, *args, decode=decode, refs=batch["refs"])
    assert result.ctc_loss[1] == result.baseline_ctc_loss
    assert result.cer[1] == result.baseline_cer


def test_ablation_batch_split_and_errors(batch: dict[str, Any]) -> None:
    model = _asr_model("transformer")
    equal = {**batch, "speech_lengths": torch.tensor([16000] * 3)}  # no padding: splitting cannot change outputs
    args = [equal[k] for k in ("speech", "speech_lengths", "text", "text_lengths")]
    whole = layer_ablation(model, *args, decode=decode, refs=batch["refs"])
    split = layer_ablation(model, *args, decode=decode, refs=batch["refs"], batch_size=2)
    assert split.ctc_loss == pytest.approx(whole.ctc_loss, rel=1e-5)
    assert split.baseline_ctc_loss == pytest.approx(whole.baseline_ctc_loss, rel=1e-5)
    assert split.cer == whole.cer

    def failing_decode(ids: list[int]) -> str:
        raise RuntimeError("decoder broke")

    with pytest.raises(RuntimeError, match="decoder broke"):
        layer_ablation(model, *args, decode=failing_decode, refs=batch["refs"])
    assert all(not block._forward_hooks for block in model.encoder.encoders)
    with pytest.raises(ValueError, match="mode"):
        layer_ablation(model, *args, decode=decode, refs=batch["refs"], mode="reverse")
    with pytest.raises(ValueError, match="eval"):
        layer_ablation(model.train(), *args, decode=decode, refs=batch["refs"])


# ----- logit lens -----------------------------------------------------------------------------------------------


def test_lens_cer_on_last_layer_is_the_models_greedy_ctc_cer(asr_model: nn.Module, batch: dict[str, Any]) -> None:
    lens = logit_lens(asr_model, batch["speech"], batch["speech_lengths"], decode=decode, refs=batch["refs"])
    out, lengths = _encoder_out(asr_model, batch)
    own = ctc_greedy(asr_model.ctc.log_softmax(out), lengths)
    assert lens.cer[-1] == corpus_cer([decode(h) for h in own], batch["refs"])
    assert lens.cer == [corpus_cer([decode(h) for h in hyps], batch["refs"]) for hyps in lens.hyps]
    summary = json.loads(json.dumps(lens.to_dict()))
    assert set(summary) == {"layers", "kl", "cer"} and len(summary["cer"]) == NUM_BLOCKS
    assert logit_lens(asr_model, batch["speech"], batch["speech_lengths"]).to_dict()["cer"] is None
    with pytest.raises(ValueError, match="both"):
        logit_lens(asr_model, batch["speech"], batch["speech_lengths"], decode=decode)


def _whisper_classifier(tmp_path: Any, weighted: bool) -> nn.Module:
    """A tiny random WhisperForAudioClassification, saved and loaded back with ``from_pretrained(path)``."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.WhisperConfig(
        d_model=16, encoder_layers=NUM_BLOCKS, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=8, max_source_positions=10, max_target_positions=10,
        vocab_size=40, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        classifier_proj_size=8, num_labels=3, use_weighted_layer_sum=weighted,
        init_std=0.5,  # the default 0.02 leaves every layer's prediction near uniform
    )
    tf.WhisperForAudioClassification(config).save_pretrained(tmp_path)
    return tf.WhisperForAudioClassification.from_pretrained(tmp_path).eval()


def _mels() -> torch.Tensor:
    return torch.randn(4, 8, 20, generator=torch.Generator().manual_seed(2))  # 20 = 2 * max_source_positions


def test_classification_lens_last_layer_is_the_models_logits(tmp_path: Any) -> None:
    model = _whisper_classifier(tmp_path, weighted=False)
    features = _mels()
    with torch.no_grad():
        logits = model(features).logits
    labels = logits.argmax(dim=-1)
    lens = classification_lens(model, features, labels=labels)

    assert lens.layers == [f"encoder.layers.{i}" for i in range(NUM_BLOCKS)]
    torch.testing.assert_close(lens.log_probs[-1], logits.log_softmax(dim=-1), atol=1e-5, rtol=1e-5)
    assert lens.kl[-1] == pytest.approx(0.0, abs=1e-6)
    assert all(k >= -1e-6 for k in lens.kl) and max(lens.kl) > 1e-6
    assert lens.accuracy[-1] == 1.0
    summary = json.loads(json.dumps(lens.to_dict()))
    assert summary["predictions"][-1] == labels.tolist() and summary["layer_weights"] is None


def test_classification_lens_with_weighted_layer_sum(tmp_path: Any) -> None:
    # all weight on one layer: the model's head then reads exactly that layer's state, as the lens does
    model = _whisper_classifier(tmp_path, weighted=True)
    features = _mels()
    for layer in (0, NUM_BLOCKS - 1):
        with torch.no_grad():
            model.layer_weights.fill_(-1e4)
            model.layer_weights[1 + layer] = 0.0  # entry 0 is the input embeddings
            logits = model(features).logits
        lens = classification_lens(model, features)
        torch.testing.assert_close(lens.log_probs[layer], logits.log_softmax(dim=-1), atol=1e-5, rtol=1e-5)
        assert lens.kl[layer] == pytest.approx(0.0, abs=1e-6)
        assert lens.layer_weights[1 + layer] == pytest.approx(1.0)
        assert lens.accuracy is None


# ----- branch contribution --------------------------------------------------------------------------------------

EXPECTED_BRANCHES = {
    "e_branchformer": ["feed_forward_macaron", "attn", "cgmlp", "merge", "feed_forward"],
    "conformer": ["feed_forward_macaron", "self_attn", "conv_module", "feed_forward"],
    "transformer": ["self_attn", "feed_forward"],
}


@pytest.mark.parametrize("kind", ENCODERS)
def test_branch_updates_rebuild_each_block(kind: str) -> None:
    torch.manual_seed(0)
    encoder = _encoder(kind).eval()
    access = EspnetEncoderAccess(encoder)
    feats = torch.randn(2, 40, N_MELS)
    lengths = torch.tensor([40, 28])
    result = branch_updates(access, feats, lengths)
    cap = result.capture

    for block, updates, h_in, h_out in zip(
        access.layer_modules(), result.updates, cap.layer_inputs, cap.hidden_states
    ):
        branches = block_branches(block)
        assert [b.name for b in branches] == list(updates) == EXPECTED_BRANCHES[kind]
        with torch.no_grad():
            # the residual branches, scaled as the block scales them, add up to the block's update
            stream = h_in + sum(updates[b.name] for b in branches if b.residual)
            final = block.norm_final(stream) if hasattr(block, "norm_final") else stream
            torch.testing.assert_close(final, h_out, atol=1e-5, rtol=1e-5)
            if kind != "transformer":  # macaron: half of the FFN's output goes into the stream
                assert block.ff_scale == 0.5
                expected = 0.5 * block.feed_forward_macaron(block.norm_ff_macaron(h_in))
                torch.testing.assert_close(updates["feed_forward_macaron"], expected)
            if kind == "e_branchformer":  # merge = merge_proj(concat + depthwise conv of the concatenated branches)
                concat = torch.cat([updates["attn"], updates["cgmlp"]], dim=-1)
                conv_input = concat
                if ebf_masks_padding_before_merge():  # espnet 202609+: padded frames are zeroed first
                    conv_input = concat.masked_fill(~cap.mask.unsqueeze(-1), 0.0)
                fused = block.depthwise_conv_fusion(conv_input.transpose(1, 2)).transpose(1, 2)
                torch.testing.assert_close(updates["merge"], block.merge_proj(concat + fused), atol=1e-5, rtol=1e-5)

    contribution = branch_contribution(access, feats, lengths)
    assert list(contribution.branches) == EXPECTED_BRANCHES[kind]
    first = result.updates[0]["feed_forward"].double().norm(dim=-1) / cap.layer_inputs[0].double().norm(dim=-1)
    assert contribution.branches["feed_forward"][0] == pytest.approx(float(first[cap.mask].mean()))
    assert cap.mask.sum().item() < cap.mask.numel()  # padding frames were left out
    assert json.loads(json.dumps(contribution.to_dict()))["layers"] == access.layers()
    assert all(not b.module._forward_hooks for blk in access.layer_modules() for b in block_branches(blk))


# ----- adapter SVD energy ---------------------------------------------------------------------------------------


def _adapted(method: str, trained: bool = True, **fields: Any) -> nn.Module:
    model = build_model(trained_looking=True)
    inject_adapters(model, {"method": method, "target_modules": TARGETS, **METHOD_FIELDS[method], **fields})
    initialise_adapters(model)
    if trained:
        perturb_adapters(model)  # away from the identity initialisation, where the bottleneck gradient is zero
    return model


def _batches() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randn(2, 7, 16, generator=generator) for _ in range(2)]


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).square().mean()


def test_energy_profile_and_k90() -> None:
    z = torch.randn(50, 3, dtype=torch.float64) * torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64)
    energy = cumulative_energy(z.T @ z)
    s2 = torch.linalg.svdvals(z) ** 2
    assert energy == pytest.approx((s2.cumsum(0) / s2.sum()).tolist(), rel=1e-9)
    assert k_at([0.5, 0.9, 1.0]) == 2 and k_at([0.95, 1.0]) == 1 and k_at([0.0, 0.0]) == 0
    assert cumulative_energy(torch.zeros(2, 2)) == [0.0, 0.0]


@pytest.mark.parametrize("method", METHODS)
def test_adapter_energy_for_every_method(method: str) -> None:
    # SSVD on the `rebuild` path never forms V_k^T x: the probe must force the low-rank path, then restore it
    fields = {"compute_path": "rebuild"} if method in ("ssvd", "ssvd_o") else {}
    model = _adapted(method, **fields)
    layers = adapter_layers(model)
    stats = adapter_energy(model, _loss, _batches())

    assert set(stats) == set(layers)
    for name, layer in layers.items():
        s = stats[name]
        width = layer.k if method in ("ssvd", "ssvd_o") else layer.config.r
        assert s.rank == width == len(s.act_energy) == len(s.grad_energy)
        assert s.rows == 2 * 2 * 7
        assert 1 <= s.act_k90 <= width and 1 <= s.grad_k90 <= width
        assert s.act_energy[-1] == pytest.approx(1.0) and s.grad_energy[-1] == pytest.approx(1.0)
        assert not layer.bottleneck._forward_hooks and not layer.bottleneck._backward_hooks
        if method in ("ssvd", "ssvd_o"):
            assert layer.config.compute_path == "rebuild"
    assert all(p.grad is None for p in model.parameters())
    json.dumps({name: s.to_dict() for name, s in stats.items()})


@pytest.mark.parametrize("method", METHODS)
def test_untrained_adapters_restart_from_the_pretrained_weight_and_are_swapped_back(method: str) -> None:
    pristine = build_model(trained_looking=True)
    model = _adapted(method)
    layers = adapter_layers(model)
    x = _batches()[0]
    with torch.no_grad():
        before = model(x)
        assert not torch.allclose(before, pristine(x), atol=1e-5)  # trained: not the pretrained function
        with untrained_adapters(model) as fresh:  # identity at initialisation: the pretrained function again
            torch.testing.assert_close(fresh(x), pristine(x), rtol=1e-4, atol=1e-5)
            swapped = adapter_layers(fresh)
            assert set(swapped) == set(layers) and all(swapped[n] is not layers[n] for n in layers)
            assert all(type(swapped[n]) is type(layers[n]) for n in layers)
        assert all(adapter_layers(model)[n] is layers[n] for n in layers)  # the trained layers are back
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_compare_trained_with_fresh_adapters() -> None:
    trained = adapter_energy(_adapted("lora"), _loss, _batches())
    fresh = adapter_energy(_adapted("lora", trained=False), _loss, _batches())
    comparison = compare_energy(trained, fresh)
    assert set(comparison) == set(trained)
    for row in comparison.values():
        assert row["untrained_grad_k90"] == 0  # B = 0 at initialisation: no gradient reaches A x
        assert row["trained_grad_k90"] >= 1 and row["untrained_act_k90"] >= 1 and row["rank"] == 4
    json.dumps(comparison)


def test_adapter_energy_matches_a_direct_svd_and_finds_planted_ranks() -> None:
    model = _adapted("lora")
    name = "encoder.encoders.0.attn.linear_q"  # its input is the model input
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            # A of rank 2 puts every activation A x in a 2-dim subspace; B of rank 1 puts s B^T g in a 1-dim one
            a_rows = torch.randn(2, layer.in_features, generator=generator)
            layer.lora_A.copy_(torch.randn(4, 2, generator=generator) @ a_rows)
            b_cols = torch.randn(layer.out_features, 1, generator=generator)
            layer.lora_B.copy_(b_cols @ torch.randn(1, 4, generator=generator))
    batches = _batches()
    stats = adapter_energy(model, _loss, batches)
    for s in stats.values():
        assert s.act_k90 <= 2 and s.act_energy[1] == pytest.approx(1.0, abs=1e-9)
        assert s.grad_k90 == 1 and s.grad_energy[0] == pytest.approx(1.0, abs=1e-9)

    # the same numbers from the stacked matrices, read without the probe: Z = X A^T, dL/dZ = s (dL/dy) B
    layer = adapter_layers(model)[name]
    outputs: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, out: outputs.append(out))
    try:
        grads = [torch.autograd.grad(_loss(model, x), outputs[-1])[0] for x in batches]
    finally:
        handle.remove()
    z = torch.cat([x.reshape(-1, 16) for x in batches]).double() @ layer.lora_A.double().T
    g = layer.scaling * torch.cat([d.reshape(-1, d.shape[-1]) for d in grads]).double() @ layer.lora_B.double()
    for matrix, energy in ((z, stats[name].act_energy), (g, stats[name].grad_energy)):
        s2 = torch.linalg.svdvals(matrix) ** 2
        assert energy == pytest.approx((s2.cumsum(0) / s2.sum()).tolist(), abs=1e-6)  # the model runs in float32


def test_adapter_energy_cleans_up_after_an_error() -> None:
    model = _adapted("ssvd_o", compute_path="auto")

    def broken(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        model(x)
        raise RuntimeError("loss broke")

    with pytest.raises(RuntimeError, match="loss broke"):
        adapter_energy(model, broken, _batches())
    for layer in adapter_layers(model).values():
        assert not layer.bottleneck._forward_hooks
        assert layer.config.compute_path == "auto"
    assert all(p.grad is None for p in model.parameters())


def test_the_energy_takes_whole_batches_spread_over_the_data() -> None:
    from types import SimpleNamespace

    from espnet_peft.analysis.methods.energy import spread_batches

    batches = [SimpleNamespace(utts=list(range(8 * i, 8 * i + 8))) for i in range(13)]
    picked = spread_batches(batches, 32)
    assert len(picked) == 4 and picked[0] is batches[0] and picked[-1] is batches[-1]
    assert len({id(b) for b in picked}) == 4
    assert spread_batches(batches, 1000) == batches and spread_batches(batches, 1) == [batches[0]]
