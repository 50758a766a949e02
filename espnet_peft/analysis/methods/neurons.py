"""Neuron-level similarity of layer l of model A and layer l of model B (Wu et al. 2020 style).

Per layer: the mean MaxCorr of A's neurons in B and of B's neurons in A (best single-neuron ``|r|``), and the mean
LinReg ``R^2`` of each side's neurons predicted from all neurons of the other. MinCorr (``analysis.neurons.mincorr``)
needs three or more models and is not part of a two-model run. On the paired frames of ``forward_pass.Frames``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

from espnet_peft.analysis.methods.base import Analysis, Needs, Run, paired_layers
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.neurons import linreg, maxcorr

CURVES = {"maxcorr_A_in_B": "MaxCorr, A's neurons in B", "maxcorr_B_in_A": "MaxCorr, B's neurons in A",
          "linreg_B_from_A": "LinReg R^2, B's neurons from A", "linreg_A_from_B": "LinReg R^2, A's neurons from B"}


@register
class NeuronSimilarity(Analysis):
    name = "neurons"
    description = "neuron MaxCorr and LinReg R^2 of layer l of A vs layer l of B, both directions"
    needs = Needs(frames=True)
    pairwise = True

    def finish(self, run: Run) -> dict[str, Any]:
        layers = paired_layers(self, run)
        if layers is None:
            return {}
        curves: dict[str, list[float]] = {key: [] for key in CURVES}
        for x, y in tqdm(layers, desc=self.name, disable=not run.progress, leave=False):
            curves["maxcorr_A_in_B"].append(maxcorr(x, y, progress=False).mean)
            curves["maxcorr_B_in_A"].append(maxcorr(y, x, progress=False).mean)
            curves["linreg_B_from_A"].append(linreg(x, y, progress=False).mean)
            curves["linreg_A_from_B"].append(linreg(y, x, progress=False).mean)
        return {self.name: {"frames": int(layers[0][0].shape[0]), **curves}}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import layer_curves

        section = results[self.name]
        panels = [("mean MaxCorr", {CURVES[k]: section[k] for k in ("maxcorr_A_in_B", "maxcorr_B_in_A")}),
                  ("mean LinReg R^2", {CURVES[k]: section[k] for k in ("linreg_B_from_A", "linreg_A_from_B")})]
        return {self.name: layer_curves(out_dir / "neurons.png", "neuron similarity, layer l of A vs B", panels)}

    def summary_lines(self, results: Mapping[str, Any]) -> list[str]:
        section = results[self.name]
        return [f"- {label} per layer: " + ", ".join("-" if v is None else f"{v:.3f}" for v in section[key])
                for key, label in CURVES.items()]
