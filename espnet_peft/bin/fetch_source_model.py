"""Copy a source model (local dir or hub tag) into the recipe, with its BPE model and token list."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.recipe.source_model import fetch_source_model


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="a model dir (config.yaml + model file) or a hub tag")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--token_dir", type=Path, required=True)
    args = parser.parse_args(cmd)
    try:
        fetch_source_model(args.source, args.out, args.token_dir)
    except (FileNotFoundError, RuntimeError) as error:
        raise SystemExit(f"fetch_source_model: {error}") from None


if __name__ == "__main__":
    main()
