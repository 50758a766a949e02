"""Decoder analyses (``analysis.decoder``): the attention decoder of an ESPnet ASR / S2T model, teacher-forced
on the shared pass's encoder output, over the real token positions of its input.

* ``decoder_drift``: linear CKA of decoder layer l of model A vs layer l of model B (pairwise), exact over every
  token position (streamed: memory independent of the data size);
* ``decoder_contribution``: the encoder's ``contribution`` on the decoder blocks;
* ``decoder_branches``: the encoder's ``branches`` on the decoder blocks (self-attention, source attention,
  feed-forward updates).

Models without an attention decoder (CTC-only ASR, HF models) and data without the decoder's input (no transcripts;
S2T: no prompted text) are listed under ``skipped``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from espnet_peft.analysis.cka import StreamingLinearCKA
from espnet_peft.analysis.decoder import NO_TARGETS, DecoderAccess
from espnet_peft.analysis.families import family_of
from espnet_peft.analysis.forward_pass import Forward
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.methods.base import Analysis, Needs, Run
from espnet_peft.analysis.methods.branches import BranchContribution
from espnet_peft.analysis.methods.contribution import LayerContribution
from espnet_peft.analysis.methods.registry import register
from espnet_peft.analysis.summary import _num, drift_stats
from espnet_peft.analysis.utterances import Batch


def _per_layer(values: Sequence[Optional[float]], digits: int = 3) -> str:
    return ", ".join(_num(v, digits) for v in values)


class DecoderAnalysis(Analysis):
    """An analysis of the decoder pass: put first among the bases of an encoder analysis, it runs that analysis on
    ``Forward.decoder`` instead of the encoder's pass, on the models that have an attention decoder."""

    needs = Needs(decoder=True)
    part = "decoder"

    def __init__(self) -> None:
        super().__init__()
        self.taught: set[str] = set()  # models that had a decoder input in at least one batch

    def skip_reason(self, model: LoadedModel, has_refs: bool) -> Optional[str]:
        return family_of(model.source).decoder_reason(model) or (None if has_refs else NO_TARGETS)

    def add(self, model: LoadedModel, batch: Batch, forward: Forward) -> None:
        if forward.decoder is not None:  # None: this batch has no decoder input
            self.taught.add(model.label)
            super().add(model, batch, forward.decoder)

    def taught_only(self, run: Run) -> Run:
        """``run`` without the models that never had a decoder input (listed under ``skipped``)."""
        for label in run.models:
            if label not in self.taught:
                run.skipped.setdefault(self.name, {})[label] = NO_TARGETS
        return dataclasses.replace(run, models={k: m for k, m in run.models.items() if k in self.taught})

    def finish(self, run: Run) -> dict[str, Any]:
        run = self.taught_only(run)
        return super().finish(run) if run.models else {}


@register
class DecoderDrift(DecoderAnalysis):
    name = "decoder_drift"
    description = "teacher-forced decoder drift: linear CKA(A_l, B_l) of each decoder layer over the token positions"
    pairwise = True

    def __init__(self) -> None:
        super().__init__()
        self.layers: list[StreamingLinearCKA] = []
        self.unpaired: Optional[str] = None  # why the two decoders' positions cannot be paired

    def add_models(self, forwards: Mapping[str, Forward]) -> None:
        a, b = (forward.decoder for forward in forwards.values())
        if a is None or b is None or self.unpaired:
            return
        self.unpaired = _unpaired(a, b)
        if self.unpaired:
            return
        if not self.layers:
            self.layers = [StreamingLinearCKA() for _ in a.capture.hidden_states]
        for cka, x, y in zip(self.layers, a.capture.hidden_states, b.capture.hidden_states):
            cka.update(x[a.mask], y[b.mask])

    def finish(self, run: Run) -> dict[str, Any]:
        run = self.taught_only(run)
        if len(run.models) < 2:
            return {}
        if self.unpaired or not self.layers:
            run.skipped[self.name] = {"AB": self.unpaired or "no batch had a decoder input for both models"}
            return {}
        return {self.name: {"tokens": self.layers[0].n, "drift": [cka.compute() for cka in self.layers]}}

    def plot(self, results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
        from espnet_peft.analysis.plots import plot_drift

        return {self.name: plot_drift({"B vs A": results[self.name]["drift"]}, out_dir / f"{self.name}.png",
                                      "decoder drift (teacher-forced): linear CKA of each decoder layer, A vs B",
                                      xlabel="decoder layer")}

    def summary_lines(self, results: Mapping[str, Any]) -> list[str]:
        section = results[self.name]
        stats = drift_stats(section["drift"])
        return [f"- decoder drift (linear CKA of each decoder layer, A vs B, teacher-forced over {section['tokens']} "
                f"token positions): mean {_num(stats['mean'], 4)}, lowest {_num(stats['min'], 4)} at layer "
                f"{stats['min_layer']}; per layer {_per_layer(section['drift'], 4)}"]


def _unpaired(a: Forward, b: Forward) -> Optional[str]:
    """Why token position i of A's decoder is not position i of B's (None: it is)."""
    if len(a.capture.hidden_states) != len(b.capture.hidden_states):
        return f"the decoders have {len(a.capture.hidden_states)} and {len(b.capture.hidden_states)} layers"
    if a.frames != b.frames or not torch.equal(a.capture.output.tokens[a.mask], b.capture.output.tokens[b.mask]):
        return "the models' decoder inputs differ (different token lists?), so their positions cannot be paired"
    return None


@register
class DecoderContribution(DecoderAnalysis, LayerContribution):
    name = "decoder_contribution"
    description = "the contribution analysis on the decoder layers (teacher-forced, over the token positions)"

    def summary_lines(self, results: Mapping[str, Any]) -> list[str]:
        return [f"- decoder ‖u‖/‖h_in‖ per layer ({label}, teacher-forced): {_per_layer(values['update_ratio'])}"
                for label, values in results[self.name].items()]


@register
class DecoderBranches(DecoderAnalysis, BranchContribution):
    name = "decoder_branches"
    description = "the branches analysis on the decoder blocks: self-attention, source attention, feed-forward"

    def layer_names(self, model: LoadedModel) -> list[str]:
        return DecoderAccess(model.model).layers()

    def summary_lines(self, results: Mapping[str, Any]) -> list[str]:
        return [f"- decoder branch ‖update‖/‖block input‖ per layer ({label}, teacher-forced), {name}: "
                f"{_per_layer(values)}"
                for label, section in results[self.name].items() for name, values in section["branches"].items()]
