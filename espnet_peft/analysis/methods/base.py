"""The interface every analysis implements, and what the run hands it.

A run (``espnet_peft.analysis.runner.run_analysis``) makes one pass over the utterances in batches. Per batch each
model runs once with hooks (``shared_forward``), and every analysis sees that pass:

* ``skip_reason(model, has_refs)``: why it cannot run on a model (None: it can); the run lists the reason under
  ``skipped`` instead of failing;
* ``needs``: what the shared pass must capture for it (the paired frames of every layer, per-branch updates,
  attention maps) and whether the run keeps the batches for the analysis's own forward passes at the end;
* ``add(model, batch, forward)``: per model and batch, accumulate (exact weighted sums, not means of means);
* ``add_models(forwards)``: per batch, across the models that it runs on;
* ``finish(run)``: its sections of ``analysis.json``;
* ``plot(results, out_dir)``: its figures; ``summary_lines(results)``: its part of ``summary.md``.

Adding an analysis is adding one module to ``espnet_peft/analysis/methods/`` with a registered subclass: the package
imports every module it holds.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Sequence

import torch

from espnet_peft.analysis.forward_pass import Forward, Frames
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.utterances import Batch


@dataclasses.dataclass(frozen=True)
class Needs:
    """What an analysis needs from the shared forward pass."""

    frames: bool = False      # real-audio frames of every layer, paired across the models (``Run.frames``)
    branches: bool = False    # per-branch updates inside each block (``Forward.branch_updates``)
    attention: bool = False   # self-attention maps of every layer (``Forward.attention``)
    batches: bool = False     # the batches, kept for the analysis's own forward passes in ``finish``
    decoder: bool = False     # the attention decoder, teacher-forced on the shared encoder output (``Forward.decoder``)


@dataclasses.dataclass
class Run:
    """What ``finish`` can read: the models it runs on, the shared frames, the kept batches and the settings."""

    models: Mapping[str, LoadedModel]     # the models this analysis runs on, by label (A first)
    all_labels: Sequence[str]              # every model of the run
    frames: Optional[Frames]
    batches: Mapping[str, Sequence[Batch]]
    batch_size: int
    max_frames: int
    energy_max_utts: int                   # utterances the adapter energy's backward passes use at most
    progress: bool
    skipped: dict[str, dict[str, str]]     # analysis -> model label (or "AB") -> reason; finish may add to it


class WeightedMeans:
    """Running weighted means of per-layer lists, keyed by name: exact overall means from per-batch means."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.weights: dict[str, float] = defaultdict(float)

    def add(self, name: str, values: Sequence[Optional[float]], weight: float) -> None:
        v = torch.tensor([math.nan if x is None else x for x in values], dtype=torch.float64) * weight
        self.sums[name] = v if name not in self.sums else self.sums[name] + v
        self.weights[name] += weight

    def mean(self, name: str) -> list[float]:
        return (self.sums[name] / self.weights[name]).tolist()


class Analysis:
    """One analysis: subclass, set the class attributes, override what it uses, and ``@register`` it."""

    name: ClassVar[str]
    description: ClassVar[str]            # one line, for ``analyze --help``
    needs: ClassVar[Needs] = Needs()
    pairwise: ClassVar[bool] = False      # compares model A with model B: skipped with one model

    def skip_reason(self, model: LoadedModel, has_refs: bool) -> Optional[str]:
        return None

    def add(self, model: LoadedModel, batch: Batch, forward: Forward) -> None:
        """Accumulate one batch of one model it runs on."""

    def add_models(self, forwards: Mapping[str, Forward]) -> None:
        """Accumulate one batch across the models it runs on (in label order)."""

    def finish(self, run: Run) -> dict[str, Any]:
        """Its sections of ``analysis.json`` (section name -> JSON-ready value)."""
        raise NotImplementedError

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        """Its figures of a finished ``analysis.json`` dict: ``{figure name: path}``."""
        return {}

    def summary_lines(self, results: Mapping[str, Any]) -> list[str]:
        """Markdown lines for ``summary.md`` beyond the shared per-layer table."""
        return []


def paired_layers(analysis: Analysis, run: Run) -> Optional[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Layer l of A with layer l of B (float64 frames) for a pairwise analysis; None, with the reason under
    ``skipped``, when the models have different layer counts."""
    a, b = (run.frames.matrices(label) for label in run.models)
    if len(a) != len(b):
        run.skipped.setdefault(analysis.name, {})["AB"] = f"the models have {len(a)} and {len(b)} layers"
        return None
    return [(x.double(), y.double()) for x, y in zip(a, b)]


def per_model(section: Mapping[str, Any], key: str) -> dict[str, Sequence[Optional[float]]]:
    """``{model label: section[label][key]}`` for the models whose section has that key (None: not computed)."""
    return {label: section[label][key] for label in ("A", "B")
            if label in section and section[label].get(key) is not None}
