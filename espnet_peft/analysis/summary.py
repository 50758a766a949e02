"""Markdown from analysis results: ``summary.md`` of one run, and the "Analysis" section of the recipe's RESULTS.md.

Both read plain ``analysis.json`` dicts (no torch import: the report imports this module), and link figures by paths
relative to where the markdown file lives.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from statistics import median
from typing import Any, Mapping, Optional, Sequence

ANALYSIS_JSON = "analysis.json"


def _num(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["|" + "|".join(header) + "|", "|" + "---|" * len(header), *("|" + "|".join(r) + "|" for r in rows)]


def _link(target: Path, links_from: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(links_from).resolve())).as_posix()


# ---------------------------------------------------------------------------------------------------------------------
# One run


def drift_stats(drift: Sequence[Optional[float]]) -> dict[str, Any]:
    """Mean CKA over layers, the lowest one and where, and the last layer's (None entries are dead layers)."""
    values = [(i, v) for i, v in enumerate(drift) if v is not None]
    if not values:
        return {"mean": None, "min": None, "min_layer": None, "last": None}
    low = min(values, key=lambda iv: iv[1])
    return {"mean": sum(v for _, v in values) / len(values), "min": low[1], "min_layer": low[0], "last": drift[-1]}


def energy_medians(energy: Mapping[str, Mapping[str, Any]]) -> dict[str, Optional[float]]:
    """Median rank, activation k90 and gradient k90 over a model's adapter layers."""
    if not energy:
        return {"rank": None, "act_k90": None, "grad_k90": None}
    return {key: float(median(stats[key] for stats in energy.values())) for key in ("rank", "act_k90", "grad_k90")}


