"""A CTranslate2 ``WhisperSpec`` as an openai-whisper checkpoint: ``{"dims": {...}, "model_state_dict": {...}}``.

The mapping (CTranslate2 name -> ``whisper.model.Whisper`` name), per block ``N``:

* encoder: ``conv{1,2}`` -> ``conv{1,2}``; ``position_encodings/encodings`` -> ``positional_embedding``;
  ``layer_N/self_attention/layer_norm`` -> ``blocks.N.attn_ln``; ``.../linear_0`` (fused ``[3d, d]``) ->
  ``attn.query`` / ``attn.key`` / ``attn.value`` in that order; ``.../linear_1`` -> ``attn.out``;
  ``ffn/layer_norm``, ``ffn/linear_0``, ``ffn/linear_1`` -> ``mlp_ln``, ``mlp.0``, ``mlp.2``; ``layer_norm`` ->
  ``ln_post``;
* decoder: ``embeddings/weight`` -> ``token_embedding.weight``; ``position_encodings/encodings`` ->
  ``positional_embedding``; self-attention and FFN as in the encoder; ``attention/layer_norm`` -> ``cross_attn_ln``,
  ``attention/linear_0`` -> ``cross_attn.query``, ``attention/linear_1`` (fused ``[2d, d]``) -> ``cross_attn.key`` /
  ``cross_attn.value``, ``attention/linear_2`` -> ``cross_attn.out``; ``layer_norm`` -> ``ln``.

Whisper's ``key`` projections have no bias; the fused matrices carry a key bias slot. It is zero in OpenAI's
converted checkpoints, and dropping it would be exact anyway: ``q . (k + b)`` shifts every key's score for one query
by the same ``q . b``, which the softmax ignores. The output projection must be tied to the token embedding (an alias
or an equal tensor), as in ``whisper.model.TextDecoder``. Tensors keep their stored dtype (fp16 in OpenAI's files), so
nothing is rounded.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Tuple

import torch

from espnet_peft.whisper.ctranslate2_file import CTranslate2Model

SPEC = "WhisperSpec"
SUPPORTED_REVISIONS = (3,)
#: CTranslate2 flags whose values openai-whisper's architecture fixes (ActivationType 3 is exact GELU)
FIXED_FLAGS = {"decoder/pre_norm": 1, "decoder/activation": 3, "decoder/alibi": 0, "decoder/scale_embeddings": 0,
               "decoder/start_from_zero_embedding": 0}
#: flags that only CTranslate2's own decoding reads (word timestamps); openai-whisper sets its alignment heads itself
IGNORED_FLAGS = ("decoder/alignment_heads", "decoder/alignment_layer")
OUTPUT_PROJECTION = "decoder/projection/weight"


class WhisperConversionError(ValueError):
    """The CTranslate2 model cannot become an openai-whisper checkpoint (the message says which tensor or flag)."""


def _layer_count(names: Iterable[str], side: str) -> int:
    indices = {int(m.group(1)) for n in names if (m := re.match(rf"{side}/layer_(\d+)/", n))}
    if indices != set(range(len(indices))):
        raise WhisperConversionError(f"{side} blocks are not numbered 0..N-1: found {sorted(indices)}")
    return len(indices)


def _scalar(model: CTranslate2Model, name: str) -> int:
    if name not in model.variables:
        raise WhisperConversionError(f"missing variable {name}")
    return int(model.variables[name].reshape(-1)[0].item())


def _norm(prefix: str, target: str) -> List[Tuple[str, str]]:
    return [(f"{prefix}/gamma", f"{target}.weight"), (f"{prefix}/beta", f"{target}.bias")]


def _linear(prefix: str, target: str) -> List[Tuple[str, str]]:
    return [(f"{prefix}/weight", f"{target}.weight"), (f"{prefix}/bias", f"{target}.bias")]


def _block_names(side: str, n: int, cross: bool) -> List[Tuple[str, str]]:
    """(source, target) pairs of one block's unfused tensors."""
    src, dst = f"{side}/layer_{n}", f"{side}.blocks.{n}"
    pairs = _norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
    pairs += _linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
    pairs += _norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    pairs += _linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0") + _linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    if cross:
        pairs += _norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        pairs += _linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        pairs += _linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
    return pairs


