"""Attention similarity (``analysis.attention``): ``1 - Jensen-Shannon`` between the self-attention maps of every
pair of heads, best-matched per head and averaged into a layer x layer matrix, within each model and, when their
frames line up, between them. Head-pair sums are weighted by valid queries, so the result is that of all queries at
once."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from espnet_peft.analysis.attention import head_similarity
from espnet_peft.analysis.families import family_of
from espnet_peft.analysis.forward_pass import Forward
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.methods.base import Analysis, Needs, Run
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.utterances import Batch


class _HeadSums:
    """Head-pair similarity ``1 - mean_q JS`` per layer pair, summed over batches weighted by valid queries."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, int, int], torch.Tensor] = {}
        self.queries: dict[str, float] = defaultdict(float)

    def add(self, name: str, maps_a: list[torch.Tensor], maps_b: list[torch.Tensor], query_mask: torch.Tensor,
            key_mask: torch.Tensor, intra: bool) -> None:
        weight = float(query_mask.sum())
        for i, x in enumerate(maps_a):
            for j, y in enumerate(maps_b):
                if intra and j < i:
                    continue
                heads = head_similarity(x, y, query_mask.cpu(), key_mask.cpu()) * weight
                self._add((name, i, j), heads)
                if intra and j > i:
                    self._add((name, j, i), heads.T)
        self.queries[name] += weight

    def _add(self, key: tuple[str, int, int], value: torch.Tensor) -> None:
        self.sums[key] = value if key not in self.sums else self.sums[key] + value

    def matrix(self, name: str) -> Optional[list[list[float]]]:
        keys = [k for k in self.sums if k[0] == name]
        if not keys:
            return None
        rows, cols = max(k[1] for k in keys) + 1, max(k[2] for k in keys) + 1
        return [[float((self.sums[(name, i, j)] / self.queries[name]).max(dim=1).values.mean()) for j in range(cols)]
                for i in range(rows)]


@register
class AttentionSimilarity(Analysis):
    name = "attention"
    description = "Jensen-Shannon similarity of self-attention maps, within and across the models"
    needs = Needs(attention=True)

    def __init__(self) -> None:
        self.heads = _HeadSums()
        self.inter_reason: Optional[str] = None

    def skip_reason(self, model: LoadedModel, has_refs: bool) -> Optional[str]:
        return family_of(model.source).attention_reason(model)

    def add(self, model: LoadedModel, batch: Batch, forward: Forward) -> None:
        self.heads.add(model.label, forward.attention, forward.attention, forward.mask, forward.key_mask, intra=True)

    def add_models(self, forwards: Mapping[str, Forward]) -> None:
        if len(forwards) != 2:
            return
        pa, pb = forwards.values()
        if pa.mask.shape != pb.mask.shape or not torch.equal(pa.mask.cpu(), pb.mask.cpu()):
            self.inter_reason = "the models' frames do not line up (different frame rates)"
        elif self.inter_reason is None:
            self.heads.add("AB", pa.attention, pb.attention, pa.mask, pa.key_mask & pb.key_mask, intra=False)

    def finish(self, run: Run) -> dict[str, Any]:
        if self.inter_reason and len(run.models) == 2:
            run.skipped.setdefault(self.name, {})["AB"] = self.inter_reason
        return {self.name: {"intra": {label: self.heads.matrix(label) for label in run.models},
                            "inter": None if self.inter_reason else self.heads.matrix("AB")}}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import heatmap

        section, written = results[self.name], {}
        for label, matrix in section.get("intra", {}).items():
            written[f"attention_{label}"] = heatmap(matrix, out_dir / f"attention_{label}.png",
                                                    f"attention similarity (1 - JS) within {label}",
                                                    f"{label} layer", f"{label} layer")
        if section.get("inter") is not None:
            written["attention_AB"] = heatmap(section["inter"], out_dir / "attention_AB.png",
                                              "attention similarity (1 - JS), A x B", "A layer", "B layer")
        return written
