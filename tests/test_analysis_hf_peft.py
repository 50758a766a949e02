"""Hugging Face models with Hugging Face ``peft`` LoRA adapters in the analysis (``espnet_peft.analysis.hf_peft``).

Tiny random Whisper (``WhisperForConditionalGeneration``) and Wav2Vec2 (``Wav2Vec2ForCTC``, post-norm and
stable-layer-norm) bases, each with a LoRA adapter whose ``B`` is moved off zero so that the adapter changes the
output, saved with ``save_pretrained`` as a fine-tuning run leaves them (base dir, adapter dir, tokenizer). The
loader must run the model exactly as peft's own ``PeftModel`` does, and the analyses must run on it end to end.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn

from espnet_peft.analysis.branches import block_branches, branch_updates
from espnet_peft.analysis.energy import adapter_energy
from espnet_peft.analysis.errors import AnalysisInputError
from espnet_peft.analysis.families import load_model
from espnet_peft.analysis.hf_peft import lora_bottlenecks, lora_layers, untrained_lora
from espnet_peft.analysis.lens import hf_ctc_lens
from espnet_peft.analysis.methods import REGISTRY
from espnet_peft.analysis.resolve import resolve_model
from espnet_peft.bin.analyze import main as analyze
from test_analysis_models import _W2V_SMALL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from analysis_runtime import synthetic_data_dir  # noqa: E402  (the benchmark's builder)

WORDS = ["the cat runs", "a big dog", "one small tree"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
RANK = 4
#: Whisper's mel window: 1 s (100 frames, 50 after the encoder's stride) instead of 30 s
WHISPER_SECONDS = 1


@dataclasses.dataclass
class Adapted:
    """A saved base model dir, a peft LoRA adapter dir over it, its model class and an input for it."""

    name: str
    base: Path
    adapter: Path
    model_class: type
    inputs: dict[str, torch.Tensor]


def _whisper_tokenizer(out: Path) -> Any:
    """A byte-level BPE vocabulary of single letters and Whisper's special tokens (no merges)."""
    import transformers as tf

    special = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate([*special, *LETTERS, "Ġ"])}))
    (out / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    return tf.WhisperTokenizer(str(out / "vocab.json"), str(out / "merges.txt"), unk_token=end, bos_token=end,
                               eos_token=end, pad_token=end)


def _ctc_tokenizer(out: Path) -> Any:
    """Letters and the word delimiter ``|``; ``<pad>`` (id 0) is the CTC blank."""
    import transformers as tf

    out.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *LETTERS])}
    (out / "vocab.json").write_text(json.dumps(vocab))
    return tf.Wav2Vec2CTCTokenizer(str(out / "vocab.json"))


def _save_adapted(root: Path, base: nn.Module, extras: list[Any], targets: list[str], trained: list[str]) -> Path:
    """Save ``base`` (and its feature extractor / tokenizer) to ``root/base``, load it back as a user would (so that
    the adapter config names that dir), add LoRA on ``targets`` with a non-zero ``B`` (and ``trained``, modules
    trained in full, moved off the base) and save it to ``root/lora``."""
    import peft

    base.save_pretrained(root / "base")
    for extra in extras:
        extra.save_pretrained(root / "base")
    torch.manual_seed(1)
    config = peft.LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=targets, modules_to_save=trained or None)
    lora = peft.get_peft_model(type(base).from_pretrained(root / "base"), config)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:  # at the start B = 0 and the copies are the base's
                parameter.add_(torch.randn_like(parameter) * 0.3)
    lora.save_pretrained(root / "lora")
    return root / "lora"


def _whisper(root: Path) -> Adapted:
    import transformers as tf

    torch.manual_seed(0)
    config = tf.WhisperConfig(
        d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=50 * WHISPER_SECONDS,
        max_target_positions=64, vocab_size=40, pad_token_id=0, bos_token_id=0, eos_token_id=0,
        decoder_start_token_id=1)  # the tokenizer's <|startoftranscript|>
    extractor = tf.WhisperFeatureExtractor(feature_size=16, chunk_length=WHISPER_SECONDS)
    model = tf.WhisperForConditionalGeneration(config)
    adapter = _save_adapted(root, model, [extractor, _whisper_tokenizer(root / "tokenizer")],
                            ["q_proj", "v_proj", "fc1"], [])
    mels = torch.randn(1, 16, 100 * WHISPER_SECONDS, generator=torch.Generator().manual_seed(2))
    return Adapted("whisper", root / "base", adapter, tf.WhisperForConditionalGeneration, {"input_features": mels})