def whisper_dims(model: CTranslate2Model) -> Dict[str, int]:
    """``whisper.model.ModelDimensions`` fields, read off the tensors' shapes and the head counts."""
    for name in ("encoder/conv1/weight", "encoder/position_encodings/encodings", "decoder/embeddings/weight",
                 "decoder/position_encodings/encodings"):
        if name not in model.variables:
            raise WhisperConversionError(f"missing tensor {name}")
    conv1 = model.variables["encoder/conv1/weight"]
    audio_ctx, audio_state = model.variables["encoder/position_encodings/encodings"].shape
    vocab, text_state = model.variables["decoder/embeddings/weight"].shape
    text_ctx = model.variables["decoder/position_encodings/encodings"].shape[0]
    return {"n_mels": int(conv1.shape[1]), "n_audio_ctx": int(audio_ctx), "n_audio_state": int(audio_state),
            "n_audio_head": _scalar(model, "encoder/num_heads"), "n_audio_layer": _layer_count(model.variables, "encoder"),
            "n_vocab": int(vocab), "n_text_ctx": int(text_ctx), "n_text_state": int(text_state),
            "n_text_head": _scalar(model, "decoder/num_heads"), "n_text_layer": _layer_count(model.variables, "decoder")}


def expected_shapes(dims: Mapping[str, int]) -> Dict[str, Tuple[int, ...]]:
    """The shape of every tensor of ``whisper.model.Whisper(dims)``, as its ``state_dict`` holds them."""
    a, t = dims["n_audio_state"], dims["n_text_state"]
    shapes: Dict[str, Tuple[int, ...]] = {
        "encoder.conv1.weight": (a, dims["n_mels"], 3), "encoder.conv1.bias": (a,),
        "encoder.conv2.weight": (a, a, 3), "encoder.conv2.bias": (a,),
        "encoder.positional_embedding": (dims["n_audio_ctx"], a),
        "encoder.ln_post.weight": (a,), "encoder.ln_post.bias": (a,),
        "decoder.token_embedding.weight": (dims["n_vocab"], t),
        "decoder.positional_embedding": (dims["n_text_ctx"], t),
        "decoder.ln.weight": (t,), "decoder.ln.bias": (t,),
    }
    for side, d, layers, cross in (("encoder", a, dims["n_audio_layer"], False),
                                   ("decoder", t, dims["n_text_layer"], True)):
        for n in range(layers):
            block = f"{side}.blocks.{n}"
            for attn in ("attn", "cross_attn") if cross else ("attn",):
                for proj in ("query", "key", "value", "out"):
                    shapes[f"{block}.{attn}.{proj}.weight"] = (d, d)
                    if proj != "key":
                        shapes[f"{block}.{attn}.{proj}.bias"] = (d,)
                shapes[f"{block}.{attn}_ln.weight"] = shapes[f"{block}.{attn}_ln.bias"] = (d,)
            shapes[f"{block}.mlp.0.weight"], shapes[f"{block}.mlp.0.bias"] = (4 * d, d), (4 * d,)
            shapes[f"{block}.mlp.2.weight"], shapes[f"{block}.mlp.2.bias"] = (d, 4 * d), (d,)
            shapes[f"{block}.mlp_ln.weight"] = shapes[f"{block}.mlp_ln.bias"] = (d,)
    return shapes


def _split(tensor: torch.Tensor, parts: int, origin: str) -> Tuple[torch.Tensor, ...]:
    if tensor.shape[0] % parts:
        raise WhisperConversionError(f"{origin}: first dimension {tensor.shape[0]} does not split into {parts}")
    return tuple(piece.clone() for piece in tensor.chunk(parts, dim=0))


