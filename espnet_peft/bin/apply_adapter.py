"""Apply an exported adapter package to its base model (refused for any other base model).

    python -m espnet_peft.bin.apply_adapter --task asr --base_config base/config.yaml \\
        --base_model_file base/model.pth --adapter_dir packages/myst_lora --output_dir exp/asr_myst_lora [--merge]

Without --merge the output is an adapter experiment for ``espnet_peft.bin.*_inference``; with --merge it is a plain
ESPnet model dir for stock ``espnet2.bin.*_inference``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.export import TASKS, apply_adapter_to_experiment


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--base_config", type=Path, required=True)
    parser.add_argument("--base_model_file", type=Path, required=True)
    parser.add_argument("--adapter_dir", type=Path, required=True)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--merge", action="store_true", help="write a plain merged model instead")
    args = parser.parse_args(cmd)
    try:
        out = apply_adapter_to_experiment(args.task, args.base_config, args.base_model_file, args.adapter_dir,
                                          args.output_dir, merge=args.merge)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"apply_adapter: {error}") from None
    print(f"written to {out}/config.yaml and {out}/model.pth")


if __name__ == "__main__":
    main()
