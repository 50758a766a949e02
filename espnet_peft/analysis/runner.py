"""One analysis run: one or two models on the same utterances, every requested analysis, one JSON-ready dict.

Shared by ``python -m espnet_peft.bin.analyze`` and the recipe's stage 13 (through that CLI). The run makes one pass
over the utterances in batches; per batch, each model runs once with hooks (``ModelAccess.capture``), and that pass
feeds the frame-level analyses:

* ``cka``: linear CKA (``cka.cka_matrix``) within each model (layer x layer), between the models (A layer x B layer,
  any layer counts) and, when both have as many layers, the *drift* curve: CKA(A layer l, B layer l). Frames of an
  utterance are paired across the models by position (resampled to the shorter count when their frame rates differ),
  at most ``max_frames`` frames in all, spread evenly over utterances and over each utterance's frames;
* ``contribution``: ``layer_contribution`` (update size and direction per block);
* ``branches``: per-branch update sizes inside each block (``branch_contribution``), ESPnet blocks only;
* ``attention``: Jensen-Shannon similarity of the self-attention maps (``attention.head_similarity``), within each
  model and between them when their frames line up.

In these frame-level analyses only the frames that cover real audio count: an S2T (OWSM) model pads every input to
``speech_length`` with silence, and those frames would otherwise dominate every statistic (``Batch.real_frames``).
The model-level analyses run their own forward passes on the same batches, and see the input as the model does
(S2T: padding included, in the lens KL and the adapter statistics too): ``lens`` (``logit_lens``: per-layer CTC CER
and KL), ``ablation`` (``layer_ablation``, single and cumulative erasure) and ``energy`` (``adapter_energy`` of the
adapters' bottlenecks under the training loss, or the CTC loss when the data lacks the model's full text inputs).
Per-batch results are combined exactly: frame means weighted by frames, corpus CERs by reference characters.

An analysis that does not apply to a model (no CTC head, no adapters, no transcripts, an HF model) is listed under
``skipped`` with the reason instead of failing the run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
from tqdm import tqdm

from espnet_peft.analysis.ablation import MODES, layer_ablation
from espnet_peft.analysis.adapter_energy import adapter_energy, compare_energy, untrained_adapters
from espnet_peft.analysis.attention import head_similarity
from espnet_peft.analysis.branch_contribution import mean_ratio, block_branches, branch_updates
from espnet_peft.analysis.cka import cka_matrix
from espnet_peft.analysis.layer_contribution import layer_contribution
from espnet_peft.analysis.logit_lens import logit_lens
from espnet_peft.analysis.model_access import Capture
from espnet_peft.analysis.sources import Batch, LoadedModel, Utterance, load_audio
from espnet_peft.compat import legacy_nets
from espnet_peft.injection import adapter_layers

#: every analysis, in the order they appear in the outputs
ANALYSES = ("cka", "lens", "contribution", "branches", "ablation", "energy", "attention")
#: what a run does unless told otherwise: the recipe's stage 13 set (ablation and attention cost more forwards)
DEFAULT_ANALYSES = ("cka", "lens", "contribution", "branches", "energy")
FORMAT = 1


@dataclasses.dataclass
class Settings:
    """How much to compute. ``batch_size``: utterances per forward pass (HF models: 1); ``max_frames``: frames kept
    for CKA (kept in float32; CKA's float64 copies bring the peak to about ``20 x max_frames x width`` bytes per
    layer and model)."""

    analyses: tuple[str, ...] = DEFAULT_ANALYSES
    batch_size: int = 8
    max_frames: int = 5000
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.analyses) - set(ANALYSES))
        if unknown:
            raise ValueError(f"unknown analyses {unknown}; choose from {', '.join(ANALYSES)}")
        self.analyses = tuple(a for a in ANALYSES if a in self.analyses)


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


class _WeightedMean:
    """Running weighted means of per-layer lists, keyed by name: exact overall means from per-batch means."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.weights: dict[str, float] = defaultdict(float)

    def add(self, name: str, values: Sequence[float], weight: float) -> None:
        v = torch.tensor([math.nan if x is None else x for x in values], dtype=torch.float64) * weight
        self.sums[name] = v if name not in self.sums else self.sums[name] + v
        self.weights[name] += weight

    def mean(self, name: str) -> list[float]:
        return (self.sums[name] / self.weights[name]).tolist()


# ---------------------------------------------------------------------------------------------------------------------
# What applies to which model


def _ctc_reason(m: LoadedModel) -> Optional[str]:
    if not m.is_espnet:
        return "HF models: the CTC lens / ablation work on ESPnet CTC models"
    if getattr(m.model, "ctc", None) is None:
        return "the model has no CTC head (ctc_weight 0)"
    return None


