"""Write ``run_info.json`` for one experiment (or the zero-shot source model), the input of make_report.

    python -m espnet_peft.bin.write_run_info --exp_dir exp/child_ssvd_o_outer_share0.25_s0 --domain child \\
        --method ssvd_o --seed 0 --set outer_share=0.25 --label "ssvd_o outer_share=0.25" \\
        --target exp/child_ssvd_o_outer_share0.25_s0/decode/child_test \\
        --source exp/child_ssvd_o_outer_share0.25_s0/decode/source_test
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.atomic import atomic_write_text
from espnet_peft.recipe.field_settings import SettingError, parse_setting
from espnet_peft.utils.structured_files import UnreadableFileError, read_json


def _read(path: Path) -> dict:
    try:
        return read_json(path) if path.is_file() else {}
    except UnreadableFileError as error:
        raise SystemExit(f"write_run_info: {error}") from None


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exp_dir", type=Path, required=True, help="training dir (trainable_parameters.json, "
                        "resources.json); for zero_shot, where to write run_info.json")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--method", required=True, help="adapter name, full, or zero_shot")
    parser.add_argument("--seed", type=int, help="the training seed")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                        help="a swept adapter field and its value in this run (repeatable)")
    parser.add_argument("--label", help="the report's row name (default: the method and the settings)")
    parser.add_argument("--target", type=Path, required=True, help="scored decode dir of the target test set")
    parser.add_argument("--source", type=Path, required=True, help="scored decode dir of the source test set")
    parser.add_argument("--other_source", type=Path, action="append", default=[],
                        help="scored decode dir of one more source-domain test set (repeatable): the report adds its "
                             "WER and forgetting")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(cmd)
    counts = _read(args.exp_dir / "trainable_parameters.json")
    resources = _read(args.exp_dir / "resources.json")
    if args.method != "zero_shot" and not counts:
        raise SystemExit(f"{args.exp_dir}/trainable_parameters.json is missing: was {args.exp_dir} trained?")
    info = {
        "domain": args.domain,
        "method": args.method,
        "trainable_params": counts.get("trainable", 0) if args.method != "zero_shot" else 0,
        # relative to the exp dir (the report reads them from there): a recipe dir that is moved keeps its report
        "scores": {role: os.path.relpath(path.resolve(), args.exp_dir.resolve())
                   for role, path in (("target", args.target), ("source", args.source))},
    }
    if args.other_source:
        info["other_sources"] = {path.name: os.path.relpath(path.resolve(), args.exp_dir.resolve())
                                 for path in args.other_source}
    try:
        settings = dict(parse_setting(s) for s in args.settings)
    except SettingError as error:
        raise SystemExit(f"write_run_info: {error}") from None
    if args.seed is not None:
        info["seed"] = args.seed
    if settings:
        info["settings"] = settings
    if args.label:
        info["label"] = args.label
    if resources:
        info["train_time_s"] = resources["wall_time_s"]
        info["peak_mem_mb"] = resources["peak_rss_mb"]
    if args.device:
        info["device"] = args.device
    atomic_write_text(args.exp_dir / "run_info.json", json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
