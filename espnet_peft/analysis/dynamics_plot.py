"""Curves of adapter training dynamics (``adapter_dynamics.json``) over optimizer steps, averaged over layers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from espnet_peft.analysis.plots import save_figure
from espnet_peft.utils.pyplot import pyplot

#: (panel title, [(curve label, statistic)]); a statistic is a key of a layer record, or "<key>.k90"
PANELS = (
    ("k90 of activations", [("A side (bottleneck)", "act_a.k90"), ("B side (dW x)", "act_b.k90")]),
    ("k90 of gradients", [("A side", "grad_a.k90"), ("B side (output)", "grad_b.k90")]),
    ("forward alignment (input PCs)", [("A", "forward_alignment"), ("A update", "forward_alignment_update"),
                                       ("chance", "forward_alignment_chance")]),
    ("backward differentiation (gradient PCs)", [("B", "backward_alignment"),
                                                 ("B update", "backward_alignment_update"),
                                                 ("chance", "backward_alignment_chance")]),
    ("CKA of the A and B updates", [("update CKA", "update_cka")]),
)


def statistic(layer: Mapping[str, Any], key: str) -> Optional[float]:
    value: Any = layer
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return None if value is None else float(value)


def layer_mean(probe: Mapping[str, Any], key: str) -> float:
    """The mean of ``key`` over the layers where it is defined (NaN where it is nowhere)."""
    values = [v for v in (statistic(layer, key) for layer in probe["layers"].values()) if v is not None]
    return sum(values) / len(values) if values else math.nan


def plot_dynamics(probes: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """One panel per group of statistics, the layer mean of each against the optimizer step."""
    plt = pyplot()
    steps = [p["step"] for p in probes]
    columns = 3
    rows = -(-len(PANELS) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(PANELS):]:
        ax.axis("off")
    for ax, (title, curves) in zip(axes.flat, PANELS):
        for label, key in curves:
            style = {"linestyle": ":", "color": "grey"} if label == "chance" else {"marker": "o", "markersize": 3}
            ax.plot(steps, [layer_mean(p, key) for p in probes], label=label, **style)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"adapter training dynamics (mean over {len(probes[0]['layers'])} layers)")
    return save_figure(fig, path)
