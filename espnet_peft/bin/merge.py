"""Merge an adapted experiment into a plain ESPnet model dir that stock ESPnet loads without the plugin.

    python -m espnet_peft.bin.merge --task s2t --exp_dir exp/s2t_ssvd_o --output_dir exp/s2t_ssvd_o/merged
    python -m espnet2.bin.s2t_inference --s2t_train_config exp/s2t_ssvd_o/merged/config.yaml \\
        --s2t_model_file exp/s2t_ssvd_o/merged/model.pth ...
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Optional, Sequence

from espnet_peft.export import TASKS, config_task, merge_experiment


def experiment_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--exp_dir", type=Path, required=True, help="training output dir (holds config.yaml)")
    parser.add_argument("--config", type=Path, help="default: EXP_DIR/config.yaml")
    parser.add_argument("--model_file", type=Path,
                        help="checkpoint to use (default: EXP_DIR/valid.acc.best.pth, else valid.loss.best.pth); "
                             "decode a single best checkpoint, not an average of factor matrices")
    parser.add_argument("--output_dir", type=Path, required=True)
    return parser


def resolve_experiment(args: argparse.Namespace) -> tuple:
    config = args.config or args.exp_dir / "config.yaml"
    model_file = args.model_file
    if model_file is None:
        candidates = [args.exp_dir / n for n in ("valid.acc.best.pth", "valid.loss.best.pth", "latest.pth")]
        model_file = next((c for c in candidates if c.exists()), None)
        if model_file is None:
            raise SystemExit(f"no checkpoint found in {args.exp_dir}: pass --model_file")
    for path in (config, model_file):
        if not Path(path).is_file():
            raise SystemExit(f"file not found: {path}")
    detected = config_task(config)
    if detected != args.task:
        raise SystemExit(f"{config} is an {detected} experiment (by its preprocessor), not {args.task}: "
                         f"run with --task {detected}")
    return config, model_file


def run_on_experiment(description: str, action: Callable[..., Path], what: str,
                      cmd: Optional[Sequence[str]] = None) -> None:
    """Shared CLI of the commands that read one experiment: ``action(task, config, model_file, output_dir)``."""
    args = experiment_arguments(argparse.ArgumentParser(description=description)).parse_args(cmd)
    try:
        config, model_file = resolve_experiment(args)
        out = action(args.task, config, model_file, args.output_dir)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"{what}: {error}") from None
    print(f"{what} written to {out}")


def main(cmd: Optional[Sequence[str]] = None) -> None:
    run_on_experiment(__doc__, merge_experiment, "merged model", cmd)


if __name__ == "__main__":
    main()