def _wav2vec2(root: Path, stable: bool = False, family: str = "Wav2Vec2") -> Adapted:
    """A ``<family>ForCTC`` (Wav2Vec2 or HuBERT: the same layer layouts), post-norm or stable-layer-norm."""
    import transformers as tf

    torch.manual_seed(0)
    layout = {"do_stable_layer_norm": True, "feat_extract_norm": "layer"} if stable else {}
    sizes = {**_W2V_SMALL, "vocab_size": 32, "conv_stride": (10, 8), "conv_kernel": (10, 8)}
    config = getattr(tf, f"{family}Config")(**sizes, **layout)
    model_class = getattr(tf, f"{family}ForCTC")
    extractor = tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    # CTC fine-tuning trains the output layer in full, next to the LoRA layers
    adapter = _save_adapted(root, model_class(config), [extractor, _ctc_tokenizer(root / "tokenizer")],
                            ["q_proj", "v_proj", "intermediate_dense"], ["lm_head"])
    audio = torch.randn(1, 8000, generator=torch.Generator().manual_seed(2))
    name = f"{family.lower()}{'_stable' if stable else ''}_ctc"
    return Adapted(name, root / "base", adapter, model_class, {"input_values": audio})


CASES = {"whisper": _whisper, "wav2vec2_ctc": _wav2vec2,
         "wav2vec2_stable_ctc": lambda root: _wav2vec2(root, stable=True),
         "hubert_ctc": lambda root: _wav2vec2(root, family="Hubert")}


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Adapted]:
    """Each case built once per module, on first use (the tests only read the saved dirs)."""
    built: dict[str, Adapted] = {}

    def get(name: str) -> Adapted:
        if name not in built:
            built[name] = CASES[name](tmp_path_factory.mktemp(name))
        return built[name]

    return get


@pytest.fixture(params=list(CASES))
def adapted(request: pytest.FixtureRequest, build: Callable[[str], Adapted]) -> Adapted:
    return build(request.param)


def _peft_own(case: Adapted) -> nn.Module:
    """The adapted model as peft itself builds and runs it."""
    from peft import PeftModel

    return PeftModel.from_pretrained(case.model_class.from_pretrained(case.base), case.adapter).eval()


def _own_outputs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """A model's own forward: its encoder's hidden states (embeddings, layer 1, ..., layer L) and its final output
    (Whisper: the encoder's last hidden state; *ForCTC: the logits)."""
    with torch.no_grad():
        if "input_features" in inputs:
            out = model.get_encoder()(**inputs, output_hidden_states=True)
            return out.hidden_states, out.last_hidden_state
        out = model(**inputs, output_hidden_states=True)
        return out.hidden_states, out.logits


def test_loader_runs_the_adapter_as_peft_does(adapted: Adapted) -> None:
    loaded = load_model("B", resolve_model("B", str(adapted.adapter)))  # the base named by the adapter config
    cap = loaded.access.capture(**adapted.inputs)
    hidden, final = _own_outputs(_peft_own(adapted), adapted.inputs)
    assert len(cap.hidden_states) == len(hidden) - 1 == 2
    for ours, theirs in zip(cap.hidden_states[:-1], hidden[1:-1]):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    norm = loaded.access.final_norm()
    last = norm(cap.hidden_states[-1]) if norm is not None else cap.hidden_states[-1]
    with torch.no_grad():
        ours_final = last if adapted.name == "whisper" else loaded.model.lm_head(last)
    torch.testing.assert_close(ours_final, final, atol=1e-5, rtol=1e-5)

    # the adapter really changes the model: the base alone gives other states and outputs
    base_hidden, base_final = _own_outputs(adapted.model_class.from_pretrained(adapted.base).eval(), adapted.inputs)
    for ours, base in zip([*cap.hidden_states[:-1], ours_final], [*base_hidden[1:-1], base_final]):
        assert (ours - base).abs().max() > 1e-3

    # loaded unmerged, in eval mode, recorded with its adapter and base
    layers = lora_layers(loaded.model)
    assert layers and not any(layer.merged for layer in layers.values()) and not loaded.model.training
    described = loaded.describe()
    assert described["adapter"] == str(adapted.adapter) and described["path"] == str(adapted.base)
    assert described["adapter_layers"] == len(layers)
    explicit = resolve_model("B", hf_dir=f"{adapted.adapter}@{adapted.base}")
    assert explicit == resolve_model("B", str(adapted.adapter))


