"""CKA between layers (Kornblith et al. 2019): within each model, model A x model B, and the drift curve.

``cka`` is linear CKA; ``cka_debiased`` uses the unbiased HSIC (less biased upwards at few frames per dimension);
``cka_rbf`` an RBF kernel (median-distance bandwidth; it holds an ``n x n`` Gram per layer, so lower ``--max_frames``
for wide, deep models); ``cka_minibatch`` the debiased minibatch estimate (Nguyen et al. 2021) over random
minibatches of the kept frames, in bounded memory. All of them compare the same paired frames (``forward_pass.Frames``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch

from espnet_peft.analysis.cka import MinibatchCKA, cka_matrix
from espnet_peft.analysis.methods.base import Analysis, Needs, Run
from espnet_peft.analysis.methods.registry import register


@register
class LinearCKA(Analysis):
    name = "cka"
    description = "linear CKA layer x layer within each model, A x B, and the drift curve CKA(A_l, B_l)"
    needs = Needs(frames=True)
    method: ClassVar[str] = "linear"  # cka_matrix's method

    def matrix(self, run: Run, a: list[torch.Tensor], b: list[torch.Tensor] | None) -> torch.Tensor:
        return cka_matrix(a, b, method=self.method, progress=run.progress)

    def finish(self, run: Run) -> dict[str, Any]:
        labels = list(run.models)
        feats = {label: run.frames.matrices(label) for label in labels}
        out: dict[str, Any] = {"frames": int(feats[labels[0]][0].shape[0]), "method": self.method,
                               "intra": {label: self.matrix(run, feats[label], None) for label in labels},
                               "inter": None, "drift": None}
        if len(labels) == 2:
            a, b = labels
            out["inter"] = self.matrix(run, feats[a], feats[b])
            if out["inter"].shape[0] == out["inter"].shape[1]:
                out["drift"] = torch.diagonal(out["inter"])
            else:
                run.skipped[f"{self.name}.drift"] = {
                    "AB": "the models have different layer counts: see the A x B matrix instead"}
        return {self.name: out}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import heatmap, plot_drift

        section, kind, written = results[self.name], f"{self.method} CKA", {}
        for label, matrix in section["intra"].items():
            written[f"{self.name}_{label}"] = heatmap(matrix, out_dir / f"{self.name}_{label}.png",
                                                   f"{kind} within model {label}", f"{label} layer", f"{label} layer")
        if section.get("inter") is not None:
            written[f"{self.name}_AB"] = heatmap(section["inter"], out_dir / f"{self.name}_AB.png",
                                              f"{kind}, model A x model B", "A layer", "B layer")
        if section.get("drift") is not None:
            # the linear one keeps the figure name that the recipe report links to
            name = "drift" if self.name == "cka" else f"{self.name}_drift"
            written[name] = plot_drift({"B vs A": section["drift"]}, out_dir / f"{name}.png",
                                       f"drift: {kind} of each layer, A (pretrained) vs B (adapted)")
        return written

    def summary_lines(self, results: Mapping[str, Any]) -> list[str]:
        drift = results[self.name].get("drift")
        if self.name == "cka" or drift is None:
            return []  # the linear drift is in the shared per-layer table
        values = ", ".join("-" if v is None else f"{v:.4f}" for v in drift)
        return [f"- {self.name} ({self.method}) drift per layer: {values}"]


@register
class DebiasedCKA(LinearCKA):
    name = "cka_debiased"
    description = "debiased linear CKA (unbiased HSIC), the same matrices and drift as cka"
    method = "debiased"


@register
class RbfCKA(LinearCKA):
    name = "cka_rbf"
    description = "RBF-kernel CKA (median bandwidth); an n x n Gram per layer: lower --max_frames for big models"
    method = "rbf"


@register
class MinibatchedCKA(LinearCKA):
    name = "cka_minibatch"
    description = "debiased minibatch CKA (Nguyen et al. 2021) over random minibatches of the frames: bounded memory"
    method = "debiased minibatch"
    minibatch: ClassVar[int] = 500  # rows per minibatch: the estimator needs hundreds for a stable estimate

    def finish(self, run: Run) -> dict[str, Any]:
        frames = run.frames.matrices(next(iter(run.models)))[0].shape[0]
        if frames < 4:  # the debiased HSIC of a minibatch needs 4 rows
            run.skipped[self.name] = {label: f"{frames} frames; a minibatch needs at least 4" for label in run.models}
            return {}
        return super().finish(run)

    def matrix(self, run: Run, a: list[torch.Tensor], b: list[torch.Tensor] | None) -> torch.Tensor:
        # minibatches drawn at random over all frames (not runs of one utterance), the same draw for A and B
        order = torch.randperm(a[0].shape[0], generator=torch.Generator().manual_seed(0))
        estimate = MinibatchCKA(kernel="linear")
        for start in range(0, len(order) - 3, self.minibatch):  # each minibatch needs >= 4 rows
            rows = order[start:start + self.minibatch]
            if len(rows) < 4:
                break
            estimate.update([x[rows] for x in a], None if b is None else [y[rows] for y in b])
        return estimate.compute()
