"""Global MVN statistics (ESPnet ``feats_stats.npz``) of the unpadded speech of a data dir.

    python -m espnet_peft.bin.speech_stats --config conf/train_source.yaml \
        --wav_scp dump/raw/source_train/wav.scp --out exp/source/feats_stats.npz

Why not ESPnet's ``collect_stats``: it sees the audio after the S2T preprocessor has zero-padded it to the fixed
window (see ``espnet_peft.recipe.speech_stats``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import yaml

from espnet_peft.recipe.speech_stats import (
    build_frontend,
    speech_feature_stats,
    write_stats,
)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="training config whose frontend is used")
    parser.add_argument("--wav_scp", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max_utts", type=int, help="use only the first N utterances (sorted by id)")
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    with open(args.config, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    try:
        stats = speech_feature_stats(args.wav_scp, build_frontend(config), args.max_utts)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"speech_stats: {error}") from None
    write_stats(stats, args.out)
    print(f"{args.out}: {int(stats['count'])} frames")


if __name__ == "__main__":
    main()
