"""The report's figures: learning against forgetting per domain, and along each swept adapter field.

They plot the dict that ``statistics.summarise`` returns (results.json), with both bootstrap intervals of a row as
error bars; matplotlib is imported on first use (``espnet_peft.utils.pyplot``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from espnet_peft.recipe.field_settings import format_value
from espnet_peft.recipe.report.statistics import value_order
from espnet_peft.utils.pyplot import pyplot


def _errorbars(ax: Any, rows: Sequence[Mapping[str, Any]], **kwargs: Any) -> None:
    """Rows at (forgetting, learning), with both intervals as asymmetric error bars."""
    x = [r["forgetting"] for r in rows]
    y = [r["learning"] for r in rows]

    def bars(values: List[Mapping[str, float]]) -> List[List[float]]:
        return [[v["point"] - v["low"] for v in values], [v["high"] - v["point"] for v in values]]

    ax.errorbar([v["point"] for v in x], [v["point"] for v in y], xerr=bars(x), yerr=bars(y), capsize=3, **kwargs)


def _learning_forgetting_axes(ax: Any, title: str) -> None:
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_title(f"{title} (better: up and left)")
    ax.set_xlabel("forgetting: ΔWER on source vs zero-shot (abs. points)")
    ax.set_ylabel("learning: relative WER reduction on target (%)")
    ax.grid(alpha=0.3)


def plot_learning_vs_forgetting(results: Mapping[str, Any], path: Path) -> Path:
    """One panel per domain; a point per adapted row at (forgetting, learning) with both intervals as error bars."""
    plt = pyplot()
    domains = results["domains"]
    fig, axes = plt.subplots(1, len(domains), figsize=(5.5 * len(domains), 4.5), squeeze=False)
    methods = sorted({row["method"] for block in domains.values() for row in block["rows"]})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    for ax, (domain, block) in zip(axes[0], domains.items()):
        for row in block["rows"]:
            if row["forgetting"] is None:
                continue
            _errorbars(ax, [row], fmt="o", color=colours[row["method"]])
            ax.annotate(row["label"], (row["forgetting"]["point"], row["learning"]["point"]),
                        textcoords="offset points", xytext=(5, 5), fontsize=8)
        _learning_forgetting_axes(ax, domain)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def sweeps(results: Mapping[str, Any]) -> Dict[Tuple[str, str], Dict[str, List[Tuple[Any, Mapping[str, Any]]]]]:
    """{(method, field): {domain: [(value, row)] by value}} for every swept field with two or more values.

    A row is on the sweep of a field when its settings give that field: the sweep points, and the method's default
    row, whose settings list the default value of every swept field.
    """
    found: Dict[Tuple[str, str], Dict[str, List[Tuple[Any, Mapping[str, Any]]]]] = {}
    for domain, block in results["domains"].items():
        for row in block["rows"]:
            if row["forgetting"] is None:
                continue
            for field, value in row["settings"].items():
                found.setdefault((row["method"], field), {}).setdefault(domain, []).append((value, row))
    return {key: {d: sorted(points, key=lambda p: value_order(p[0])) for d, points in per_domain.items()}
            for key, per_domain in found.items()
            if any(len({format_value(v) for v, _ in points}) >= 2 for points in per_domain.values())}


def plot_sweep(method: str, field: str, points: Mapping[str, List[Tuple[Any, Mapping[str, Any]]]],
               path: Path) -> Path:
    """Learning against forgetting along one swept field: a line per domain, points labelled with their values."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for i, (domain, domain_points) in enumerate(points.items()):
        colour = plt.get_cmap("tab10")(i % 10)
        rows = [row for _, row in domain_points]
        _errorbars(ax, rows, fmt="-o", color=colour, label=domain, alpha=0.8)
        for value, row in domain_points:
            seeds = f" ({len(row['seeds'])} seeds)" if len(row["seeds"]) > 1 else ""
            ax.annotate(format_value(value) + seeds, (row["forgetting"]["point"], row["learning"]["point"]),
                        textcoords="offset points", xytext=(5, 5), fontsize=8, color=colour)
    _learning_forgetting_axes(ax, f"{method}, points labelled by {field}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
