"""Pack a recipe's trained source model for the repository: the archive, its SHA256SUMS line and a model card.

    python -m espnet_peft.bin.ship_source_model --exp_dir exp/source --token_dir data/token_list \
        --corpus data/local/synth/corpus.json --decode_dir exp/source/decode_zeroshot \
        --sets source_test source_newtext child_test accent_test --out source_model/owsm_synth_ebf.zip \
        --command "./run.sh --retrain_source true --stop_stage 5"

The archive is ``espnet2.bin.pack``'s layout (``meta.yaml``, the config, the best checkpoint, the BPE model and the
global-MVN statistics), so ``fetch_source_model`` and ESPnet's own loaders read it. ``SHA256SUMS`` next to it is
what the recipe's stage 5 checks.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
import yaml

from espnet_peft.atomic import atomic_write_text
from espnet_peft.recipe import model_card
from espnet_peft.recipe.provenance import file_sha256
from espnet_peft.utils.environment import environment


def pack(exp_dir: Path, model_file: Path, token_dir: Path, out: Path) -> None:
    from espnet2.main_funcs.pack_funcs import pack as espnet_pack

    config = yaml.safe_load((exp_dir / "config.yaml").read_text(encoding="utf-8"))
    options = [token_dir / "bpe.model"]
    stats = (config.get("normalize_conf") or {}).get("stats_file")
    if stats:
        options.append(Path(stats))
    tmp = out.with_name(f".tmp.{out.name}")  # the packer picks the format by the suffix
    espnet_pack(files={"s2t_model_file": model_file}, yaml_files={"s2t_train_config": exp_dir / "config.yaml"},
                outpath=tmp, option=options)
    os.replace(tmp, out)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_dir", type=Path, required=True)
    parser.add_argument("--model_file", type=Path, help="default: <exp_dir>/valid.acc.best.pth")
    parser.add_argument("--token_dir", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus generator's corpus.json")
    parser.add_argument("--decode_dir", type=Path, required=True, help="zero-shot decodes, scored")
    parser.add_argument("--sets", nargs="+", required=True, help="decoded sets for the card; the first is the "
                        "source-domain reference the others are compared with")
    parser.add_argument("--out", type=Path, required=True, help="the archive (.zip)")
    parser.add_argument("--card", type=Path, help="default: README.md next to --out")
    parser.add_argument("--command", required=True, help="the command that reproduces the model")
    parser.add_argument("--note", action="append", default=[], help="a line for the card's end; repeatable")
    args = parser.parse_args(cmd)
    model_file = (args.model_file or args.exp_dir / "valid.acc.best.pth").resolve()
    scores = model_card.set_scores(args.decode_dir, args.sets)  # fails before anything is written
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pack(args.exp_dir, model_file, args.token_dir, args.out)
    sha256 = file_sha256(args.out)
    atomic_write_text(args.out.parent / "SHA256SUMS", f"{sha256}  {args.out.name}\n")
    n_params = sum(t.numel() for t in torch.load(model_file, map_location="cpu").values())
    card = model_card.render(
        args.out.name, sha256, args.out.stat().st_size, n_params, model_card.training_summary(args.exp_dir),
        json.loads(args.corpus.read_text(encoding="utf-8")), scores, args.sets[0], args.command,
        environment()['cpu'], args.note, model_card.search_description(args.decode_dir, args.sets[0]))
    card_path = args.card or args.out.parent / "README.md"
    atomic_write_text(card_path, card)
    print(f"{args.out} (sha256 {sha256}), card {card_path}")


if __name__ == "__main__":
    main()
