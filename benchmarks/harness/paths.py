"""Where the benchmarks live: the checkout they measure and the folder of their committed results."""

from __future__ import annotations

from pathlib import Path

#: the checkout root (``benchmarks/`` is in it)
REPO = Path(__file__).resolve().parents[2]
#: the committed JSON records the README and docs quote
RESULTS_DIR = REPO / "benchmarks" / "results"
