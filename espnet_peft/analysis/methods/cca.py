"""SVCCA (Raghu et al. 2017) and PWCCA (Morcos et al. 2018) between layer l of model A and layer l of model B.

On the paired frames of ``forward_pass.Frames``; one value per layer (a curve like CKA's drift), plus how many
directions of each side entered CCA. Needs two models with as many layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Optional

from tqdm import tqdm

from espnet_peft.analysis.cca import CCASimilarity, pwcca, svcca
from espnet_peft.analysis.methods.base import Analysis, Needs, Run, paired_layers
from espnet_peft.analysis.methods.registry import register


@register
class SVCCA(Analysis):
    name = "svcca"
    description = "SVCCA of layer l of A vs layer l of B (PCA to 99% variance, then mean canonical correlation)"
    needs = Needs(frames=True)
    pairwise = True
    index: ClassVar[Callable[..., CCASimilarity]] = staticmethod(svcca)

    def finish(self, run: Run) -> dict[str, Any]:
        layers = paired_layers(self, run)
        if layers is None:
            return {}
        values: list[Optional[float]] = []
        dims = []
        for x, y in tqdm(layers, desc=self.name, disable=not run.progress, leave=False):
            result = self.index(x, y)
            values.append(result.value)
            dims.append([result.dims_x, result.dims_y])
        return {self.name: {"frames": int(layers[0][0].shape[0]), "similarity": values, "dims": dims}}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import layer_curves

        path = out_dir / f"{self.name}.png"
        return {self.name: layer_curves(path, f"{self.name.upper()}: layer l of A vs layer l of B",
                                        [(self.name.upper(), {"B vs A": results[self.name]["similarity"]})])}

    def summary_lines(self, results: Mapping[str, Any]) -> list[str]:
        values = ", ".join("-" if v is None else f"{v:.4f}" for v in results[self.name]["similarity"])
        return [f"- {self.name.upper()} per layer (A_l vs B_l): {values}"]


@register
class PWCCA(SVCCA):
    name = "pwcca"
    description = "PWCCA of layer l of A vs layer l of B (canonical correlations weighted by projection)"
    index = staticmethod(pwcca)
