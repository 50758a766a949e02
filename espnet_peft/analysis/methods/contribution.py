"""Layer contribution (``analysis.contribution``): per layer the update size ``||h_out - h_in|| / ||h_in||``
and its direction ``cos(u, h_in)``, over the real-audio frames of the shared pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from espnet_peft.analysis.contribution import layer_contribution
from espnet_peft.analysis.forward_pass import Forward
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.methods.base import Analysis, Run, WeightedMeans, per_model
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.model_access import Capture
from espnet_peft.analysis.utterances import Batch


@register
class LayerContribution(Analysis):
    name = "contribution"
    description = "per-layer update size ||h_out - h_in|| / ||h_in|| and direction cos(u, h_in)"
    part: ClassVar[str] = "encoder"  # the layers it reads, for figure titles

    def __init__(self) -> None:
        self.means = WeightedMeans()

    def add(self, model: LoadedModel, batch: Batch, forward: Forward) -> None:
        c = forward.capture
        contrib = layer_contribution(Capture(c.hidden_states, c.layer_inputs, c.output, forward.mask))
        self.means.add(f"{model.label}.update_ratio", contrib.update_ratio, sum(forward.frames))
        self.means.add(f"{model.label}.cosine", contrib.cosine, sum(forward.frames))

    def finish(self, run: Run) -> dict[str, Any]:
        return {self.name: {label: {"update_ratio": self.means.mean(f"{label}.update_ratio"),
                                    "cosine": self.means.mean(f"{label}.cosine")} for label in run.models}}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import layer_curves

        section = results[self.name]
        return {self.name: layer_curves(out_dir / f"{self.name}.png",
                                        f"{self.part} layer contribution (update u = h_out - h_in)",
                                        [("||u|| / ||h_in||", per_model(section, "update_ratio")),
                                         ("cos(u, h_in)", per_model(section, "cosine"))])}
