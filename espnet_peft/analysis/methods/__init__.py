"""Every analysis of ``python -m espnet_peft.bin.analyze`` and recipe stage 13: one module each, one interface
(``base.Analysis``), one registry (``registry.REGISTRY``), as the adapters are in ``espnet_peft.tuners``.

Every module of this package is imported here, so adding an analysis is adding a file. Import order (``ORDER``, then
any other module by name) is the order of the sections in ``analysis.json`` and of ``--analyses all``.
"""

import importlib
import pkgutil
from pathlib import Path
from typing import Any, Mapping

#: the shipped analyses' modules, in output order
ORDER = ("cka", "cca", "neurons", "lens", "contribution", "branches", "ablation", "energy", "attention", "decoder")
for _module in (*ORDER, *sorted({m.name for m in pkgutil.iter_modules(__path__)} - {*ORDER, "base", "registry"})):
    importlib.import_module(f"{__name__}.{_module}")  # each module registers its analyses

from espnet_peft.analysis.methods.base import Analysis, Needs, Run
from espnet_peft.analysis.methods.registry import REGISTRY, register

#: what a run does unless told otherwise: the recipe's stage 13 set (the others cost more forwards or memory)
DEFAULT_ANALYSES = ("cka", "lens", "contribution", "branches", "energy", "decoder_drift", "decoder_contribution",
                    "decoder_branches")



def write_plots(results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Every figure of the analyses in ``results`` (an ``analysis.json`` dict): ``{figure name: path}``."""
    written: dict[str, Path] = {}
    for name, analysis in REGISTRY.items():
        if results.get(name):
            written.update(analysis().plot(results, Path(out_dir)))
    return written


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    """What each analysis in ``results`` adds to ``summary.md`` beyond the shared per-layer table."""
    lines: list[str] = []
    for name, analysis in REGISTRY.items():
        if results.get(name):
            lines += analysis().summary_lines(results)
    return lines


__all__ = ["DEFAULT_ANALYSES", "REGISTRY", "Analysis", "Needs", "Run", "register", "summary_lines",
           "write_plots"]
