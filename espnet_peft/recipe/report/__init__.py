"""RESULTS.md, results.json and plots comparing adapters on learning a shifted domain vs forgetting the source one.

* :mod:`.schema`: the input, one ``run_info.json`` per experiment, read into a ``RunRecord``;
* :mod:`.statistics`: rows over seeds, compared with the zero-shot run (the results.json schema is in ``summarise``);
* :mod:`.markdown`: RESULTS.md's text;
* :mod:`.plots`: the learning-vs-forgetting and sweep figures;
* :mod:`.build`: ``build_report``, which writes them all.

The machine the report was made on is described by ``espnet_peft.utils.environment``.
"""

from espnet_peft.recipe.report.build import AnalysisSection, build_report
from espnet_peft.recipe.report.markdown import render_markdown
from espnet_peft.recipe.report.plots import plot_learning_vs_forgetting, plot_sweep, sweeps
from espnet_peft.recipe.report.schema import ReportError, RunRecord, collect_results, load_run_info
from espnet_peft.recipe.report.statistics import summarise

__all__ = ["AnalysisSection", "ReportError", "RunRecord", "build_report", "collect_results", "load_run_info",
           "plot_learning_vs_forgetting", "plot_sweep", "render_markdown", "summarise", "sweeps"]
