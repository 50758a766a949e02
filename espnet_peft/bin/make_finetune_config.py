"""Write the training config of one fine-tuning run (see espnet_peft.recipe.finetune_config)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import yaml

from espnet_peft.recipe.finetune_config import finetune_config


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="the source model's config.yaml")
    parser.add_argument("--overrides", type=Path, required=True, help="fine-tuning settings (optim, epochs, batch)")
    parser.add_argument("--method", required=True, help="lora | dora | pissa | ssvd | ssvd_o | full")
    parser.add_argument("--peft_conf_dir", type=Path, default=Path("conf/peft"))
    parser.add_argument("--budget", type=int, help="total trainable parameters (adapters only)")
    parser.add_argument("--outer_share", type=float)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(cmd)
    config = finetune_config(args.base, args.overrides, args.method, args.peft_conf_dir, args.budget, args.outer_share)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    tmp.rename(args.out)


if __name__ == "__main__":
    main()