def test_branch_updates_rebuild_each_hf_layer(adapted: Adapted) -> None:
    loaded = load_model("B", resolve_model("B", str(adapted.adapter)))
    result = branch_updates(loaded.access, **adapted.inputs)
    cap = result.capture
    for block, updates, h_in, h_out in zip(loaded.access.layer_modules(), result.updates, cap.layer_inputs,
                                           cap.hidden_states):
        assert [b.name for b in block_branches(block)] == list(updates) == ["self_attn", "feed_forward"]
        torch.testing.assert_close(h_in + updates["self_attn"] + updates["feed_forward"], h_out,
                                   atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            middle = h_in + updates["self_attn"]
            if adapted.name == "whisper":  # the feed-forward branch is the whole MLP: fc2(act(fc1(norm(x))))
                mlp = block.fc2(block.activation_fn(block.fc1(block.final_layer_norm(middle))))
            elif adapted.name.endswith("_stable_ctc"):
                mlp = block.feed_forward(block.final_layer_norm(middle))
            else:  # post-norm: attention's update includes layer_norm, the MLP's includes final_layer_norm
                torch.testing.assert_close(middle, block.layer_norm(h_in + block.attention(h_in)[0]))
                mlp = block.final_layer_norm(middle + block.feed_forward(middle)) - middle
        torch.testing.assert_close(updates["feed_forward"], mlp, atol=1e-5, rtol=1e-5)
        assert updates["feed_forward"].abs().max() > 1e-3


def test_ctc_lens_last_layer_is_the_models_output(build: Callable[[str], Adapted]) -> None:
    case = build("wav2vec2_ctc")
    loaded = load_model("B", resolve_model("B", str(case.adapter)))
    cap = loaded.access.capture(**case.inputs)
    lens = hf_ctc_lens(loaded.model, cap, blank=loaded.blank)
    with torch.no_grad():
        own = _peft_own(case)(**case.inputs).logits.log_softmax(dim=-1)
    torch.testing.assert_close(lens.log_probs[-1], own, atol=1e-5, rtol=1e-5)
    assert lens.kl[-1] == pytest.approx(0.0, abs=1e-6) and lens.kl[0] > 1e-6
    assert loaded.blank == 0 and loaded.loss_name == "CTC loss"
    assert loaded.decode([24, 12, 9, 4, 7, 5, 24]) == "the cat"  # repeats are the lens's to collapse, not decode's
    assert loaded.decode([16, 16]) == "ll"


def test_energy_probes_every_lora_a_and_untrained_puts_b_to_zero(build: Callable[[str], Adapted]) -> None:
    case = build("wav2vec2_ctc")
    loaded = load_model("B", resolve_model("B", str(case.adapter)))
    bottlenecks = lora_bottlenecks(loaded.model)
    assert len(bottlenecks) == 3 * 2 and all(".lora_A.default" in name for name in bottlenecks)
    labels = torch.tensor([[24, 12, 9, 4, 7, 5, 24]])
    batches = [{**case.inputs, "labels": labels}]

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    trained = adapter_energy(loaded.model, loss, batches, bottlenecks)
    assert all(s.rank == RANK and s.act_k90 >= 1 and s.grad_k90 >= 1 for s in trained.values())
    before = {name: p.detach().clone() for name, p in loaded.model.named_parameters() if "lora_" in name}
    with untrained_lora(loaded.model) as fresh:
        assert all(p.abs().max() == 0 for name, p in fresh.named_parameters() if "lora_B" in name)
        untrained = adapter_energy(fresh, loss, batches, lora_bottlenecks(fresh))
    assert all(s.grad_k90 == 0 and s.act_k90 >= 1 for s in untrained.values())  # B = 0: no gradient reaches A x
    for name, parameter in loaded.model.named_parameters():
        if name in before:
            assert torch.equal(parameter, before[name]), name


def test_bad_adapter_inputs_name_the_file_and_the_fix(build: Callable[[str], Adapted], tmp_path: Path) -> None:
    import peft
    import transformers as tf

    whisper, w2v = build("whisper"), build("wav2vec2_ctc")
    remote = tmp_path / "remote"
    remote.mkdir()
    config = json.loads((whisper.adapter / "adapter_config.json").read_text())
    (remote / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "openai/whisper"}))
    with pytest.raises(AnalysisInputError, match=r"adapter_config.json names its base model 'openai/whisper', "
                                                 r"which is not a local dir.*remote@BASE_DIR"):
        resolve_model("B", str(remote))
    with pytest.raises(AnalysisInputError, match=r"base model dir .*nowhere .*not found"):
        resolve_model("B", f"{whisper.adapter}@{tmp_path / 'nowhere'}")
    with pytest.raises(AnalysisInputError, match=r"whisper\d*/base/adapter_config.json not found"):
        resolve_model("B", hf_dir=f"{whisper.base}@{whisper.base}")  # a model dir is no adapter dir
    # target modules the base lacks: fc1 is Whisper's, the Wav2Vec2 base has none
    mlp_only = tmp_path / "mlp_only"
    peft.get_peft_model(whisper.model_class.from_pretrained(whisper.base),
                        peft.LoraConfig(r=RANK, target_modules=["fc1"])).save_pretrained(mlp_only)
    with pytest.raises(AnalysisInputError, match=r"adapter in .*mlp_only/adapter_config.json does not fit its base "
                                                 r"Wav2Vec2ForCTC .*fc1.*mlp_only@BASE_DIR"):
        load_model("B", resolve_model("B", f"{mlp_only}@{w2v.base}"))
    # some of them in the base (q_proj, v_proj), fc1 not: peft loads half the adapter and only warns
    with pytest.raises(AnalysisInputError, match=r"weights in .*lora do not match the LoRA layers peft built on "
                                                 r"Wav2Vec2ForCTC"):
        load_model("B", resolve_model("B", f"{whisper.adapter}@{w2v.base}"))
    # the same modules under other names: an adapter trained on the bare WhisperModel
    bare = tmp_path / "bare"
    peft.get_peft_model(tf.WhisperModel.from_pretrained(whisper.base),
                        peft.LoraConfig(r=RANK, target_modules=["q_proj"])).save_pretrained(bare)
    with pytest.raises(AnalysisInputError, match=r"weights in .*bare do not match the LoRA layers peft built on "
                                                 r"WhisperForConditionalGeneration"):
        load_model("B", resolve_model("B", str(bare)))


