"""PNG figures of an analysis run: layer x layer heatmaps and per-layer curves (matplotlib, Agg backend).

Every function takes plain lists / dicts (what ``analysis.json`` holds), so the recipe report can redraw or combine
runs without re-running a model. Each analysis of ``espnet_peft.analysis.methods`` draws its own figures with these
helpers (``methods.write_plots`` draws everything one ``analysis.json`` has).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from espnet_peft.utils.pyplot import pyplot

#: curve colours per model label, so that A and B keep theirs across figures
_MODEL_STYLE = {"A": {"color": "tab:blue", "marker": "o"}, "B": {"color": "tab:orange", "marker": "s"}}


def _integer_x(ax: Any) -> None:
    # layers and ranks are counts: no 0.5 ticks
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _finite(values: Sequence[Optional[float]]) -> list[float]:
    # analysis.json stores NaN (a dead layer's CKA) as null
    return [math.nan if v is None else float(v) for v in values]


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as PNG (making its dir) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def heatmap(matrix: Sequence[Sequence[Optional[float]]], path: Path, title: str, ylabel: str, xlabel: str,
            vmin: float = 0.0, vmax: float = 1.0, ticklabels: Optional[Sequence[str]] = None) -> Path:
    """Layer x layer matrix (rows: ``ylabel`` layers, columns: ``xlabel`` layers), values annotated when small;
    ``ticklabels`` names rows and columns (a square matrix of named items, e.g. models) instead of numbering them."""
    import numpy as np

    plt = pyplot()
    data = np.array([_finite(row) for row in matrix], dtype=float)
    rows, cols = data.shape
    fig, ax = plt.subplots(figsize=(1.6 + 0.45 * max(cols, 4), 1.2 + 0.45 * max(rows, 4)))
    image = ax.imshow(data, vmin=vmin, vmax=vmax, cmap="magma", origin="lower", aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if rows * cols <= 144:  # numbers stay legible up to 12 x 12
        for i in range(rows):
            for j in range(cols):
                if not math.isnan(data[i, j]):
                    ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if data[i, j] < (vmin + vmax) / 2 else "black")
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    if ticklabels is not None:
        ax.set_xticklabels(ticklabels, rotation=45, ha="right", fontsize=8)
        ax.set_yticklabels(ticklabels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return save_figure(fig, path)


def layer_curves(path: Path, title: str, panels: Sequence[tuple[str, Mapping[str, Sequence[Optional[float]]]]],
                 ylims: Optional[Sequence[Optional[tuple[float, float]]]] = None, xlabel: str = "layer") -> Path:
    """One panel per ``(ylabel, {curve label: per-layer values})``, side by side."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.8), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for k, (ax, (ylabel, curves)) in enumerate(zip(axes[0], panels)):
        for i, (label, values) in enumerate(curves.items()):
            style = _MODEL_STYLE.get(label, {"color": cmap(i % 10), "marker": "o"})
            ax.plot(range(len(values)), _finite(values), label=label, markersize=4, **style)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        _integer_x(ax)
        ax.ticklabel_format(axis="y", useOffset=False)  # CKA near 1: 0.9997, not "+1" and -0.0003
        if ylims and ylims[k]:
            ax.set_ylim(*ylims[k])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_drift(curves: Mapping[str, Sequence[Optional[float]]], path: Path, title: str,
               xlabel: str = "encoder layer") -> Path:
    """The drift map: per layer, CKA(pretrained layer l, adapted layer l); one curve per adapted model.

    The y axis ends at 1 and starts just below the lowest value: adapters often move CKA by 1e-3 or less, which a
    0-1 axis would flatten into one line.
    """
    values = [v for c in curves.values() for v in _finite(c) if not math.isnan(v)]
    low = min(values, default=0.0)
    pad = max(1e-4, 0.1 * (1.0 - low))
    return layer_curves(path, title, [("CKA(source, adapted) per layer", curves)], ylims=[(low - pad, 1.0 + pad)],
                        xlabel=xlabel)


def plot_energy(energy: Mapping[str, Mapping[str, Any]], path: Path, title: str) -> Path:
    """Cumulative SVD energy of every adapter's activations and gradients (thin lines) and their mean (thick)."""
    import numpy as np

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, kind in zip(axes, ("act", "grad")):
        curves = [np.asarray(stats[f"{kind}_energy"], dtype=float) for stats in energy.values()
                  if stats.get(f"{kind}_energy")]
        for curve in curves:
            ax.plot(range(1, len(curve) + 1), curve, color="grey", alpha=0.35, lw=0.8)
        if curves:
            width = min(len(c) for c in curves)
            ax.plot(range(1, width + 1), np.mean([c[:width] for c in curves], axis=0), color="tab:red", lw=2,
                    label=f"mean of {len(curves)} adapters")
            k90 = [stats[f"{kind}_k90"] for stats in energy.values() if stats.get(f"{kind}_k90") is not None]
            ax.set_title(f"{'activations' if kind == 'act' else 'gradients'}: median k90 = {np.median(k90):g}")
            ax.legend(fontsize=8)
        ax.axhline(0.9, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("k (singular directions)")
        _integer_x(ax)
        ax.set_ylabel("cumulative energy E_k")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_map(points: Sequence[Sequence[float]], labels: Sequence[str], path: Path, title: str) -> Path:
    """Named points on a plane (an MDS map of models): the closer two points, the more alike the models."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for (x, y), label in zip(points, labels):
        ax.scatter([x], [y], s=30)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return save_figure(fig, path)

