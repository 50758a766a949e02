"""Adapter SVD energy (``analysis.adapter_energy``): the k90 of every adapter's bottleneck activations and of their
gradients under the training loss (the CTC loss when the data lacks the model's full text inputs), next to the same
model with freshly initialised adapters. Adapted ESPnet models, with transcripts and a CTC head."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from espnet_peft.analysis.adapter_energy import adapter_energy, compare_energy, untrained_adapters
from espnet_peft.analysis.methods.base import Analysis, Needs, Run
from espnet_peft.analysis.methods.lens import ctc_reason
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.sources import Batch, LoadedModel
from espnet_peft.injection import adapter_layers


def _loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The training loss when the batch has every input of the model's forward, else the CTC loss."""
    if batch.loss_inputs is not None:
        return model(**batch.loss_inputs)[0].reshape(())  # ESPnet returns it as [1] (force_gatherable)
    encoded, encoded_lengths = model.encode(batch.speech, batch.lengths)
    return model.ctc(encoded, encoded_lengths, batch.ctc_text, batch.ctc_text_lengths)


@register
class AdapterEnergy(Analysis):
    name = "energy"
    description = "SVD energy (k90) of the adapters' bottleneck activations and gradients (adapted ESPnet models)"
    needs = Needs(batches=True)

    def skip_reason(self, model: LoadedModel, has_refs: bool) -> Optional[str]:
        if not model.is_espnet or not adapter_layers(model.model):
            return "the model has no espnet_peft adapters"
        if ctc_reason(model) is not None or not has_refs:
            return "no loss to take gradients of (needs transcripts and a CTC head)"
        return None

    @staticmethod
    def _energy(m: LoadedModel, batches: Sequence[Batch]) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Adapter energy of the trained model and of the same model with fresh adapters, side by side."""
        trained = adapter_energy(m.model, _loss, batches)
        with untrained_adapters(m.model) as fresh:
            untrained = adapter_energy(fresh, _loss, batches)
        loss = "training loss" if all(b.loss_inputs is not None for b in batches) else "CTC loss"
        return {name: s.to_dict() for name, s in trained.items()}, compare_energy(trained, untrained), loss

    def finish(self, run: Run) -> dict[str, Any]:
        energy, versus, losses = {}, {}, {}
        for label, m in run.models.items():
            energy[label], versus[label], losses[label] = self._energy(m, run.batches[label])
        return {"energy": energy, "energy_vs_untrained": versus, "energy_loss": losses}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import plot_energy

        return {f"energy_{label}": plot_energy(energy, out_dir / f"energy_{label}.png",
                                               f"adapter SVD energy, model {label}")
                for label, energy in results[self.name].items() if energy}
