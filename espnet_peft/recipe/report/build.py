"""The whole report: RESULTS.md, results.json and the figures, from the run records of an experiment tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from espnet_peft.atomic import atomic_write_text
from espnet_peft.recipe import bootstrap
from espnet_peft.recipe.report.markdown import render_markdown
from espnet_peft.recipe.report.plots import plot_learning_vs_forgetting, plot_sweep, sweeps
from espnet_peft.recipe.report.schema import RunRecord
from espnet_peft.recipe.report.statistics import summarise
from espnet_peft.recipe.zero_shot_table import zero_shot_lines

#: renders RESULTS.md's Analysis section: (report results, analysis root, report dir, links from) -> markdown lines
AnalysisSection = Callable[[Mapping[str, Any], Path, Path, Path], List[str]]


def build_report(records: List[RunRecord], out_dir: Path, n_resamples: int = bootstrap.N_RESAMPLES,
                 seed: int = bootstrap.SEED, figures_only: bool = False, analysis_root: Optional[Path] = None,
                 links_from: Optional[Path] = None, analysis_section: Optional[AnalysisSection] = None,
                 zero_shot_dir: Optional[Path] = None) -> Dict[str, Path]:
    """Write RESULTS.md, results.json, learning_vs_forgetting.png and a sweep_<method>_<field>.png per sweep.

    ``figures_only`` writes just the plots (the recipe's figure stage; the report stage writes everything).
    ``analysis_root``: where ``python -m espnet_peft.bin.analyze`` wrote its runs (the recipe's stage 13); when it
    holds any, ``analysis_section`` (``espnet_peft.analysis.summary.report_section``, passed in by the CLI so that the
    recipe package does not import the analysis one) renders RESULTS.md's "Analysis" section and one drift figure per
    domain into the report dir. Its figure links are relative to ``links_from`` (default: ``out_dir``).
    ``zero_shot_dir``: the source model's decodes (the recipe's ``exp/source/decode_zeroshot``), for the zero-shot
    table of every set (:mod:`espnet_peft.recipe.zero_shot_table`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = summarise(records, n_resamples=n_resamples, seed=seed)
    written = {"learning_vs_forgetting": plot_learning_vs_forgetting(results, out_dir / "learning_vs_forgetting.png")}
    for (method, field), points in sweeps(results).items():
        name = f"sweep_{method}_{field}"
        written[name] = plot_sweep(method, field, points, out_dir / f"{name}.png")
    analysis: List[str] = []
    if analysis_root is not None and Path(analysis_root).is_dir() and analysis_section is not None:
        analysis = analysis_section(results, Path(analysis_root), out_dir, Path(links_from or out_dir))
    if not figures_only:
        written["results_md"] = out_dir / "RESULTS.md"
        written["results_json"] = out_dir / "results.json"
        zero_shot = zero_shot_lines(zero_shot_dir) if zero_shot_dir is not None else []
        markdown = render_markdown(results) + "".join(line + "\n" for line in [*zero_shot, *analysis])
        atomic_write_text(written["results_json"], json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(written["results_md"], markdown)
    return written
