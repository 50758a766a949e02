"""Export the adapters of an experiment as an adapter-only package (weights, config, base-model fingerprint).

    python -m espnet_peft.bin.export_adapter --task asr --exp_dir exp/asr_lora --output_dir packages/myst_lora
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from espnet_peft.bin.merge import experiment_arguments, resolve_experiment
from espnet_peft.export import export_adapter


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = experiment_arguments(argparse.ArgumentParser(description=__doc__)).parse_args(cmd)
    config, model_file = resolve_experiment(args)
    out = export_adapter(args.task, config, model_file, args.output_dir)
    print(f"adapter package written to {out}")


if __name__ == "__main__":
    main()