def _per_layer_rows(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per layer of model A (B's columns where it has that layer): whatever the run computed."""
    columns: list[tuple[str, Sequence[Optional[float]], int]] = []
    cka = results.get("cka") or {}
    if cka.get("drift") is not None:
        columns.append(("CKA(A_l, B_l)", cka["drift"], 4))
    for label in ("A", "B"):
        lens = (results.get("lens") or {}).get(label)
        if lens:
            if lens.get("cer") is not None:
                columns.append((f"lens CER {label} (%)", lens["cer"], 1))
            columns.append((f"lens KL {label}", lens["kl"], 3))
    for label in ("A", "B"):
        contribution = (results.get("contribution") or {}).get(label)
        if contribution:
            columns.append((f"‖u‖/‖h‖ {label}", contribution["update_ratio"], 3))
    for label in ("A", "B"):
        ablation = (results.get("ablation") or {}).get(label)
        if ablation:
            base = ablation["single"]["baseline_cer"]
            columns.append((f"ΔCER erase {label}", [c - base for c in ablation["single"]["cer"]], 1))
    layers = max((len(values) for _, values, _ in columns), default=0)
    rows = [[str(i)] + [_num(values[i], d) if i < len(values) else "-" for _, values, d in columns]
            for i in range(layers)]
    return ["layer"] + [name for name, _, _ in columns], rows


def render_summary(results: Mapping[str, Any], figures: Mapping[str, Path], out_dir: Path,
                   more: Sequence[str] = ()) -> str:
    """``summary.md`` of one analysis run: models, data, per-layer table, energy, ``more`` (the other analyses'
    lines, ``methods.summary_lines``), figures, skips, timing."""
    models = results["models"]
    lines = ["# Analysis summary", "", "Written by `python -m espnet_peft.bin.analyze`; numbers in `analysis.json`.",
             "", "## Models", ""]
    lines += _table(["", "kind", "path", "checkpoint", "layers", "parameters", "adapter layers"],
                    [[label, m["kind"], f"`{m['path']}`", f"`{m.get('model_file') or m.get('adapter') or '-'}`",
                      str(len(m["layers"])), f"{m['parameters']:,}", str(m["adapter_layers"])]
                     for label, m in models.items()])
    data = results["data"]
    cka = results.get("cka") or {}
    lines += ["", f"Data: `{data['source']}`, {data['utterances']} utterances"
              + (f", {cka['frames']} frames for CKA (real audio only)" if cka else "") + "."]
    if cka.get("drift") is not None:
        d = drift_stats(cka["drift"])
        lines += ["", f"**Drift** (linear CKA of each layer, A vs B; 1 = unchanged up to rotation and scale): mean "
                      f"{_num(d['mean'], 4)}, lowest {_num(d['min'], 4)} at layer {d['min_layer']}, last layer "
                      f"{_num(d['last'], 4)}."]
    header, rows = _per_layer_rows(results)
    if rows:
        lines += ["", "## Per layer", "", *_table(header, rows)]
    energy = results.get("energy") or {}
    for label, per_layer in energy.items():
        med = energy_medians(per_layer)
        loss = (results.get("energy_loss") or {}).get(label, "loss")
        fresh = (results.get("energy_vs_untrained") or {}).get(label) or {}
        untrained = "" if not fresh else (
            f" With freshly initialised adapters (where training started) the medians are "
            f"{_num(median(c['untrained_act_k90'] for c in fresh.values()), 0)} and "
            f"{_num(median(c['untrained_grad_k90'] for c in fresh.values()), 0)} (0: an all-zero matrix).")
        lines += ["", f"## Adapter SVD energy ({label}, gradients of the {loss})", "",
                  f"{len(per_layer)} adapter layers; median rank {_num(med['rank'], 0)}, median k90 of activations "
                  f"{_num(med['act_k90'], 0)}, of gradients {_num(med['grad_k90'], 0)} (k90: fewest singular "
                  f"directions holding 90% of the energy).{untrained}", "", "<details><summary>per layer</summary>", ""]
        lines += _table(["adapter layer", "rank", "act k90", "grad k90", "untrained act k90", "untrained grad k90"],
                        [[f"`{name}`", str(s["rank"]), str(s["act_k90"]), str(s["grad_k90"]),
                          str(fresh.get(name, {}).get("untrained_act_k90", "-")),
                          str(fresh.get(name, {}).get("untrained_grad_k90", "-"))]
                         for name, s in per_layer.items()])
        lines += ["", "</details>"]
    if more:
        lines += ["", "## More similarity measures", "", *more]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({_link(path, out_dir)})" for name, path in figures.items()]
    skipped = results.get("skipped") or {}
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {analysis} ({label}): {reason}" for analysis, per in skipped.items()
                  for label, reason in per.items()]
    timing = results.get("timing_s") or {}
    if timing:
        lines += ["", "## Time (s)", "", ", ".join(f"{k}: {v:.1f}" for k, v in timing.items())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# The recipe report's "Analysis" section


def collect_analyses(analysis_root: Path) -> dict[Path, dict[str, Any]]:
    """Every ``analysis.json`` under ``analysis_root``, keyed by the resolved dir of its model B (the adapted one)."""
    found = {}
    for path in sorted(Path(analysis_root).rglob(ANALYSIS_JSON)):
        results = json.loads(path.read_text(encoding="utf-8"))
        model_b = results.get("models", {}).get("B")
        if model_b:
            results["_dir"] = str(path.parent)
            found[Path(model_b["path"]).resolve()] = results
    return found


def report_section(report: Mapping[str, Any], analysis_root: Path, figure_dir: Path,
                   links_from: Path) -> list[str]:
    """Markdown lines of the RESULTS.md "Analysis" section; writes one combined drift figure per domain.

    ``report``: the report's results (``espnet_peft.recipe.report.statistics.summarise``): each row's ``run_infos``
    paths (one per seed) name its experiment dirs; the first with an analysis is matched with the analysed model B.
    Rows without an analysis are left out; no lines at all when nothing matches.
    """
    from espnet_peft.analysis.plots import plot_drift
    from espnet_peft.analysis.seed_intervals import report_lines

    analyses = collect_analyses(analysis_root)
    if not analyses:
        return []
    lines = ["", "## Analysis: what changed inside the model", "",
             "Per adapted model, against the source model on source-domain test audio (`python -m "
             "espnet_peft.bin.analyze`, recipe stage 13). Drift: linear CKA between the source and the adapted "
             "model's representations, layer by layer (1 = unchanged up to rotation and scale); the curves sit "
             "beside the forgetting numbers. Decoder CKA: the same for the attention decoder's layers, "
             "teacher-forced on the reference transcripts (mean over layers). Lens: greedy CTC CER of the CTC head "
             "on the adapted model's last encoder layer. Energy k90: median over adapter layers of the fewest singular directions holding 90% "
             "of the bottleneck activations' / gradients' energy."]
    for domain, block in report["domains"].items():
        matched = [(row, next((analyses[d] for d in (Path(p).parent.resolve() for p in row["run_infos"])
                               if d in analyses), None)) for row in block["rows"]]
        matched = [(row, res) for row, res in matched if res is not None]
        if not matched:
            continue
        curves = {}
        rows = []
        for row, res in matched:
            forgetting = row["forgetting"]["point"] if row.get("forgetting") else None
            cka = res.get("cka") or {}
            drift = drift_stats(cka["drift"]) if cka.get("drift") is not None else drift_stats([])
            if cka.get("drift") is not None:
                curves[f"{row['label']} (forgetting {forgetting:+.2f})" if forgetting is not None
                       else row["label"]] = cka["drift"]
            lens_b = (res.get("lens") or {}).get("B") or {}
            lens_cer = lens_b["cer"][-1] if lens_b.get("cer") else None
            energy = energy_medians((res.get("energy") or {}).get("B") or {})
            decoder = drift_stats((res.get("decoder_drift") or {}).get("drift") or [])
            figures = [f"[{name}]({_link(Path(res['_dir']) / f'{name}.png', links_from)})"
                       for name in ("drift", "cka_AB", "lens", "contribution", "branches", "energy_B", "decoder_drift")
                       if (Path(res["_dir"]) / f"{name}.png").is_file()]
            rows.append([row["label"], _num(forgetting, 2), _num(drift["mean"], 4),
                         f"{_num(drift['min'], 4)} (layer {drift['min_layer']})" if drift["min"] is not None else "-",
                         _num(drift["last"], 4), _num(decoder["mean"], 4), _num(lens_cer, 1),
                         f"{_num(energy['act_k90'], 0)} / {_num(energy['grad_k90'], 0)}",
                         f"[summary]({_link(Path(res['_dir']) / 'summary.md', links_from)}) " + " ".join(figures)])
        lines += ["", f"### {domain}", ""]
        if curves:
            figure = plot_drift(curves, Path(figure_dir) / f"analysis_drift_{domain}.png",
                                f"{domain}: drift of each method on source-domain audio")
            lines += [f"![drift per method, {domain}]({_link(figure, links_from)})", ""]
        lines += _table(["method", "forgetting ΔWER src", "mean CKA", "lowest CKA", "last-layer CKA",
                         "decoder mean CKA", "lens CER (last layer, %)", "energy k90 act / grad", "details"], rows)
        lines += report_lines(block["rows"], analyses)
        models = Path(analysis_root) / domain / "models"
        if (models / "summary.md").is_file():  # stage 13's many-model comparison of the domain
            lines += ["", f"Every method against every other, layer by layer: [summary]"
                          f"({_link(models / 'summary.md', links_from)}), "
                          f"[map of the methods]({_link(models / 'models_map.png', links_from)})."]
    return lines
