"""Write the training config of one fine-tuning run (see espnet_peft.recipe.finetune_config).

    python -m espnet_peft.bin.make_finetune_config --base exp/source/config.yaml --overrides conf/finetune.yaml \\
        --method ssvd_o --peft_conf_dir conf/peft --budget 40000 --seed 1 --set outer_share=0.25 --out train.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import yaml

from espnet_peft.atomic import atomic_write_text
from espnet_peft.injection import check_injection
from espnet_peft.model_inventory import linear_inventory, skeleton
from espnet_peft.recipe.finetune_config import all_methods, finetune_config
from espnet_peft.recipe.field_settings import SettingError, parse_setting
from espnet_peft.tuners import AdapterConfigError


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the source model's config.yaml")
    parser.add_argument("--overrides", type=Path, required=True, help="fine-tuning settings (optim, epochs, batch)")
    parser.add_argument("--method", required=True, choices=all_methods())
    parser.add_argument("--peft_conf_dir", type=Path, default=Path("conf/peft"))
    parser.add_argument("--budget", type=int, help="total trainable parameters (adapters only)")
    parser.add_argument("--seed", type=int, help="training seed (default: the overrides' or ESPnet's)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                        help="a field of the method's adapter config (repeatable), e.g. outer_share=0.25")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(cmd)
    try:
        settings = dict(parse_setting(s) for s in args.settings)
        config = finetune_config(args.base, args.overrides, args.method, args.peft_conf_dir, args.budget, settings,
                                 args.seed)
    except (SettingError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"make_finetune_config: {error}") from None
    if config.get("use_adapter"):  # the adapter config must fit this base model: refused now, not at training
        try:
            check_injection(skeleton(linear_inventory(args.base)), config["adapter_conf"])
        except AdapterConfigError as error:
            raise SystemExit(f"make_finetune_config: the {args.method} settings ({args.peft_conf_dir}/"
                             f"{args.method}.yaml) do not fit the model of {args.base}: {error}") from None
    atomic_write_text(args.out, yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    main()
