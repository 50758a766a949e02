"""Adapter SVD energy (``analysis.energy``): the k90 of every adapter's bottleneck activations and of their
gradients under the training loss (the CTC loss when the data lacks the model's full text inputs), next to the same
model with freshly initialised adapters. Adapted ESPnet models with transcripts: ASR ones (Whisper included: its
loss is the decoder's alone), S2T ones with a CTC head; Hugging Face models with a peft adapter (the ``lora_A``
output of every LoRA layer, ``hf_peft``), under the model's own loss from the transcripts (``*ForCTC``: CTC loss;
Whisper: decoder loss), which needs the model's tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from espnet_peft.analysis.energy import adapter_energy, compare_energy
from espnet_peft.analysis.families import family_of
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.methods.base import Analysis, Needs, Run
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.utterances import Batch


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
        family = family_of(model.source)
        reason = family.adapters_reason(model)
        if reason is not None:
            return reason
        if not has_refs:
            return "no loss to take gradients of: the data has no transcripts (text / text.ctc)"
        return family.gradient_loss_reason(model)

    @staticmethod
    def _energy(m: LoadedModel, batches: Sequence[Batch]) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Adapter energy of the trained model and of the same model with fresh adapters, side by side."""
        family = family_of(m.source)
        trained = adapter_energy(m.model, family.loss, batches, family.adapter_bottlenecks(m.model))
        with family.untrained_adapters(m.model) as fresh:  # ESPnet swaps the layers: find the bottlenecks again
            fresh_energy = adapter_energy(fresh, family.loss, batches, family.adapter_bottlenecks(fresh))
        loss = family.loss_name(m, batches)
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
