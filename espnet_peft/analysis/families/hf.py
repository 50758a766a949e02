"""The Hugging Face model family: ``transformers`` Whisper, Wav2Vec2 and HuBERT dirs, bare or ``*ForCTC``, and peft
adapters over them (``ModelSource`` kind ``"hf"``).

Loaded with the class their config names (a peft adapter with peft itself, ``hf_peft``) and read through
``HFAccess``, one utterance per forward pass with the model's own feature extractor. The CTC lens uses the
``lm_head`` of a ``*ForCTC`` model (its blank is the pad token), the attention analysis the maps an eager-attention
forward returns, and the adapter energy the ``lora_A`` output of every peft LoRA layer under the model's own loss from
the transcripts; the ablation and the decoder analyses know ESPnet models only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ContextManager, Optional

import numpy as np
import torch
from torch import nn

from espnet_peft.analysis.energy import Bottleneck
from espnet_peft.analysis.families.base import ModelFamily
from espnet_peft.analysis.families.registry import register
from espnet_peft.analysis.hf_peft import load_adapter, lora_bottlenecks, lora_layers, untrained_lora
from espnet_peft.analysis.lens import LensResult, hf_ctc_lens
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.model_access import Capture, HFAccess
from espnet_peft.analysis.resolve import ModelSource
from espnet_peft.analysis.utterances import Batch, Utterance
from espnet_peft.utils.text_norm import normalize_text


def _hf_dirs(source: ModelSource) -> list[Path]:
    """Where an HF model's preprocessing files may be: the adapter dir first (saved with the fine-tuned model), then
    the base."""
    return [d for d in (source.adapter, source.path) if d is not None]


def _hf_feature_extractor(source: ModelSource, config: Any) -> Any:
    """The model's own feature extractor, or the model family's default when its dirs have none (a bare checkpoint)."""
    import transformers as tf

    for path in _hf_dirs(source):
        if (path / "preprocessor_config.json").is_file():
            return tf.AutoFeatureExtractor.from_pretrained(str(path))
    if config.model_type == "whisper":
        return tf.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)


def _hf_model(label: str, source: ModelSource, **kwargs: Any) -> nn.Module:
    """The HF model in eval mode, built as the class its config names: a ``*ForCTC`` keeps its CTC head, and a peft
    adapter's weights are named after the class it was trained on. With the peft adapter over it when there is one."""
    import transformers as tf

    architectures = getattr(tf.AutoConfig.from_pretrained(str(source.path)), "architectures", None) or []
    model_class = getattr(tf, architectures[0], tf.AutoModel) if architectures else tf.AutoModel
    model = HFAccess.from_pretrained(str(source.path), model_class, **kwargs).model
    return model if source.adapter is None else load_adapter(label, model, source.adapter)


#: the loss an HF model computes from ``labels``, by the ending of its class name
_HF_LOSSES = {"ForCTC": "CTC loss", "ForConditionalGeneration": "decoder loss"}


def is_hf_ctc(model: nn.Module) -> bool:
    """Whether an HF model has a CTC head (``lm_head``): the ``*ForCTC`` classes."""
    return type(model).__name__.endswith("ForCTC")


def _hf_tokenizer(source: ModelSource, model: nn.Module) -> tuple[Any, Optional[str], Optional[str]]:
    """(tokenizer, loss name, None), or (tokenizer or None, None, why its batches can carry no loss)."""
    import transformers as tf

    found = next((d for d in _hf_dirs(source) if (d / "tokenizer_config.json").is_file()), None)
    tokenizer = tf.AutoTokenizer.from_pretrained(str(found)) if found is not None else None
    name = type(model).__name__
    loss = next((loss for ending, loss in _HF_LOSSES.items() if name.endswith(ending)), None)
    if loss is None:
        return tokenizer, None, (f"{name} computes no loss from transcripts (a *ForCTC or *ForConditionalGeneration "
                                 f"does)")
    if tokenizer is None:
        where = " or ".join(str(d) for d in _hf_dirs(source))
        return None, None, f"no tokenizer (tokenizer_config.json) in {where} to turn transcripts into labels"
    return tokenizer, loss, None


