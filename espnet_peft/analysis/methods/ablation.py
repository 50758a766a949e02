"""Layer ablation (``analysis.ablation``): CER and CTC loss when a layer (single) or layers 0..l (cumulative) are
erased (output := input); 2L more forward passes over the kept batches. ESPnet CTC models, with transcripts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from espnet_peft.analysis.ablation import MODES, layer_ablation
from espnet_peft.analysis.families import family_of
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.methods.base import Analysis, Needs, Run
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.utterances import Batch


def _concat(batches: Sequence[Batch], field: str, pad: float) -> torch.Tensor:
    tensors = [getattr(b, field) for b in batches]
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad) for t in tensors])


@register
class LayerAblation(Analysis):
    name = "ablation"
    description = "CER and CTC loss when a layer (or layers 0..l) is erased (output := input); 2L more passes"
    needs = Needs(batches=True)

    def skip_reason(self, model: LoadedModel, has_refs: bool) -> Optional[str]:
        family = family_of(model.source)
        reason = family.ablation_reason(model)
        if reason is not None:
            return reason
        reason = family.ctc_reason(model)
        if reason is not None:
            return f"{reason}: the ablation scores each erased layer with the CTC loss and greedy CTC CER"
        return None if has_refs else "the data has no transcripts (text / text.ctc)"

    def _ablate(self, m: LoadedModel, batches: Sequence[Batch], batch_size: int) -> dict[str, Any]:
        speech, lengths = _concat(batches, "speech", 0.0), torch.cat([b.lengths for b in batches])
        text, text_lengths = _concat(batches, "ctc_text", -1), torch.cat([b.ctc_text_lengths for b in batches])
        refs = [r for b in batches for r in b.refs]
        out = {}
        for mode in MODES:
            result = layer_ablation(m.model, speech, lengths, text, text_lengths, m.decode, refs, mode=mode,
                                    batch_size=batch_size).to_dict()
            # CER in percent, like the lens and the report
            result["baseline_cer"] *= 100.0
            result["cer"] = [100.0 * c for c in result["cer"]]
            out[mode] = result
        return out

    def finish(self, run: Run) -> dict[str, Any]:
        return {self.name: {label: self._ablate(m, run.batches[label], run.batch_size)
                            for label, m in run.models.items()}}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import layer_curves

        ablation, panels = results[self.name], []
        for mode in ("single", "cumulative"):
            curves = {label: [c - ablation[label][mode]["baseline_cer"] for c in ablation[label][mode]["cer"]]
                      for label in ("A", "B") if label in ablation and mode in ablation[label]}
            panels.append((f"{mode} erasure: CER increase (points)", curves))
        return {self.name: layer_curves(out_dir / "ablation.png", "layer ablation (output := input)", panels)}
