"""Branch contribution (``analysis.branches``): per block, the size of each branch's update (attention,
convolution / cgMLP, feed-forward, ...) relative to the block input. ESPnet Transformer / Conformer / E-Branchformer
blocks, ESPnet's Whisper (openai-whisper) blocks, Hugging Face Whisper / Wav2Vec2 / HuBERT encoder layers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

from espnet_peft.analysis.branches import block_branches, mean_ratio
from espnet_peft.analysis.forward_pass import Forward
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.methods.base import Analysis, Needs, Run, WeightedMeans
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.utterances import Batch


@register
class BranchContribution(Analysis):
    name = "branches"
    description = "per-branch update sizes inside each block (ESPnet Transformer / Conformer / E-Branchformer, HF)"
    needs = Needs(branches=True)
    part: ClassVar[str] = "encoder"  # the blocks it reads, for figure titles

    def __init__(self) -> None:
        self.means = WeightedMeans()

    def skip_reason(self, model: LoadedModel, has_refs: bool) -> Optional[str]:
        try:
            block_branches(model.access.layer_modules()[0])
        except TypeError as error:
            return str(error)
        return None

    def add(self, model: LoadedModel, batch: Batch, forward: Forward) -> None:
        updates = forward.branch_updates
        for name in dict.fromkeys(n for per_block in updates for n in per_block):
            values = [mean_ratio(per_block[name], x, forward.mask) if name in per_block else math.nan
                      for per_block, x in zip(updates, forward.capture.layer_inputs)]
            self.means.add(f"{model.label}.{name}", values, sum(forward.frames))

    def layer_names(self, model: LoadedModel) -> list[str]:
        return model.access.layers()

    def finish(self, run: Run) -> dict[str, Any]:
        return {self.name: {label: {"layers": self.layer_names(m),
                                    "branches": {k.split(".", 1)[1]: self.means.mean(k) for k in self.means.sums
                                                 if k.startswith(f"{label}.")}}
                            for label, m in run.models.items()}}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import layer_curves

        section = results[self.name]
        panels = [(f"{label}: branch output / input norm", dict(section[label]["branches"]))
                  for label in ("A", "B") if label in section]
        return {self.name: layer_curves(out_dir / f"{self.name}.png", f"{self.part} branch contribution per layer",
                                        panels)}
