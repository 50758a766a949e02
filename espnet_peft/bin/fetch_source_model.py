"""Copy a source model (local dir, packed archive or hub tag) into the recipe, with its BPE model and token list.

    python -m espnet_peft.bin.fetch_source_model --source espnet/owsm_v3.1_ebf_base --out exp/source \\
        --token_dir data/token_list

The checkpoint is checked strictly against the model the installed ESPnet builds from its config (known key
differences between ESPnet versions are renamed); see espnet_peft.recipe.source_model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.recipe.source_model import fetch_source_model


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True,
                        help="a model dir (config.yaml + model file, or a hub repository with meta.yaml), an "
                             "archive from espnet2.bin.pack, or a hub tag (owner/name[@revision])")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--token_dir", type=Path, required=True)
    parser.add_argument("--cache_dir", type=Path,
                        help="hub download cache (default: $HF_HUB_CACHE, else $HF_HOME/hub, else "
                             "~/.cache/huggingface/hub)")
    parser.add_argument("--lang_token", default="<eng>", help="must be in an S2T model's token list")
    parser.add_argument("--task_token", default="<asr>", help="must be in an S2T model's token list")
    parser.add_argument("--task", choices=("asr", "s2t", "s2t_ctc"),
                        help="the kind of model the recipe expects (refused if the source is another kind)")
    parser.add_argument("--sha256", help="expected sha256 of a packed model file (refused if it differs)")
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        fetch_source_model(args.source, args.out, args.token_dir, args.cache_dir,
                           special_tokens=[args.lang_token, args.task_token], expected_sha256=args.sha256,
                           expected_task=args.task)
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        raise SystemExit(f"fetch_source_model: {error}") from None
    print(f"source model in {args.out} (what was changed: {args.out / 'source.json'})")


if __name__ == "__main__":
    main()