def _skip_reason(analysis: str, m: LoadedModel, has_refs: bool) -> Optional[str]:
    """Why ``analysis`` cannot run on model ``m`` (None: it can)."""
    if analysis in ("lens", "ablation"):
        reason = _ctc_reason(m)
        if reason is None and analysis == "ablation" and not has_refs:
            reason = "the data has no transcripts (text / text.ctc)"
        return reason
    if analysis == "branches":
        if not m.is_espnet:
            return "HF models: branch hooks know ESPnet blocks only"
        try:
            block_branches(m.access.layer_modules()[0])
        except TypeError as error:
            return str(error)
    if analysis == "energy":
        if not m.is_espnet or not adapter_layers(m.model):
            return "the model has no espnet_peft adapters"
        if _ctc_reason(m) is not None or not has_refs:
            return "no loss to take gradients of (needs transcripts and a CTC head)"
    if analysis == "attention" and m.is_espnet:
        try:
            _attention_modules(m)
        except TypeError as error:
            return str(error)
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Per-batch captures


@dataclasses.dataclass
class _Pass:
    """One model's forward pass on one batch, reduced to what the analyses need."""

    capture: Capture
    frames: list[int]  # real-audio frames per utterance
    mask: torch.Tensor  # [B, T], True on real-audio frames
    key_mask: torch.Tensor  # [B, T], True on frames the model attends to
    branch_updates: Optional[list[dict[str, torch.Tensor]]] = None
    attention: Optional[list[torch.Tensor]] = None  # per layer [B, H, T, T]


def _attention_modules(m: LoadedModel) -> list[torch.nn.Module]:
    """The self-attention module of each ESPnet block (its ``attn`` holds the last forward's maps)."""
    MultiHeadedAttention = legacy_nets("pytorch_backend.transformer.attention").MultiHeadedAttention

    modules = []
    for block in m.access.layer_modules():
        found = next((x for x in block.modules() if isinstance(x, MultiHeadedAttention)), None)
        if found is None:
            raise TypeError(f"{type(block).__name__} has no MultiHeadedAttention")
        modules.append(found)
    return modules


def _forward(m: LoadedModel, batch: Batch, branches: bool, attention: bool) -> _Pass:
    updates = None
    if branches:
        result = branch_updates(m.access, *batch.args, **batch.kwargs)
        cap, updates = result.capture, result.updates
    else:
        cap = m.access.capture(*batch.args, with_inputs=True, **batch.kwargs)
    bsz, t = cap.hidden_states[0].shape[:2]
    key_mask = cap.mask if cap.mask is not None else torch.ones(bsz, t, dtype=torch.bool)
    frames = batch.real_frames(key_mask.sum(dim=1).tolist())
    mask = torch.arange(t)[None, :] < torch.tensor(frames)[:, None]
    maps = None
    if attention:
        if m.is_espnet:
            maps = [module.attn.detach() for module in _attention_modules(m)]
        else:
            maps = list(cap.output.attentions)
    return _Pass(cap, frames, mask.to(key_mask.device), key_mask, updates, maps)


# ---------------------------------------------------------------------------------------------------------------------
# CKA frames


def _positions(n: int, count: int) -> torch.Tensor:
    """``count`` of ``0..n-1`` spread evenly (all of them when ``count >= n``)."""
    if count >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, count).round().long()


class _Frames:
    """Per model and layer, the selected real-audio frames (float32, CPU), paired across models by position."""

    def __init__(self, labels: Sequence[str], per_utt: int) -> None:
        self.per_utt = per_utt
        self.layers: dict[str, list[list[torch.Tensor]]] = {label: [] for label in labels}

    def add(self, passes: Mapping[str, _Pass]) -> None:
        first = next(iter(passes.values()))
        for b in range(len(first.frames)):
            n = min(p.frames[b] for p in passes.values())
            pick = _positions(n, self.per_utt)
            for label, p in passes.items():
                # frame i of the shorter model is frame round(i * (n_p - 1) / (n - 1)) of this one
                index = _positions(p.frames[b], n)[pick] if p.frames[b] != n else pick
                hidden = p.capture.hidden_states
                if not self.layers[label]:
                    self.layers[label] = [[] for _ in hidden]
                for store, h in zip(self.layers[label], hidden):
                    store.append(h[b, index.to(h.device)].float().cpu())

    def matrices(self, label: str) -> list[torch.Tensor]:
        return [torch.cat(parts) for parts in self.layers[label]]


def _cka_results(frames: _Frames, labels: Sequence[str], progress: bool) -> dict[str, Any]:
    feats = {label: frames.matrices(label) for label in labels}
    out: dict[str, Any] = {"frames": int(feats[labels[0]][0].shape[0]), "method": "linear",
                           "intra": {label: cka_matrix(feats[label], progress=progress) for label in labels},
                           "inter": None, "drift": None}
    if len(labels) == 2:
        a, b = labels
        inter = cka_matrix(feats[a], feats[b], progress=progress)
        out["inter"] = inter
        if inter.shape[0] == inter.shape[1]:
            out["drift"] = torch.diagonal(inter)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Attention


