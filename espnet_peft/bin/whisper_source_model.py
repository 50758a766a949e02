"""Make a recipe's source model from OpenAI Whisper (see :mod:`espnet_peft.recipe.whisper_source`).

    ESPNET_PEFT_WHISPER_DIR=~/.cache/espnet-peft/whisper python -m espnet_peft.bin.whisper_source_model \\
        --config conf/whisper_source.yaml --out exp/source --token_dir data/token_list
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.recipe.whisper_source import make_whisper_source


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="an ESPnet ASR config with encoder/decoder whisper")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--token_dir", type=Path, required=True)
    args = parser.parse_args(cmd)
    try:
        out = make_whisper_source(args.config, args.out, args.token_dir)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise SystemExit(f"whisper_source_model: {error}") from None
    print(f"source model in {out} (made from: {out / 'source.json'})")


if __name__ == "__main__":
    main()
