"""The command line every corpus preparer shares: the common options, the ``__main__`` wrapper.

Each corpus module adds its own options to :func:`base_parser` and builds the shared :class:`OutputOptions` from
the parsed arguments with :func:`output_options`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

from espnet_peft.recipe.corpora.audio import FS
from espnet_peft.recipe.corpora.kaldi_writing import OutputOptions
from espnet_peft.recipe.corpora.records import CorpusError


def base_parser(doc: str, corpus: str, convert: bool = True) -> argparse.ArgumentParser:
    """--root, --out, --wav_dir, --fs, --nj (and --convert, for corpora whose files may be usable as they are)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help=f"where the {corpus} release was unpacked")
    parser.add_argument("--out", type=Path, default=Path("data"), help="Kaldi dirs go to OUT/<set> (default data)")
    parser.add_argument("--wav_dir", type=Path, default=None,
                        help=f"converted audio (default OUT/local/{corpus}/wav)")
    parser.add_argument("--fs", type=int, default=FS)
    parser.add_argument("--nj", type=int, default=2, help="parallel sox processes")
    if convert:
        parser.add_argument("--convert", choices=("auto", "always"), default="auto",
                            help="auto: list 16-bit mono WAV/FLAC at --fs as they are; always: convert everything")
    return parser


def output_options(args: argparse.Namespace) -> OutputOptions:
    """The shared options of a :func:`base_parser` command line (``convert`` is ``auto`` where the parser has no
    ``--convert``: those corpora convert everything regardless)."""
    return OutputOptions(out=args.out, wav_dir=args.wav_dir, fs=args.fs, nj=args.nj,
                         convert=getattr(args, "convert", "auto"))


def run_cli(main: Callable[[], dict]) -> None:
    """Shared ``__main__`` behaviour: INFO logging to stderr, a one-line error (exit 1) for corpus problems."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        summary = main()
    except (CorpusError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps(summary, sort_keys=True))
