"""Whisper offline: the CTranslate2 converter against a file the test writes itself, ESPnet's Whisper token types on
today's openai-whisper, and the real tiny.en (from its pinned PyPI package) inside ESPnet with every adapter."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
import yaml

whisper = pytest.importorskip("whisper")
from whisper.model import ModelDimensions, Whisper  # noqa: E402

from espnet_peft.base_fingerprint import base_fingerprint, fingerprint_mismatches  # noqa: E402
from espnet_peft.export import apply_adapter, write_adapter_package  # noqa: E402
from espnet_peft.injection import adapter_layers, initialise_adapters, inject_adapters, merge_adapters  # noqa: E402
from espnet_peft.tuners import METHODS  # noqa: E402
from espnet_peft.whisper import offline  # noqa: E402
from espnet_peft.whisper.convert import WhisperConversionError, checkpoint_from_ctranslate2  # noqa: E402
from espnet_peft.whisper.ctranslate2_file import CTranslate2FormatError, read_ctranslate2_model  # noqa: E402
from helpers.whisper_fixtures import PIPER_SENTENCES, piper_speech, tiny_en  # noqa: E402,F401 (fixtures)

TINY = dict(n_mels=80, n_audio_ctx=24, n_audio_state=16, n_audio_head=2, n_audio_layer=2, n_vocab=70,
            n_text_ctx=12, n_text_state=16, n_text_head=2, n_text_layer=2)
CODES = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4}


# --- a CTranslate2 writer of the test's own, from the format's description (not the package's reader) -------------
def _string(value: str) -> bytes:
    raw = value.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ctranslate2(path: Path, variables: Dict[str, torch.Tensor], aliases: Dict[str, str],
                      spec: str = "WhisperSpec", revision: int = 3) -> None:
    out = [struct.pack("<I", 6), _string(spec), struct.pack("<I", revision), struct.pack("<I", len(variables))]
    for name, tensor in variables.items():
        data = tensor.contiguous().numpy().tobytes()
        out += [_string(name), struct.pack("<B", tensor.dim()), struct.pack(f"<{tensor.dim()}I", *tensor.shape),
                struct.pack("<B", CODES[tensor.dtype]), struct.pack("<I", len(data)), data]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


def ctranslate2_variables(model: Whisper, key_bias: float = 0.0) -> Dict[str, torch.Tensor]:
    """The CTranslate2 WhisperSpec layout of ``model`` (fp16, fused attention projections, scalar flags)."""
    sd = {k: v.half() for k, v in model.state_dict().items()}
    dims = model.dims
    v: Dict[str, torch.Tensor] = {}

    def norm(src: str, dst: str) -> None:
        v[f"{src}/gamma"], v[f"{src}/beta"] = sd[f"{dst}.weight"], sd[f"{dst}.bias"]

    def linear(src: str, dst: str) -> None:
        v[f"{src}/weight"], v[f"{src}/bias"] = sd[f"{dst}.weight"], sd[f"{dst}.bias"]

    def fused(src: str, dst: str, parts: Tuple[str, ...]) -> None:
        v[f"{src}/weight"] = torch.cat([sd[f"{dst}.{p}.weight"] for p in parts])
        biases = [sd[f"{dst}.{p}.bias"] if p != "key" else torch.full_like(sd[f"{dst}.query.bias"], key_bias)
                  for p in parts]
        v[f"{src}/bias"] = torch.cat(biases)

    for side, layers in (("encoder", dims.n_audio_layer), ("decoder", dims.n_text_layer)):
        for n in range(layers):
            src, dst = f"{side}/layer_{n}", f"{side}.blocks.{n}"
            norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
            fused(f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"))
            linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
            norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
            linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
            linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
            if side == "decoder":
                norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
                linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
                fused(f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"))
                linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
    for name in ("conv1", "conv2"):
        linear(f"encoder/{name}", f"encoder.{name}")
    v["encoder/position_encodings/encodings"] = sd["encoder.positional_embedding"]
    norm("encoder/layer_norm", "encoder.ln_post")
    v["decoder/embeddings/weight"] = sd["decoder.token_embedding.weight"]
    v["decoder/position_encodings/encodings"] = sd["decoder.positional_embedding"]
    norm("decoder/layer_norm", "decoder.ln")
    v["encoder/num_heads"] = torch.tensor(dims.n_audio_head, dtype=torch.int16)
    v["decoder/num_heads"] = torch.tensor(dims.n_text_head, dtype=torch.int16)
    for flag, value in (("pre_norm", 1), ("activation", 3), ("alibi", 0), ("scale_embeddings", 0),
                        ("start_from_zero_embedding", 0)):
        v[f"decoder/{flag}"] = torch.tensor(value, dtype=torch.int8)
    v["decoder/alignment_heads"] = torch.tensor(1, dtype=torch.int16)
    return v


def random_whisper(seed: int = 0) -> Whisper:
    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**TINY))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        for tensor in model.state_dict().values():  # fp16-exact, as OpenAI's checkpoints are (buffers too)
            tensor.copy_(tensor.half().float())
    return model.eval()


def logits(model: Whisper, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    mel, tokens = torch.randn(2, 80, 48), torch.randint(0, TINY["n_vocab"], (2, 5))
    with torch.no_grad():
        return model(mel, tokens)


def load_converted(checkpoint: Dict[str, object]) -> Whisper:
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    return model.eval()


def test_conversion_restores_every_tensor_and_the_fused_splits(tmp_path: Path) -> None:
    source = random_whisper()
    write_ctranslate2(tmp_path / "model.bin", ctranslate2_variables(source),
                      {"decoder/projection/weight": "decoder/embeddings/weight"})
    checkpoint = checkpoint_from_ctranslate2(read_ctranslate2_model(tmp_path / "model.bin"))
    assert checkpoint["dims"] == TINY
    expected = source.state_dict()
    assert set(checkpoint["model_state_dict"]) == set(expected)
    for name, tensor in checkpoint["model_state_dict"].items():
        assert tensor.dtype == torch.float16, name  # stored dtype kept: nothing rounded twice
        assert torch.equal(tensor.float(), expected[name]), name
    assert torch.equal(logits(load_converted(checkpoint)), logits(source))


def test_split_parts_read_as_one_file(tmp_path: Path) -> None:
    write_ctranslate2(tmp_path / "model.bin", ctranslate2_variables(random_whisper()), {})
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "a").write_bytes(data[:1000])
    (tmp_path / "b").write_bytes(data[1000:])
    whole = read_ctranslate2_model(tmp_path / "model.bin")
    parts = read_ctranslate2_model([tmp_path / "a", tmp_path / "b"])
    assert all(torch.equal(whole.variables[k], parts.variables[k]) for k in whole.variables)
    with pytest.raises(CTranslate2FormatError, match="out of order|ends early|not NUL|version|bytes"):
        read_ctranslate2_model([tmp_path / "b", tmp_path / "a"])


def test_a_nonzero_key_bias_is_dropped_exactly(tmp_path: Path) -> None:
    """q.(k + b) moves every key's score for one query by q.b, which the softmax ignores."""
    source = random_whisper()
    write_ctranslate2(tmp_path / "model.bin", ctranslate2_variables(source, key_bias=0.5), {})
    converted = load_converted(checkpoint_from_ctranslate2(read_ctranslate2_model(tmp_path / "model.bin")))
    with_bias = random_whisper()
    for module in with_bias.modules():
        if isinstance(module, whisper.model.MultiHeadAttention):
            key = torch.nn.Linear(module.key.in_features, module.key.out_features)
            with torch.no_grad():
                key.weight.copy_(module.key.weight)
                key.bias.fill_(0.5)
            module.key = key
    assert not torch.allclose(with_bias.decoder.blocks[0].attn.key.bias, torch.zeros(1))
    torch.testing.assert_close(logits(converted), logits(with_bias), rtol=1e-4, atol=1e-4)


