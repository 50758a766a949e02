"""Adapter SVD energy (``analysis.adapter_energy``): the k90 of every adapter's bottleneck activations and of their
gradients under the training loss (the CTC loss when the data lacks the model's full text inputs), next to the same
model with freshly initialised adapters. Adapted ESPnet models with transcripts: ASR ones (Whisper included: its
loss is the decoder's alone), S2T ones with a CTC head; Hugging Face models with a peft adapter (the ``lora_A``
output of every LoRA layer, ``hf_peft``), under the model's own loss from the transcripts (``*ForCTC``: CTC loss;
Whisper: decoder loss), which needs the model's tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from espnet_peft.analysis.adapter_energy import adapter_bottlenecks, adapter_energy, compare_energy, untrained_adapters
from espnet_peft.analysis.hf_peft import lora_bottlenecks, untrained_lora
from espnet_peft.analysis.methods.base import Analysis, Needs, Run
from espnet_peft.analysis.methods.lens import ctc_reason
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.sources import Batch, LoadedModel
from espnet_peft.injection import adapter_layers


def _loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The training loss when the batch has every input of the model's forward (HF: its own loss from the labels),
    else the CTC loss."""
    if batch.loss_inputs is not None:
        output = model(**batch.loss_inputs)
        if hasattr(output, "loss"):  # an HF ModelOutput
            return output.loss
        return output[0].reshape(())  # ESPnet returns it as [1] (force_gatherable)
    encoded, encoded_lengths = model.encode(batch.speech, batch.lengths)
    return model.ctc(encoded, encoded_lengths, batch.ctc_text, batch.ctc_text_lengths)


def spread_batches(batches: Sequence[Batch], max_utts: int) -> list[Batch]:
    """Whole batches spread evenly over ``batches``, as few as hold ``max_utts`` utterances (all when they do not)."""
    per_batch = max(1, max(len(b.utts) for b in batches))
    count = min(len(batches), max(1, -(-max_utts // per_batch)))
    if count == len(batches):
        return list(batches)
    return [batches[round(i * (len(batches) - 1) / max(1, count - 1))] for i in range(count)]


@register
class AdapterEnergy(Analysis):
    name = "energy"
    description = "SVD energy (k90) of the adapters' bottleneck activations and gradients (ESPnet, HF peft LoRA)"
    needs = Needs(batches=True)

    def skip_reason(self, model: LoadedModel, has_refs: bool) -> Optional[str]:
        if model.is_espnet:
            if not adapter_layers(model.model):
                return "the model has no espnet_peft adapters"
            if not has_refs:
                return "no loss to take gradients of: the data has no transcripts (text / text.ctc)"
            no_ctc = ctc_reason(model)
            if no_ctc is not None and model.source.task != "asr":  # ASR batches with transcripts are training batches
                return (f"no loss to take gradients of: {no_ctc}, and S2T batches fall back on the CTC loss when the "
                        f"data lacks the prompted text of the training loss")
            return None
        if model.source.adapter is None:
            return "the HF model has no adapter: name a peft adapter dir (ADAPTER_DIR or ADAPTER_DIR@BASE_DIR)"
        if not lora_bottlenecks(model.model):
            return "the peft adapter has no linear LoRA layers (the energy reads lora_A of peft's lora.Linear)"
        if not has_refs:
            return "no loss to take gradients of: the data has no transcripts (text / text.ctc)"
        return None if model.loss_name else f"no loss to take gradients of: {model.no_loss}"

    @staticmethod
    def _energy(m: LoadedModel, batches: Sequence[Batch]) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Adapter energy of the trained model and of the same model with fresh adapters, side by side."""
        bottlenecks, untrained = ((adapter_bottlenecks, untrained_adapters) if m.is_espnet
                                  else (lora_bottlenecks, untrained_lora))
        trained = adapter_energy(m.model, _loss, batches, bottlenecks(m.model))
        with untrained(m.model) as fresh:  # ESPnet swaps the layers: find the bottlenecks again
            fresh_energy = adapter_energy(fresh, _loss, batches, bottlenecks(fresh))
        full = all(b.loss_inputs is not None for b in batches)
        loss = m.loss_name if not m.is_espnet else ("training loss" if full else "CTC loss")
        return {name: s.to_dict() for name, s in trained.items()}, compare_energy(trained, fresh_energy), loss

    def finish(self, run: Run) -> dict[str, Any]:
        energy, versus, losses = {}, {}, {}
        for label, m in run.models.items():
            batches = spread_batches(run.batches[label], run.energy_max_utts)
            energy[label], versus[label], losses[label] = self._energy(m, batches)
        return {"energy": energy, "energy_vs_untrained": versus, "energy_loss": losses}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import plot_energy

        return {f"energy_{label}": plot_energy(energy, out_dir / f"energy_{label}.png",
                                               f"adapter SVD energy, model {label}")
                for label, energy in results[self.name].items() if energy}