class _AttentionSums:
    """Head-pair similarity ``1 - mean_q JS`` per layer pair, summed over batches weighted by valid queries, so the
    result is that of all queries at once; ``best-match`` layer similarity is taken at the end."""

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


# ---------------------------------------------------------------------------------------------------------------------
# The run


def _batches(utts: list[Utterance], size: int) -> Iterator[list[Utterance]]:
    for start in range(0, len(utts), size):
        yield utts[start : start + size]


def _ref_chars(refs: Sequence[str]) -> int:
    # the CER denominator: reference characters, spaces excluded (see analysis/_cer.py)
    return sum(len(r.replace(" ", "")) for r in refs)


def _lens(m: LoadedModel, batch: Batch, acc: _WeightedMean) -> None:
    with_cer = batch.refs is not None and _ref_chars(batch.refs) > 0
    lens = logit_lens(m.model, batch.speech, batch.lengths, blank=m.blank,
                      decode=m.decode if with_cer else None, refs=batch.refs if with_cer else None)
    acc.add(f"{m.label}.kl", lens.kl, float(lens.lengths.sum()))
    if lens.cer is not None:
        acc.add(f"{m.label}.cer", [100.0 * c for c in lens.cer], _ref_chars(batch.refs))


def _concat(batches: Sequence[Batch], field: str, pad: float) -> torch.Tensor:
    tensors = [getattr(b, field) for b in batches]
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad) for t in tensors])


def _ablation(m: LoadedModel, batches: Sequence[Batch], batch_size: int) -> dict[str, Any]:
    speech, lengths = _concat(batches, "speech", 0.0), torch.cat([b.lengths for b in batches])
    text, text_lengths = _concat(batches, "ctc_text", -1), torch.cat([b.ctc_text_lengths for b in batches])
    refs = [r for b in batches for r in b.refs]
    out = {}
    for mode in MODES:
        result = layer_ablation(m.model, speech, lengths, text, text_lengths, m.decode, refs, mode=mode,
                                batch_size=batch_size).to_dict()
        # CER in percent, like the lens and the report
        result["baseline_cer"] *= 100.0
        result["cer"] = [100.0 * c for c in result["cer"]]
        out[mode] = result
    return out


def _loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The training loss when the batch has every input of the model's forward, else the CTC loss."""
    if batch.loss_inputs is not None:
        return model(**batch.loss_inputs)[0].reshape(())  # ESPnet returns it as [1] (force_gatherable)
    encoded, encoded_lengths = model.encode(batch.speech, batch.lengths)
    return model.ctc(encoded, encoded_lengths, batch.ctc_text, batch.ctc_text_lengths)