def _ctc_decode(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """Greedy CTC token ids (repeats collapsed, blanks dropped) -> normalised text, through an HF CTC tokenizer."""

    def decode(ids: Sequence[int]) -> str:
        return normalize_text(tokenizer.decode(list(ids), group_tokens=False))  # grouping again would merge "ll"

    return decode


@register
class HFFamily(ModelFamily):
    """Hugging Face models and peft adapters over them (see the module docstring)."""

    kind = "hf"

    def load(self, label: str, source: ModelSource, device: str, eager_attention: bool) -> LoadedModel:
        kwargs = {"attn_implementation": "eager"} if eager_attention else {}  # only eager attention returns its maps
        model = _hf_model(label, source, **kwargs).to(device)
        access = HFAccess(model)
        extractor = _hf_feature_extractor(source, model.config)
        tokenizer, loss_name, no_loss = _hf_tokenizer(source, model)
        fs = int(extractor.sampling_rate)
        # the decoder prepends its start token to the labels itself (shift_tokens_right)
        start = model.config.decoder_start_token_id if model.config.is_encoder_decoder else None

        def labels(text: str) -> torch.Tensor:
            ids = tokenizer(text).input_ids
            return torch.tensor([ids[1:] if ids and ids[0] == start else ids], device=device)

        def batch(utts: list[Utterance], audio: list[np.ndarray]) -> Batch:
            if len(utts) != 1:
                raise ValueError("HF models are run one utterance at a time")  # no padding: no attention mask needed
            features = extractor(audio[0], sampling_rate=fs, return_tensors="pt")
            inputs = {k: v.to(device) for k, v in features.items() if k in ("input_values", "input_features")}
            told = len(audio[0])
            if "input_features" in inputs:  # Whisper pads every input to its 30 s window
                told = max(told, int(extractor.n_samples))
            out = Batch(utts, (), dict(inputs), [utts[0].real_samples(len(audio[0]))], [told])
            if eager_attention:
                out.kwargs["output_attentions"] = True
            if utts[0].ctc_text is not None:
                out.refs = [utts[0].ref]
                if loss_name is not None:
                    out.loss_inputs = {**inputs, "labels": labels(utts[0].ctc_text)}
            return out

        ctc = is_hf_ctc(model)
        blank = int(model.config.pad_token_id or 0) if ctc else 0  # HF CTC's blank is its pad token
        decode = _ctc_decode(tokenizer) if ctc and tokenizer is not None else None
        return LoadedModel(label, source, model, access, fs, batch, decode, blank=blank, max_batch=1,
                           loss_name=loss_name, no_loss=no_loss,
                           find_adapters=lora_layers if source.adapter is not None else None)

    def ctc_reason(self, m: LoadedModel) -> Optional[str]:
        if is_hf_ctc(m.model):
            return None
        # it names the head it looks for, so it is the lens's reason as it is (``lens_reason``)
        return (f"{type(m.model).__name__} has no CTC head: the lens reads the lm_head of Hugging Face *ForCTC models "
                f"(Wav2Vec2ForCTC, HubertForCTC)")

    def ctc_lens(self, m: LoadedModel, capture: Capture, decode: Optional[Callable[[list[int]], str]],
                 refs: Optional[Sequence[str]]) -> LensResult:
        # the shared pass ran the whole *ForCTC model: its layers are all the lens needs
        return hf_ctc_lens(m.model, capture, blank=m.blank, decode=decode, refs=refs)

    def attention_reason(self, m: LoadedModel) -> Optional[str]:
        return None

    def attention_maps(self, m: LoadedModel, capture: Capture) -> list[torch.Tensor]:
        return list(capture.output.attentions)  # an eager-attention forward, asked for them (output_attentions)

    def adapters_reason(self, m: LoadedModel) -> Optional[str]:
        if m.source.adapter is None:
            return "the HF model has no adapter: name a peft adapter dir (ADAPTER_DIR or ADAPTER_DIR@BASE_DIR)"
        if not lora_bottlenecks(m.model):
            return "the peft adapter has no linear LoRA layers (the energy reads lora_A of peft's lora.Linear)"
        return None

    def gradient_loss_reason(self, m: LoadedModel) -> Optional[str]:
        return None if m.loss_name else f"no loss to take gradients of: {m.no_loss}"

    def adapter_bottlenecks(self, model: nn.Module) -> dict[str, Bottleneck]:
        return lora_bottlenecks(model)

    def untrained_adapters(self, model: nn.Module) -> ContextManager[nn.Module]:
        return untrained_lora(model)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The model's own loss from the labels in the batch."""
        return model(**batch.loss_inputs).loss  # an HF ModelOutput

    def loss_name(self, m: LoadedModel, batches: Sequence[Batch]) -> str:
        return m.loss_name

    def ablation_reason(self, m: LoadedModel) -> Optional[str]:
        return "HF models: the ablation erases ESPnet encoder blocks and scores with the ESPnet CTC loss"

    def decoder_reason(self, m: LoadedModel) -> Optional[str]:
        return "HF models: the decoder analyses know ESPnet attention decoders only"