def _mutations() -> List[Tuple[str, str]]:
    return [("spec", "not a Whisper model"), ("revision", "revision 2"), ("missing", "missing tensor"),
            ("shape", "wrong shape"), ("extra", "no place"), ("truncated", "ends early"),
            ("untied", "ties the output projection"), ("activation", "decoder/activation")]


@pytest.mark.parametrize("mutation,message", _mutations())
def test_refusals_name_what_is_wrong(tmp_path: Path, mutation: str, message: str) -> None:
    variables = ctranslate2_variables(random_whisper())
    spec, revision, aliases = "WhisperSpec", 3, {}
    if mutation == "spec":
        spec = "TransformerSpec"
    elif mutation == "revision":
        revision = 2
    elif mutation == "missing":
        del variables["decoder/layer_1/ffn/linear_0/bias"]
    elif mutation == "shape":
        variables["encoder/layer_0/ffn/linear_1/weight"] = torch.zeros(16, 32, dtype=torch.float16)
    elif mutation == "extra":
        variables["encoder/layer_0/ffn/linear_2/weight"] = torch.zeros(4, dtype=torch.float16)
    elif mutation == "untied":
        variables["decoder/projection/weight"] = torch.zeros_like(variables["decoder/embeddings/weight"])
    elif mutation == "activation":
        variables["decoder/activation"] = torch.tensor(0, dtype=torch.int8)
    write_ctranslate2(tmp_path / "model.bin", variables, aliases, spec, revision)
    if mutation == "truncated":
        data = (tmp_path / "model.bin").read_bytes()
        (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises((WhisperConversionError, CTranslate2FormatError), match=message):
        checkpoint_from_ctranslate2(read_ctranslate2_model(tmp_path / "model.bin"))


def test_cli_converts_a_model_bin_and_loads_it_strictly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from espnet_peft.bin.convert_whisper import main

    (tmp_path / "small").mkdir()
    write_ctranslate2(tmp_path / "small" / "model.bin", ctranslate2_variables(random_whisper()), {})
    main(["--model_bin", str(tmp_path / "small" / "model.bin"), "--output_dir", str(tmp_path / "out")])
    assert Path(capsys.readouterr().out.strip()) == tmp_path / "out" / "small.pt"
    (tmp_path / "bad.bin").write_bytes(b"\x06\0\0\0")
    with pytest.raises(SystemExit, match=r"convert_whisper: .*bad.bin"):
        main(["--model_bin", str(tmp_path / "bad.bin"), "--output_dir", str(tmp_path / "out")])


# --- ESPnet's Whisper token types on the installed openai-whisper --------------------------------------------------
def test_espnet_whisper_token_types_match_tiktoken() -> None:
    offline.install()
    from espnet2.text.whisper_token_id_converter import OpenAIWhisperTokenIDConverter
    from espnet2.text.whisper_tokenizer import OpenAIWhisperTokenizer

    tokenizer, converter = OpenAIWhisperTokenizer("whisper_en"), OpenAIWhisperTokenIDConverter("whisper_en")
    reference = whisper.tokenizer.get_tokenizer(multilingual=False)
    text = "Hello world, it's Jane's café: 42 dumplings!"
    tokens = tokenizer.text2tokens(text)
    assert tokens[:2] == ["Hello", "Ġworld"]
    ids = converter.tokens2ids(tokens)
    assert ids == [reference.no_timestamps, *reference.encode(text)]
    assert tokenizer.tokens2text(converter.ids2tokens(ids)) == text
    assert converter.get_num_vocabulary_size() == 51864  # tiny.en's embedding rows


def test_exported_token_list_puts_the_specials_at_the_model_ids(tmp_path: Path) -> None:
    offline.install()
    from espnet2.bin.whisper_export_vocabulary import export_vocabulary

    export_vocabulary(str(tmp_path / "tokens.txt"), "whisper_en")
    tokens = (tmp_path / "tokens.txt").read_text(encoding="utf-8").splitlines()
    reference = whisper.tokenizer.get_tokenizer(multilingual=False)
    assert len(tokens) == 51864
    for name in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|0.00|>"):
        assert tokens.index(name) == reference.special_tokens[name], name
    assert tokens[reference.encode(" world")[0]] == " world"


# --- the real tiny.en, from its pinned PyPI package, inside ESPnet ----------------------------------------------------
def test_converted_tiny_en_transcribes_near_natural_speech(tiny_en: Path, piper_speech: list) -> None:
    import jiwer
    from whisper.normalizers import EnglishTextNormalizer

    model = whisper.load_model(str(tiny_en), device="cpu")
    normalise = EnglishTextNormalizer()
    hyps = [normalise(model.transcribe(audio.numpy(), language="en", temperature=0.0, fp16=False,
                                       condition_on_previous_text=False)["text"]) for audio, _ in piper_speech]
    wer = jiwer.wer([normalise(t) for _, t in piper_speech], hyps)
    # docs/whisper.md: 0.0% (0 of 59 words); 2 points of slack
    assert wer <= 0.02, list(zip(hyps, [t for _, t in piper_speech]))


def whisper_asr_config(tmp_path: Path) -> Path:
    from espnet2.bin.whisper_export_vocabulary import export_vocabulary

    offline.install()
    export_vocabulary(str(tmp_path / "tokens.txt"), "whisper_en")
    config = {
        "frontend": None, "input_size": 1, "normalize": None, "specaug": None, "token_type": "whisper_en",
        "bpemodel": "whisper_en", "token_list": str(tmp_path / "tokens.txt"),
        "encoder": "whisper", "encoder_conf": {"whisper_model": "tiny.en", "dropout_rate": 0.0},
        "decoder": "whisper", "decoder_conf": {"whisper_model": "tiny.en", "dropout_rate": 0.0},
        "model_conf": {"ctc_weight": 0.0, "lsm_weight": 0.0, "length_normalized_loss": False,
                       "sym_sos": "<|startoftranscript|>", "sym_eos": "<|endoftext|>"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "config.yaml"


@pytest.fixture(scope="module")
def espnet_whisper(tiny_en: Path, tmp_path_factory: pytest.TempPathFactory):
    """(build, batch): ``build()`` makes ESPnet's Whisper ASR model by name, offline; ``batch`` is real speech."""
    from espnet_peft.tasks.asr import ASRTask

    monkey = pytest.MonkeyPatch()
    monkey.setenv(offline.ENV_VARIABLE, str(tiny_en.parent))
    monkey.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("Whisper tried the network"))
    config = whisper_asr_config(tmp_path_factory.mktemp("espnet_whisper"))

    args = ASRTask.get_parser().parse_args(["--config", str(config), "--output_dir", str(config.parent / "exp")])

    def build() -> torch.nn.Module:
        return ASRTask.build_model(args).eval()

    yield build
    monkey.undo()


def speech_batch(piper_speech: list) -> Dict[str, torch.Tensor]:
    reference = whisper.tokenizer.get_tokenizer(multilingual=False)
    audio = [a for a, _ in piper_speech[:4]]
    # written as Whisper writes: capitalised, with a full stop
    texts = [[reference.no_timestamps, *reference.encode(" " + t.capitalize() + ".")] for _, t in piper_speech[:4]]
    speech = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
    text = torch.nn.utils.rnn.pad_sequence([torch.tensor(t) for t in texts], batch_first=True, padding_value=-1)
    return {"speech": speech, "speech_lengths": torch.tensor([len(a) for a in audio]),
            "text": text, "text_lengths": torch.tensor([len(t) for t in texts])}


def test_espnet_builds_tiny_en_by_name_offline_and_it_is_competent(espnet_whisper, tiny_en: Path,
                                                                   piper_speech: list) -> None:
    model = espnet_whisper()
    reference = whisper.load_model(str(tiny_en), device="cpu")
    assert torch.equal(model.encoder.encoders.blocks[2].mlp[0].weight, reference.encoder.blocks[2].mlp[0].weight)
    assert torch.equal(model.decoder.decoders.token_embedding.weight, reference.decoder.token_embedding.weight)
    with torch.no_grad():
        _, stats, _ = model(**speech_batch(piper_speech))
    # teacher-forced token accuracy on noiseless Piper speech: 0.84 measured (a mis-mapped tensor gives ~0)
    assert stats["acc"] > 0.75


BUDGET = 40_000
ADAPTED = ["query", "value"]  # self- and cross-attention, encoder and decoder: 24 layers of 384 x 384


@pytest.mark.parametrize("method", METHODS)
def test_every_adapter_trains_merges_and_packages_on_tiny_en(method: str, espnet_whisper, piper_speech: list,
                                                             tmp_path: Path) -> None:
    model = espnet_whisper()
    batch = speech_batch(piper_speech)
    with torch.no_grad():
        base_loss = model(**batch)[0]
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    report = inject_adapters(model, {"method": method, "target_modules": ADAPTED, "total_budget": BUDGET})
    initialise_adapters(model)
    assert abs(report.trainable - BUDGET) <= 0.05 * BUDGET
    with torch.no_grad():  # identity at initialisation (PiSSA moves its top subspace out of the frozen weight)
        torch.testing.assert_close(model(**batch)[0], base_loss, rtol=2e-3, atol=2e-3)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    loss = model(**batch)[0]
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    layers = adapter_layers(model)
    adapter_names = {f"{n}.{k}" for n, layer in layers.items() for k in layer.adapter_parameters()}
    assert grads and grads <= adapter_names
    optimizer.step()
    model.eval()
    write_adapter_package(model, tmp_path / "package", "asr", {"config": "tiny.en"})
    with torch.no_grad():
        adapted = model(**batch)[0]
        assert not torch.equal(adapted, base_loss)
        merged = merge_adapters(model)
        torch.testing.assert_close(merged(**batch)[0], adapted, rtol=1e-4, atol=1e-4)
    plain = espnet_whisper()  # merge gives a plain ESPnet Whisper model: its state dict loads strictly
    plain.load_state_dict(merged.state_dict(), strict=True)
    assert set(plain.state_dict()) == set(base_state)
    reapplied = espnet_whisper()
    apply_adapter(reapplied, tmp_path / "package")
    with torch.no_grad():
        torch.testing.assert_close(reapplied(**batch)[0], adapted, rtol=1e-5, atol=1e-5)


def test_the_shipped_whisper_config_builds_with_its_adapters(tiny_en: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/whisper_tiny_en_asr.yaml, with the token list from the plugin's vocabulary export, as a user runs it."""
    from espnet_peft.bin.whisper_export_vocabulary import main as export_main
    from espnet2.layers.create_adapter import create_adapter
    from espnet_peft.tasks.asr import ASRTask

    monkeypatch.setenv(offline.ENV_VARIABLE, str(tiny_en.parent))
    export_main(["--whisper_model", "whisper_en", "--output", str(tmp_path / "tokens.txt")])
    config = Path(__file__).resolve().parents[1] / "conf" / "whisper_tiny_en_asr.yaml"
    args = ASRTask.get_parser().parse_args(["--config", str(config), "--token_list", str(tmp_path / "tokens.txt"),
                                            "--output_dir", str(tmp_path / "exp")])
    model = ASRTask.build_model(args)
    create_adapter(model, args.adapter, args.adapter_conf)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert len(adapter_layers(model)) == 24 and abs(trainable - 40_000) <= 2_000


def test_the_base_fingerprint_refuses_another_whisper(espnet_whisper) -> None:
    model, other = espnet_whisper(), espnet_whisper()
    with torch.no_grad():
        other.encoder.encoders.blocks[0].attn.query.weight.mul_(1.01)
    problems = fingerprint_mismatches(base_fingerprint(model), base_fingerprint(other))
    assert problems == ["encoder.encoders.blocks.0.attn.query.weight: values differ"]