def _run(args: list[str], out: Path, written: str = "analysis.json") -> dict[str, Any]:
    analyze([*args, "--out", str(out), "--no_progress"])
    return json.loads((out / written).read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_data_dir(tmp_path_factory.mktemp("data"), WORDS, [0.5, 0.7, 0.9])


def test_cli_on_a_wav2vec2_ctc_lora(build: Callable[[str], Adapted], data: Path, tmp_path: Path) -> None:
    case = build("wav2vec2_ctc")
    results = _run(["--hf_model_a", str(case.base), "--hf_model_b", str(case.adapter), "--data", str(data),
                    "--analyses", "cka,lens,contribution,branches,energy,ablation", "--max_frames", "300"],
                   tmp_path / "out")
    assert results["models"]["B"]["adapter"] == str(case.adapter) and results["models"]["B"]["adapter_layers"] == 6
    drift = results["cka"]["drift"]
    assert len(drift) == 2 and min(drift) < 1 - 1e-6  # the adapter moved the representation
    for label in ("A", "B"):
        assert len(results["lens"][label]["cer"]) == 2 and results["lens"][label]["kl"][-1] == pytest.approx(0)
        assert set(results["branches"][label]["branches"]) == {"self_attn", "feed_forward"}
        assert "HF models" in results["skipped"]["ablation"][label]
    assert "no adapter" in results["skipped"]["energy"]["A"]
    assert results["energy_loss"]["B"] == "CTC loss"
    rows = results["energy_vs_untrained"]["B"]
    assert len(rows) == 6 and all(r["rank"] == RANK and r["untrained_grad_k90"] == 0 for r in rows.values())
    assert all(r["trained_grad_k90"] >= 1 for r in rows.values())
    assert f"`{case.adapter}`" in (tmp_path / "out" / "summary.md").read_text()


def test_cli_on_a_whisper_lora(build: Callable[[str], Adapted], data: Path, tmp_path: Path) -> None:
    case = build("whisper")
    results = _run(["--hf_model_a", str(case.base), "--model_b", f"{case.adapter}@{case.base}", "--data", str(data),
                    "--analyses", "all"], tmp_path / "out")
    for name in REGISTRY:  # every analysis ran, or says for each model why not
        assert name in results or set(results["skipped"].get(name, {})) >= {"A", "B"}, name
    assert min(results["cka"]["drift"]) < 1 - 1e-6 and len(results["attention"]["inter"]) == 2
    assert "WhisperForConditionalGeneration has no CTC head" in results["skipped"]["lens"]["B"]
    assert set(results["branches"]["B"]["branches"]) == {"self_attn", "feed_forward"}
    assert results["energy_loss"]["B"] == "decoder loss"
    assert len(results["energy"]["B"]) == 11  # q_proj, v_proj, fc1 of the encoder; of the decoder also cross-attention
    many = _run(["--models", f"base={case.base}", f"lora={case.adapter}@{case.base}", "--data", str(data)],
                tmp_path / "many", written="models.json")
    assert many["models"]["lora"]["adapter"] == str(case.adapter) and many["mean"][0][1] < 1 - 1e-6
