"""Many models on the same audio: which fine-tuning methods end up closest to the source model, and to each other.

``compare_models`` runs every model once per batch (``forward_pass.shared_forward``), keeps the same paired
real-audio frames of every layer (``forward_pass.Frames``), and computes, for each layer ``l``, the linear CKA of
every pair of models at that layer: an ``M x M`` matrix, symmetric with a unit diagonal (``cka.cka_matrix`` with the
models in place of layers). Layers are then grouped into lower / middle / upper thirds (their matrices averaged), and
the models are placed on a plane by classical MDS of the distance ``1 - mean CKA`` over all layers, so that methods
that changed the representation the same way sit together. All models must have as many layers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from espnet_peft.analysis.cka import cka_matrix
from espnet_peft.analysis.forward_pass import Frames, shared_forward
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.utterances import Utterance, load_audio

MANY_MODELS_JSON = "models.json"


def layer_groups(n_layers: int) -> list[tuple[str, list[int]]]:
    """Lower / middle / upper thirds of ``n_layers`` (fewer groups for fewer than 3 layers)."""
    bounds = [round(i * n_layers / 3) for i in range(4)]
    names = ("lower", "middle", "upper")
    groups = [(names[i], list(range(bounds[i], bounds[i + 1]))) for i in range(3)]
    return [(f"{name} (layers {idx[0]}-{idx[-1]})", idx) for name, idx in groups if idx]


def classical_mds(distance: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """``[M, dims]`` points whose Euclidean distances best match ``distance`` ``[M, M]`` (Torgerson's MDS)."""
    d2 = distance.double() ** 2
    m = d2.shape[0]
    centre = torch.eye(m, dtype=torch.float64) - 1.0 / m
    gram = -0.5 * centre @ d2 @ centre
    values, vectors = torch.linalg.eigh(gram)
    top = torch.argsort(values, descending=True)[:dims]
    return vectors[:, top] * values[top].clamp(min=0).sqrt()


def compare_models(models: Sequence[LoadedModel], utts: list[Utterance], max_frames: int = 5000,
                   batch_size: int = 8, progress: bool = True) -> dict[str, Any]:
    """Layer-by-layer CKA between every pair of ``models`` on ``utts`` (see the module docstring)."""
    labels = [m.label for m in models]
    if len(models) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"give at least two models with distinct labels, got {labels}")
    layers = {m.label: len(m.access.layers()) for m in models}
    if len(set(layers.values())) != 1:
        raise ValueError(f"the models have different layer counts {layers}: layer-by-layer comparison needs the same")
    frames = Frames(labels, per_utt=max(1, math.ceil(max_frames / len(utts))))
    size = min([batch_size] + [m.max_batch for m in models if m.max_batch])
    for start in tqdm(range(0, len(utts), size), desc="utterances (batches)", disable=not progress):
        group = utts[start:start + size]
        forwards = {}
        for m in models:
            forwards[m.label] = shared_forward(m, m.batch(group, [load_audio(u, m.fs) for u in group]), False, False)
        frames.add(forwards)
    per_model = {label: frames.matrices(label) for label in labels}
    n_layers = next(iter(layers.values()))
    per_layer = [cka_matrix([per_model[label][layer] for label in labels], progress=False)
                 for layer in tqdm(range(n_layers), desc="CKA per layer", disable=not progress)]
    stacked = torch.stack(per_layer)
    mean = stacked.mean(dim=0)
    points = classical_mds((1.0 - mean).clamp(min=0.0))
    return {
        "labels": labels,
        "frames": int(per_model[labels[0]][0].shape[0]),
        "per_layer": [m.tolist() for m in per_layer],
        "groups": {name: stacked[idx].mean(dim=0).tolist() for name, idx in layer_groups(n_layers)},
        "mean": mean.tolist(),
        "mds": points.tolist(),
    }


def closest(result: dict[str, Any], reference: str) -> list[tuple[str, float]]:
    """The other models by mean CKA with ``reference``, closest first."""
    labels = result["labels"]
    row = result["mean"][labels.index(reference)]
    return sorted(((label, row[i]) for i, label in enumerate(labels) if label != reference), key=lambda x: -x[1])


def render(result: dict[str, Any], out_dir: Path) -> str:
    """The figures (a heatmap per layer group, the MDS map) into ``out_dir``; returns ``summary.md``'s text."""
    from espnet_peft.analysis.plots import heatmap, plot_map

    labels, reference = result["labels"], result["labels"][0]
    figures = {}
    for i, (name, matrix) in enumerate(result["groups"].items()):
        figures[name] = heatmap(matrix, out_dir / f"models_cka_group{i}.png", f"linear CKA between models, {name}",
                                "model", "model", ticklabels=labels)
    figures["map"] = plot_map(result["mds"], labels, out_dir / "models_map.png",
                              "models by 1 - mean CKA over layers (classical MDS)")
    lines = ["# Many-model comparison", "", "Written by `python -m espnet_peft.bin.analyze --models`; numbers in "
             f"`{MANY_MODELS_JSON}`. Linear CKA between every pair of models, layer by layer, on {result['frames']} "
             "real-audio frames of the same utterances.", "", "## Mean CKA over layers", "",
             "| | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    lines += [f"| {a} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for a, row in zip(labels, result["mean"])]
    for ref in [reference] + [label for label in ("full",) if label in labels and label != reference]:
        order = ", ".join(f"{label} ({value:.4f})" for label, value in closest(result, ref))
        lines += ["", f"Closest to **{ref}** first: {order}."]
    lines += ["", "## Figures", ""] + [f"![{name}]({path.name})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"
