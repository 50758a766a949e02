"""The ESPnet model family: ASR and S2T (OWSM) models of ESPnet experiments (``ModelSource`` kind ``"espnet"``).

Loaded through the model's task (the plugin's, so adapter-only checkpoints find their base) with its own
inference-side preprocessing; read through ``EspnetEncoderAccess.for_asr_model`` (``model.encode`` on raw audio). The
CTC lens, the ablation and the loss fallback use its ``ctc`` head, the decoder analyses its attention decoder, the
attention analysis the maps its ``MultiHeadedAttention`` modules keep, and the adapter energy the ``bottleneck`` probe
of every espnet_peft adapter.

ESPnet's Whisper ASR models (``encoder: whisper``, ``decoder: whisper``) are ESPnet models here: their openai-whisper
blocks are found by ``model_access.stack_blocks`` and laid out by ``branches.block_branches``; they have no CTC head
(``ctc_reason`` says so) and are trained on the decoder loss alone, which their full training batches give.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ContextManager, Optional

import numpy as np
import torch
from torch import nn

from espnet_peft.analysis import energy
from espnet_peft.analysis.decoder import no_decoder_reason
from espnet_peft.analysis.energy import Bottleneck
from espnet_peft.analysis.errors import AnalysisInputError
from espnet_peft.analysis.families.base import ModelFamily
from espnet_peft.analysis.families.registry import register
from espnet_peft.analysis.lens import LensResult, espnet_ctc_lens
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.model_access import Capture, EspnetEncoderAccess
from espnet_peft.analysis.resolve import ModelSource
from espnet_peft.analysis.utterances import LEADING_TAGS, Batch, Utterance
from espnet_peft.compat import legacy_nets
from espnet_peft.injection import adapter_layers
from espnet_peft.utils.text_norm import normalize_text


def _espnet_inputs(utt: Utterance, task: str, na_symbol: str) -> tuple[dict[str, str], bool]:
    """The texts the model's preprocessor should tokenize for ``utt``, and whether they make a full training batch.

    ASR: ``text``. S2T: ``text_ctc`` always (the CTC target), plus ``text`` (with its OWSM prompt tokens) and
    ``text_prev`` (``<na>`` when the data has none, as the recipe writes it) when the data has a prompted ``text``.
    """
    plain = utt.ctc_text
    if plain is None:
        return {}, False
    if task == "asr":
        return {"text": plain}, True
    texts = {"text_ctc": plain}
    prompted = utt.texts.get("text", "")
    if LEADING_TAGS.match(prompted):
        texts.update(text=prompted, text_prev=utt.texts.get("text.prev", na_symbol))
        return texts, True
    return texts, False


def attention_modules(m: LoadedModel) -> list[nn.Module]:
    """The self-attention module of each ESPnet block (its ``attn`` holds the last forward's maps)."""
    MultiHeadedAttention = legacy_nets("pytorch_backend.transformer.attention").MultiHeadedAttention

    modules = []
    for block in m.access.layer_modules():
        found = next((x for x in block.modules() if isinstance(x, MultiHeadedAttention)), None)
        if found is None:
            raise TypeError(f"{type(block).__name__} has no ESPnet MultiHeadedAttention, whose kept maps (attn) are "
                            f"what the attention analysis reads")
        modules.append(found)
    return modules


@register
class EspnetFamily(ModelFamily):
    """ESPnet ASR / S2T models (see the module docstring)."""

    kind = "espnet"

    def load(self, label: str, source: ModelSource, device: str, eager_attention: bool) -> LoadedModel:
        from espnet2.train.collate_fn import common_collate_fn

        from espnet_peft.export import task_class

        task = task_class(source.task)
        try:
            model, args = task.build_model_from_file(source.config, source.model_file, device)
        except FileNotFoundError as error:  # e.g. the init_param base of an adapter-only checkpoint, or the bpemodel
            raise AnalysisInputError(f"model {label} ({source.model_file}): {error}; run from the dir that the "
                                     f"config's relative paths start at (the recipe dir)") from None
        model.eval()
        # The model's own inference-side preprocessing (S2T: pad/trim to speech_length; tokenizer, text cleaner)
        preprocess = task.build_preprocess_fn(args, train=False)
        if preprocess is None:
            raise AnalysisInputError(f"{source.config}: use_preprocessor is false; the analysis needs the model's "
                                     f"preprocessor (tokenizer, S2T padding): set use_preprocessor: true")
        conf = getattr(args, "preprocessor_conf", None) or {}
        fs = int(conf.get("fs", 16000))
        fixed = int(fs * conf["speech_length"]) if source.task == "s2t" else None
        ctc_key = "text_ctc" if source.task == "s2t" else "text"

        def decode(ids: Sequence[int]) -> str:
            tokens = preprocess.token_id_converter.ids2tokens(list(ids))
            return normalize_text(preprocess.tokenizer.tokens2text(tokens))

        def batch(utts: list[Utterance], audio: list[np.ndarray]) -> Batch:
            inputs = [_espnet_inputs(u, source.task, conf.get("na_symbol", "<na>")) for u in utts]
            scored = all(texts for texts, _ in inputs)
            full = scored and all(f for _, f in inputs)
            items = [(u.key, preprocess(u.key, {"speech": a, **(texts if scored else {})}))
                     for u, a, (texts, _) in zip(utts, audio, inputs)]
            _, data = common_collate_fn(items, float_pad_value=0.0, int_pad_value=-1)  # -1: ESPnet's ignore_id
            data = {k: v.to(device) for k, v in data.items()}
            # the S2T preprocessor returns mono audio as [T, 1]; [B, T] is what inference feeds the encoder
            speech = data["speech"].squeeze(-1) if data["speech"].dim() == 3 else data["speech"]
            real = [min(u.real_samples(len(a)), fixed or len(a)) for u, a in zip(utts, audio)]
            out = Batch(utts, (speech, data["speech_lengths"]), {}, real, data["speech_lengths"].tolist(),
                        speech=speech, lengths=data["speech_lengths"])
            if scored:
                out.ctc_text, out.ctc_text_lengths = data[ctc_key], data[f"{ctc_key}_lengths"]
                out.refs = [u.ref for u in utts]
            if full:
                out.loss_inputs = data
            return out

        return LoadedModel(label, source, model, EspnetEncoderAccess.for_asr_model(model), fs, batch, decode,
                           blank=int(getattr(model, "blank_id", 0)))

    def ctc_reason(self, m: LoadedModel) -> Optional[str]:
        if getattr(m.model, "ctc", None) is None:
            whisper = type(getattr(m.model, "encoder", None)).__name__ == "OpenAIWhisperEncoder"
            return "the model has no CTC head (ctc_weight 0" + ("; Whisper is trained without one)" if whisper else ")")
        return None

    def lens_reason(self, m: LoadedModel) -> Optional[str]:
        reason = self.ctc_reason(m)
        if reason is not None:
            reason += ": the lens reads every encoder layer through the CTC head, so there is no lens to read"
        return reason

    def ctc_lens(self, m: LoadedModel, capture: Capture, decode: Optional[Callable[[list[int]], str]],
                 refs: Optional[Sequence[str]]) -> LensResult:
        # the shared pass ran model.encode on the batch's input: its layers are the lens's
        return espnet_ctc_lens(m.model, m.access, capture, blank=m.blank, decode=decode, refs=refs)

    def attention_reason(self, m: LoadedModel) -> Optional[str]:
        try:
            attention_modules(m)
        except TypeError as error:
            return str(error)
        return None

    def attention_maps(self, m: LoadedModel, capture: Capture) -> list[torch.Tensor]:
        return [module.attn.detach() for module in attention_modules(m)]

    def adapters_reason(self, m: LoadedModel) -> Optional[str]:
        return None if adapter_layers(m.model) else "the model has no espnet_peft adapters"

    def gradient_loss_reason(self, m: LoadedModel) -> Optional[str]:
        no_ctc = self.ctc_reason(m)
        if no_ctc is not None and m.source.task != "asr":  # ASR batches with transcripts are training batches
            return (f"no loss to take gradients of: {no_ctc}, and S2T batches fall back on the CTC loss when the "
                    f"data lacks the prompted text of the training loss")
        return None

    def adapter_bottlenecks(self, model: nn.Module) -> dict[str, Bottleneck]:
        return energy.adapter_bottlenecks(model)

    def untrained_adapters(self, model: nn.Module) -> ContextManager[nn.Module]:
        return energy.untrained_adapters(model)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The training loss when the batch has every input of the model's forward, else the CTC loss."""
        if batch.loss_inputs is not None:
            return model(**batch.loss_inputs)[0].reshape(())  # ESPnet returns it as [1] (force_gatherable)
        encoded, encoded_lengths = model.encode(batch.speech, batch.lengths)
        return model.ctc(encoded, encoded_lengths, batch.ctc_text, batch.ctc_text_lengths)

    def loss_name(self, m: LoadedModel, batches: Sequence[Batch]) -> str:
        return "training loss" if all(b.loss_inputs is not None for b in batches) else "CTC loss"

    def ablation_reason(self, m: LoadedModel) -> Optional[str]:
        return None

    def decoder_reason(self, m: LoadedModel) -> Optional[str]:
        return no_decoder_reason(m.model)