def checkpoint_from_ctranslate2(model: CTranslate2Model) -> Dict[str, object]:
    """The openai-whisper checkpoint of a CTranslate2 ``WhisperSpec``; refuses another spec, a missing, extra or
    misshapen tensor, and flags that openai-whisper's architecture cannot express, each by name."""
    if model.spec != SPEC:
        raise WhisperConversionError(f"spec {model.spec!r} is not {SPEC!r}: not a Whisper model")
    if model.revision not in SUPPORTED_REVISIONS:
        raise WhisperConversionError(f"{SPEC} revision {model.revision}; the mapping is checked for revision(s) "
                                     f"{list(SUPPORTED_REVISIONS)}")
    for flag, value in FIXED_FLAGS.items():
        found = _scalar(model, flag)
        if found != value:
            raise WhisperConversionError(f"{flag} = {found}; openai-whisper's architecture needs {value}")
    dims = whisper_dims(model)
    pairs = [("encoder/conv1/weight", "encoder.conv1.weight"), ("encoder/conv1/bias", "encoder.conv1.bias"),
             ("encoder/conv2/weight", "encoder.conv2.weight"), ("encoder/conv2/bias", "encoder.conv2.bias"),
             ("encoder/position_encodings/encodings", "encoder.positional_embedding"),
             ("decoder/embeddings/weight", "decoder.token_embedding.weight"),
             ("decoder/position_encodings/encodings", "decoder.positional_embedding")]
    pairs += _norm("encoder/layer_norm", "encoder.ln_post") + _norm("decoder/layer_norm", "decoder.ln")
    fused: Dict[str, List[str]] = {}  # fused source prefix -> target module names, in the order of its rows
    for side, layers, cross in (("encoder", dims["n_audio_layer"], False), ("decoder", dims["n_text_layer"], True)):
        for n in range(layers):
            pairs += _block_names(side, n, cross)
            src, dst = f"{side}/layer_{n}", f"{side}.blocks.{n}"
            fused[f"{src}/self_attention/linear_0"] = [f"{dst}.attn.{p}" for p in ("query", "key", "value")]
            if cross:
                fused[f"{src}/attention/linear_1"] = [f"{dst}.cross_attn.{p}" for p in ("key", "value")]
    fused_names = [f"{src}/{kind}" for src in fused for kind in ("weight", "bias")]
    missing = sorted(name for name in [src for src, _ in pairs] + fused_names if name not in model.variables)
    if missing:
        raise WhisperConversionError(f"missing tensor(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    state = {dst: model.variables[src].clone() for src, dst in pairs}
    for src, targets in fused.items():
        for kind in ("weight", "bias"):
            name = f"{src}/{kind}"
            for target, piece in zip(targets, _split(model.variables[name], len(targets), name)):
                if kind == "bias" and target.endswith(".key"):
                    continue  # softmax-invariant (module docstring)
                state[f"{target}.{kind}"] = piece
    used = {src for src, _ in pairs} | set(fused_names) | set(FIXED_FLAGS) | set(IGNORED_FLAGS) | {
        "encoder/num_heads", "decoder/num_heads", OUTPUT_PROJECTION}
    if OUTPUT_PROJECTION in model.variables:
        if not torch.equal(model.variables[OUTPUT_PROJECTION], model.variables["decoder/embeddings/weight"]):
            raise WhisperConversionError(f"{OUTPUT_PROJECTION} differs from decoder/embeddings/weight; openai-whisper "
                                         "ties the output projection to the token embedding")
    elif model.aliases.get(OUTPUT_PROJECTION, "decoder/embeddings/weight") != "decoder/embeddings/weight":
        raise WhisperConversionError(f"{OUTPUT_PROJECTION} is an alias of {model.aliases[OUTPUT_PROJECTION]}, "
                                     "not of decoder/embeddings/weight")
    extra = sorted(set(model.variables) - used)
    if extra:
        raise WhisperConversionError(f"tensor(s) with no place in openai-whisper's model: {extra[:8]}")
    shapes = expected_shapes(dims)
    wrong = [f"{k}: {list(v.shape)} != {list(shapes[k])}" for k, v in state.items() if tuple(v.shape) != shapes[k]]
    if wrong or set(shapes) != set(state):
        raise WhisperConversionError("wrong shape(s) for the dims read off the file "
                                     f"({dims}): {(wrong or sorted(set(shapes) ^ set(state)))[:6]}")
    return {"dims": dims, "model_state_dict": state}
