"""Merge and export many adapted experiments in one process (the recipe's stage 11).

For each experiment dir this writes ``<exp>/merged`` (plain ESPnet model, see ``espnet_peft.bin.merge``) and
``<exp>/adapter`` (adapter-only package, see ``espnet_peft.bin.export_adapter``). Each output records the sha256 of
the checkpoint and config it came from and of the files it holds (``made_from.json``), and is redone when either
input changed (a retraining) or one of its files was edited. One process for all experiments because importing the
ESPnet tasks costs 10-15 s per process.

    python -m espnet_peft.bin.package_experiments --task s2t exp/child_lora_s0 exp/child_ssvd_o_outer_share0.25_s0
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from tqdm import tqdm

from espnet_peft.export import CHECKSUMS, PACKAGE_FILES, TASKS, export_adapter, merge_experiment
from espnet_peft.recipe.provenance import is_current_or_say_why, made_from, mark_made_from


def package_experiment(task: str, exp_dir: Path, model_name: str) -> None:
    config, model_file = exp_dir / "config.yaml", exp_dir / model_name
    for path in (config, model_file):
        if not path.is_file():
            raise SystemExit(f"file not found: {path} (has {exp_dir} finished training? re-run stage 7)")
    record = made_from({"model": model_file, "config": config}, task=task)
    outputs = {"adapter": [*PACKAGE_FILES, CHECKSUMS], "merged": ["config.yaml", "model.pth"]}
    try:
        for out_dir, write in ((exp_dir / "adapter", export_adapter), (exp_dir / "merged", merge_experiment)):
            if not is_current_or_say_why(out_dir, record):  # also when a file of it was edited after it was written
                write(task, config, model_file, out_dir)
                mark_made_from(out_dir, record, outputs[out_dir.name])
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"{exp_dir}: {error}") from None


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--model_name", default="valid.acc.best.pth",
                        help="checkpoint file inside each experiment (a single best checkpoint, not an average)")
    parser.add_argument("exp_dirs", nargs="+", type=Path)
    args = parser.parse_args(cmd)
    for exp_dir in tqdm(args.exp_dirs, desc="merge + export", unit="exp"):
        package_experiment(args.task, exp_dir, args.model_name)
    print(f"merged models and adapter packages written for {len(args.exp_dirs)} experiment(s)")


if __name__ == "__main__":
    main()