def _energy(m: LoadedModel, batches: Sequence[Batch]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Adapter energy of the trained model and of the same model with freshly initialised adapters, side by side."""
    trained = adapter_energy(m.model, _loss, batches)
    with untrained_adapters(m.model) as fresh:
        untrained = adapter_energy(fresh, _loss, batches)
    loss = "training loss" if all(b.loss_inputs is not None for b in batches) else "CTC loss"
    return {name: s.to_dict() for name, s in trained.items()}, compare_energy(trained, untrained), loss


def run_analysis(models: Sequence[LoadedModel], utts: list[Utterance], settings: Settings,
                 data_name: str = "") -> dict[str, Any]:
    """Every analysis of ``settings`` on one or two models (A, then B: the pretrained one first) over ``utts``.

    Returns the ``analysis.json`` dict (NaN as None); see the module docstring for what each section holds.
    """
    if not 1 <= len(models) <= 2:
        raise ValueError(f"give one or two models, got {len(models)}")
    labels = [m.label for m in models]
    has_refs = all(u.ref for u in utts)
    timer = _Timer()
    todo: dict[str, list[str]] = {}
    skipped: dict[str, dict[str, str]] = defaultdict(dict)
    for analysis in settings.analyses:
        todo[analysis] = []
        for m in models:
            reason = _skip_reason(analysis, m, has_refs)
            if reason is None:
                todo[analysis].append(m.label)
            else:
                skipped[analysis][m.label] = reason
    by_label = {m.label: m for m in models}
    batch_size = min([settings.batch_size] + [m.max_batch for m in models if m.max_batch])
    frames = _Frames(labels, per_utt=max(1, math.ceil(settings.max_frames / len(utts))))
    means = _WeightedMean()
    attention = _AttentionSums()
    kept: dict[str, list[Batch]] = {label: [] for label in labels}
    keep = {label for a in ("ablation", "energy") for label in todo.get(a, [])}
    attention_inter_reason = None

    bar = tqdm(total=len(utts), desc="utterances", unit="utt", disable=not settings.progress)
    for group in _batches(utts, batch_size):
        passes: dict[str, _Pass] = {}
        for m in models:
            with timer("audio + preprocessing"):
                audio = [load_audio(u, m.fs) for u in group]
                batch = m.batch(group, audio)
            with timer("forward (shared capture)"):
                p = passes[m.label] = _forward(m, batch, m.label in todo.get("branches", []),
                                               m.label in todo.get("attention", []))
            if m.label in todo.get("contribution", []):
                with timer("contribution"):
                    c = p.capture
                    contrib = layer_contribution(Capture(c.hidden_states, c.layer_inputs, c.output, p.mask))
                    means.add(f"{m.label}.update_ratio", contrib.update_ratio, sum(p.frames))
                    means.add(f"{m.label}.cosine", contrib.cosine, sum(p.frames))
            if p.branch_updates is not None:
                with timer("branches"):
                    for name in dict.fromkeys(n for per_block in p.branch_updates for n in per_block):
                        values = [mean_ratio(per_block[name], x, p.mask) if name in per_block else math.nan
                                  for per_block, x in zip(p.branch_updates, p.capture.layer_inputs)]
                        means.add(f"{m.label}.branch.{name}", values, sum(p.frames))
            if p.attention is not None:
                with timer("attention"):
                    attention.add(m.label, p.attention, p.attention, p.mask, p.key_mask, intra=True)
            if m.label in todo.get("lens", []):
                with timer("lens"):
                    _lens(m, batch, means)
            if m.label in keep:
                kept[m.label].append(batch)
        if "cka" in todo:
            with timer("cka frames"):
                frames.add(passes)
        if len(todo.get("attention", [])) == 2:
            pa, pb = (passes[label] for label in labels)
            if pa.mask.shape != pb.mask.shape or not torch.equal(pa.mask.cpu(), pb.mask.cpu()):
                attention_inter_reason = "the models' frames do not line up (different frame rates)"
            elif attention_inter_reason is None:
                with timer("attention"):
                    attention.add("AB", pa.attention, pb.attention, pa.mask,
                                  pa.key_mask & pb.key_mask, intra=False)
        bar.update(len(group))
    bar.close()

    results: dict[str, Any] = {
        "format": FORMAT,
        "models": {m.label: m.describe() for m in models},
        "data": {"source": data_name, "utterances": len(utts), "with_transcripts": has_refs,
                 "keys": [u.key for u in utts]},
        "settings": {**dataclasses.asdict(settings), "analyses": list(settings.analyses), "batch_size": batch_size},
    }
    if "cka" in todo:
        with timer("cka"):
            results["cka"] = _cka_results(frames, labels, settings.progress)
    if todo.get("lens"):
        results["lens"] = {label: {"layers": by_label[label].access.layers(), "kl": means.mean(f"{label}.kl"),
                                   "cer": means.mean(f"{label}.cer") if f"{label}.cer" in means.sums else None}
                           for label in todo["lens"]}
    if todo.get("contribution"):
        results["contribution"] = {label: {"update_ratio": means.mean(f"{label}.update_ratio"),
                                           "cosine": means.mean(f"{label}.cosine")}
                                   for label in todo["contribution"]}
    if todo.get("branches"):
        results["branches"] = {
            label: {"layers": by_label[label].access.layers(),
                    "branches": {k.split(".branch.", 1)[1]: means.mean(k) for k in means.sums
                                 if k.startswith(f"{label}.branch.")}}
            for label in todo["branches"]}
    if todo.get("ablation"):
        with timer("ablation"):
            results["ablation"] = {label: _ablation(by_label[label], kept[label], batch_size)
                                   for label in todo["ablation"]}
    if todo.get("energy"):
        with timer("energy"):
            results["energy"], results["energy_vs_untrained"], losses = {}, {}, {}
            for label in todo["energy"]:
                (results["energy"][label], results["energy_vs_untrained"][label],
                 losses[label]) = _energy(by_label[label], kept[label])
            results["energy_loss"] = losses
    if todo.get("attention"):
        results["attention"] = {"intra": {label: attention.matrix(label) for label in todo["attention"]},
                                "inter": attention.matrix("AB")}
        if attention_inter_reason and len(todo["attention"]) == 2:
            skipped["attention"]["AB"] = attention_inter_reason
    if "cka" in results and results["cka"]["inter"] is not None and results["cka"]["drift"] is None:
        skipped["drift"] = {"AB": "the models have different layer counts: see the A x B matrix instead"}
    results["skipped"] = dict(skipped)
    results["timing_s"] = dict(timer.seconds)
    return to_json(results)

