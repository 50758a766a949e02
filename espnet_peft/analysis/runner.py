"""One analysis run: one or two models on the same utterances, every requested analysis, one JSON-ready dict.

Shared by ``python -m espnet_peft.bin.analyze`` and the recipe's stage 13 (through that CLI). The run makes one pass
over the utterances in batches; per batch, each model runs once with hooks (``forward_pass.shared_forward``, capturing
what the requested analyses need), and every analysis of the registry (``espnet_peft.analysis.methods``) accumulates
from that pass; at the end each one returns its sections of ``analysis.json``. What each analysis computes is in its
module's docstring; per-batch results are combined exactly (frame means weighted by frames, corpus CERs by reference
characters).

An analysis that does not apply to a model (no CTC head, no adapters, no transcripts, an HF model), or that compares
two models when there is one, is listed under ``skipped`` with the reason instead of failing the run, and logged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import defaultdict
from typing import Any, Iterator, Mapping, Sequence

import torch
from tqdm import tqdm

from espnet_peft.analysis.forward_pass import Forward, Frames, decoder_forward, shared_forward
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.methods import DEFAULT_ANALYSES, REGISTRY, Run
from espnet_peft.analysis.reuse import PASSES, pass_key
from espnet_peft.analysis.utterances import Batch, Utterance, load_audio

FORMAT = 2  # 2: sections from the analysis registry; the drift skip is keyed cka.drift

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Settings:
    """How much to compute. ``batch_size``: utterances per forward pass (HF models: 1); ``max_frames``: frames kept
    for CKA, CCA and the neuron analyses (kept in float32; CKA's float64 copies bring the peak to about
    ``20 x max_frames x width`` bytes per layer and model); ``energy_max_utts``: utterances (whole batches, spread
    over the run's) that the adapter energy's forward + backward passes use, the dearest part of a run."""

    analyses: tuple[str, ...] = DEFAULT_ANALYSES
    batch_size: int = 8
    max_frames: int = 5000
    energy_max_utts: int = 32
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.analyses) - set(REGISTRY))  # the live registry: analyses registered later count
        if unknown:
            raise ValueError(f"unknown analyses {unknown}; choose from {', '.join(REGISTRY)}")
        self.analyses = tuple(a for a in REGISTRY if a in self.analyses)


def to_json(value: Any) -> Any:
    """Floats, lists and dicts with NaN / inf as None (JSON has no NaN), tensors as lists."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


class _Timer:
    """Seconds spent per named step, summed over batches."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, name: str) -> "_Timer._Span":
        return _Timer._Span(self, name)

    class _Span:
        def __init__(self, timer: "_Timer", name: str) -> None:
            self.timer, self.name = timer, name

        def __enter__(self) -> None:
            self.start = time.perf_counter()

        def __exit__(self, *exc: Any) -> None:
            self.timer.seconds[self.name] += time.perf_counter() - self.start


# ---------------------------------------------------------------------------------------------------------------------
# The run


def _batches(utts: list[Utterance], size: int) -> Iterator[list[Utterance]]:
    for start in range(0, len(utts), size):
        yield utts[start : start + size]


def run_analysis(models: Sequence[LoadedModel], utts: list[Utterance], settings: Settings,
                 data_name: str = "") -> dict[str, Any]:
    """Every analysis of ``settings`` on one or two models (A, then B: the pretrained one first) over ``utts``.

    Returns the ``analysis.json`` dict (NaN as None); each analysis's module says what its sections hold.
    """
    if not 1 <= len(models) <= 2:
        raise ValueError(f"give one or two models, got {len(models)}")
    labels = [m.label for m in models]
    by_label = {m.label: m for m in models}
    has_refs = all(u.ref for u in utts)
    timer = _Timer()
    analyses = [REGISTRY[name]() for name in settings.analyses]
    runs_on: dict[str, list[str]] = {}
    skipped: dict[str, dict[str, str]] = defaultdict(dict)
    for analysis in analyses:
        if analysis.pairwise and len(models) < 2:
            skipped[analysis.name]["AB"] = "compares model A with model B: give two models"
            continue
        runs_on[analysis.name] = []
        for m in models:
            reason = analysis.skip_reason(m, has_refs)
            if reason is None:
                runs_on[analysis.name].append(m.label)
            else:
                skipped[analysis.name][m.label] = reason
        if analysis.pairwise and len(runs_on[analysis.name]) < 2:
            del runs_on[analysis.name]
    active = [a for a in analyses if runs_on.get(a.name)]

    def wanted(flag: str) -> set[str]:
        return {label for a in active if getattr(a.needs, flag) for label in runs_on[a.name]}

    branches, attention, keep = wanted("branches"), wanted("attention"), wanted("batches")
    decoders = wanted("decoder")
    frame_labels = [label for label in labels if label in wanted("frames")]
    batch_size = min([settings.batch_size] + [m.max_batch for m in models if m.max_batch])
    frames = Frames(frame_labels, per_utt=max(1, math.ceil(settings.max_frames / len(utts)))) if frame_labels else None
    kept: dict[str, list[Batch]] = {label: [] for label in labels}

    PASSES.start_run()
    bar = tqdm(total=len(utts), desc="utterances", unit="utt", disable=not settings.progress)
    for group in _batches(utts, batch_size):
        forwards: dict[str, Forward] = {}
        for m in models:
            flags = (m.label in branches, m.label in attention, m.label in decoders)
            kept_pass = PASSES.get(pass_key(m), group, flags)
            if kept_pass is not None:  # the same model, utterances and capture in an earlier run of this process
                batch, forward = kept_pass
                forwards[m.label] = forward
            else:
                with timer("audio + preprocessing"):
                    audio = [load_audio(u, m.fs) for u in group]
                    batch = m.batch(group, audio)
                with timer("forward (shared capture)"):
                    forward = forwards[m.label] = shared_forward(m, batch, m.label in branches,
                                                                 m.label in attention)
                if m.label in decoders:
                    with timer("decoder forward (teacher-forced)"):
                        forward.decoder = decoder_forward(m, batch, forward)
                PASSES.put(pass_key(m), group, flags, batch, forward)
            for analysis in active:
                if m.label in runs_on[analysis.name]:
                    with timer(analysis.name):
                        analysis.add(m, batch, forward)
            if m.label in keep:
                kept[m.label].append(batch)
        if frames is not None:
            with timer("frames"):
                frames.add({label: forwards[label] for label in frame_labels})
        for analysis in active:
            with timer(analysis.name):
                analysis.add_models({label: forwards[label] for label in runs_on[analysis.name]})
        bar.update(len(group))
    bar.close()

    results: dict[str, Any] = {
        "format": FORMAT,
        "models": {m.label: m.describe() for m in models},
        "data": {"source": data_name, "utterances": len(utts), "with_transcripts": has_refs,
                 "keys": [u.key for u in utts]},
        "settings": {**dataclasses.asdict(settings), "analyses": list(settings.analyses), "batch_size": batch_size},
    }
    for analysis in active:
        run = Run(models={label: by_label[label] for label in runs_on[analysis.name]}, all_labels=labels,
                  frames=frames, batches=kept, batch_size=batch_size, max_frames=settings.max_frames,
                  energy_max_utts=settings.energy_max_utts,
                  progress=settings.progress, skipped=skipped)
        with timer(analysis.name):
            results.update(analysis.finish(run))
    results["skipped"] = dict(skipped)
    for name, per in skipped.items():  # also in summary.md; logged so that a run's log says what it left out
        for label, reason in per.items():
            logger.warning("analysis %s skipped (%s): %s", name, "A vs B" if label == "AB" else f"model {label}",
                           reason)
    results["timing_s"] = dict(timer.seconds)
    return to_json(results)
