"""Collect every exp/**/run_info.json and write RESULTS.md, results.json and the plots.

    python -m espnet_peft.bin.make_report --exp_root exp --out exp/report

run_info.json schema: see espnet_peft/recipe/report/schema.py. When EXP_ROOT/analysis (or --analysis_root) holds runs of
espnet_peft.bin.analyze (the recipe's stage 13), RESULTS.md also gets an Analysis section: drift per method beside
the forgetting numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.analysis.summary import report_section  # json + matplotlib only, no torch
from espnet_peft.recipe import bootstrap
from espnet_peft.recipe.report import ReportError, build_report, collect_results
from espnet_peft.recipe.provenance import ProvenanceError
from espnet_peft.recipe.scoring import ScoringError


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_root", type=Path, required=True, help="searched recursively for run_info.json")
    parser.add_argument("--out", type=Path, required=True, help="report dir")
    parser.add_argument("--n_resamples", type=int, default=bootstrap.N_RESAMPLES)
    parser.add_argument("--seed", type=int, default=bootstrap.SEED)
    parser.add_argument("--figures_only", action="store_true", help="write only the PNG plots")
    parser.add_argument("--analysis_root", type=Path,
                        help="runs of espnet_peft.bin.analyze to add as an Analysis section "
                             "(default: EXP_ROOT/analysis, when it exists)")
    parser.add_argument("--links_from", type=Path,
                        help="dir the RESULTS.md figure links are relative to (default: the parent of EXP_ROOT, "
                             "where recipes keep RESULTS.md)")
    args = parser.parse_args(cmd)
    try:
        written = build_report(collect_results(args.exp_root), args.out, args.n_resamples, args.seed,
                               figures_only=args.figures_only,
                               analysis_root=args.analysis_root or args.exp_root / "analysis",
                               links_from=args.links_from or args.exp_root.resolve().parent,
                               analysis_section=report_section,
                               zero_shot_dir=args.exp_root / "source" / "decode_zeroshot")
    except (ReportError, ScoringError, ProvenanceError, FileNotFoundError) as error:  # their messages name the file
        raise SystemExit(f"report: {error}") from None
    for path in written.values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
