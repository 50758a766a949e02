"""The CTC logit lens (``analysis.lens``): the CTC head on every layer, per-layer greedy CER and KL to the
final layer. ESPnet models with a CTC head, and Hugging Face ``*ForCTC`` models (their ``lm_head``, read from the
shared pass); the CER needs transcripts (and, for HF, the model's tokenizer). Models without a CTC head (ESPnet's
Whisper, trained with ctc_weight 0) are skipped with that reason. Both read the run's shared pass, which sees the
input as the model does (S2T: padding included), so the lens costs no forward pass of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from espnet_peft.analysis.families import family_of
from espnet_peft.analysis.forward_pass import Forward
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.methods.base import Analysis, Run, WeightedMeans, per_model
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.utterances import Batch


def ref_chars(refs: Sequence[str]) -> int:
    # the CER denominator: reference characters, spaces excluded (see analysis/_cer.py)
    return sum(len(r.replace(" ", "")) for r in refs)


@register
class LogitLens(Analysis):
    name = "lens"
    description = "CTC logit lens: per-layer greedy CER and KL to the final layer (ESPnet CTC, HF *ForCTC)"

    def __init__(self) -> None:
        self.means = WeightedMeans()

    def skip_reason(self, model: LoadedModel, has_refs: bool) -> Optional[str]:
        return family_of(model.source).lens_reason(model)

    def add(self, model: LoadedModel, batch: Batch, forward: Forward) -> None:
        with_cer = batch.refs is not None and model.decode is not None and ref_chars(batch.refs) > 0
        decode, refs = (model.decode, batch.refs) if with_cer else (None, None)
        lens = family_of(model.source).ctc_lens(model, forward.capture, decode, refs)
        self.means.add(f"{model.label}.kl", lens.kl, float(lens.lengths.sum()))
        if lens.cer is not None:
            self.means.add(f"{model.label}.cer", [100.0 * c for c in lens.cer], ref_chars(batch.refs))

    def finish(self, run: Run) -> dict[str, Any]:
        return {self.name: {label: {"layers": m.access.layers(), "kl": self.means.mean(f"{label}.kl"),
                                    "cer": self.means.mean(f"{label}.cer") if f"{label}.cer" in self.means.sums
                                    else None}
                            for label, m in run.models.items()}}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import layer_curves

        lens = results[self.name]
        panels = [("greedy CTC CER (%)", per_model(lens, "cer")), ("KL(p_final || p_layer) (nats)", per_model(lens, "kl"))]
        return {self.name: layer_curves(out_dir / "lens.png", "logit lens (CTC head on every layer)",
                                        [(name, curves) for name, curves in panels if curves])}
