"""What one process keeps from one analysis run to the next.

Recipe stage 13 analyses every fine-tuned model against the same source model, all in one process
(``espnet_peft.bin.run_many``). The source model's loading and its shared forward passes are then the same in every
run; keeping them makes each run after the first cost about one model instead of two.

* ``load_model_once``: the models of the last run stay loaded (at most ``MODELS``), by what names them: label,
  source, device, attention mode and the files' modification times, so a rewritten checkpoint is loaded again.
* ``PassCache``: the preprocessed batch and shared forward pass of a model that comes back, by model, utterances
  (ids, audio files, transcripts, real lengths) and what the pass captured, up to ``MAX_BYTES`` of tensors. A
  model's passes are kept from its second run on, so that one-off models never push out the one that recurs.

Analyses only read a ``Forward``; none writes into its tensors, which is what makes a kept pass safe to hand out again.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Callable, Hashable, Optional

import torch

from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.resolve import ModelSource
from espnet_peft.analysis.utterances import Batch, Utterance

#: loaded models kept between runs (the previous run's two)
MODELS = 2
#: tensor bytes of shared passes kept between runs
MAX_BYTES = 1 << 30

_models: "OrderedDict[Hashable, LoadedModel]" = OrderedDict()


def _file_stamp(source: ModelSource) -> tuple:
    files = [p for p in (source.config, source.model_file, source.path, source.adapter) if p]
    return tuple((str(p), p.stat().st_mtime_ns if p.exists() else None) for p in files)


def model_key(label: str, source: ModelSource, device: str, eager_attention: bool) -> Hashable:
    return label, repr(source), _file_stamp(source), device, eager_attention


def load_model_once(label: str, source: ModelSource, device: str, eager_attention: bool,
                    load: Callable[..., LoadedModel]) -> LoadedModel:
    """``load(label, source, device, eager_attention=...)``, or the same model still loaded from an earlier run."""
    key = model_key(label, source, device, eager_attention)
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    while len(_models) >= MODELS:  # free the oldest before loading: at most MODELS models at any time
        _models.popitem(last=False)
    model = _models[key] = load(label, source, device, eager_attention=eager_attention)
    return model


def pass_key(m: LoadedModel) -> Hashable:
    """A loaded model's identity for ``PassCache``: the object (kept alive by ``load_model_once``) and its files."""
    return m.label, repr(m.source), _file_stamp(m.source), id(m.model)


def tensor_bytes(value: Any) -> int:
    """Bytes of every tensor inside ``value`` (dataclasses, containers)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(tensor_bytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def utterances_key(utts: list[Utterance]) -> tuple:
    return tuple((u.key, str(u.wav), tuple(sorted(u.texts.items())), u.num_samples) for u in utts)


class PassCache:
    """Shared passes of models that come back in later runs (see the module docstring)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.entries: "OrderedDict[Hashable, tuple[Batch, Any, int]]" = OrderedDict()
        self.bytes = 0
        self.seen: set[Hashable] = set()  # models of earlier runs
        self.current: set[Hashable] = set()
        self.hits = 0

    def start_run(self) -> None:
        self.seen |= self.current
        self.current = set()

    def get(self, model: Hashable, utts: list[Utterance], flags: tuple) -> Optional[tuple[Batch, Any]]:
        self.current.add(model)
        entry = self.entries.get((model, utterances_key(utts), flags))
        if entry is None:
            return None
        self.hits += 1
        return entry[:2]

    def put(self, model: Hashable, utts: list[Utterance], flags: tuple, batch: Batch, forward: Any) -> None:
        if model not in self.seen:
            return
        size = tensor_bytes(batch) + tensor_bytes(forward)
        if size > self.max_bytes:
            return
        while self.bytes + size > self.max_bytes:
            _, (_, _, freed) = self.entries.popitem(last=False)
            self.bytes -= freed
        self.entries[(model, utterances_key(utts), flags)] = (batch, forward, size)
        self.bytes += size


#: the process's cache, used by ``runner.run_analysis``
PASSES = PassCache()
