"""Score a decode with sclite (WER and CER), ESPnet layout, jiwer cross-check; prints both error rates.

    python -m espnet_peft.bin.score --ref data/test_child/text --hyp exp/child/lora/decode_asr/test_child/text \\
        --out exp/child/lora/decode_asr/test_child [--utt2spk data/test_child/utt2spk]

writes OUT/score_wer/{ref.trn,hyp.trn,result.txt,per_utt.tsv,summary.json,jiwer_crosscheck.json} and OUT/score_cer/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.recipe.scoring import RATE_NAMES, score_files
from espnet_peft.utils.text_norm import NORMALIZERS


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", type=Path, required=True, help="reference Kaldi text (utt_id words...)")
    parser.add_argument("--hyp", type=Path, required=True, help="hypothesis Kaldi text from inference")
    parser.add_argument("--out", type=Path, required=True, help="decode set dir that receives score_wer/ score_cer/")
    parser.add_argument("--utt2spk", type=Path, help="speakers for sclite's per-speaker tables "
                                                     "(default: utterance id up to the first '-' or '_')")
    parser.add_argument("--normalizer", choices=sorted(NORMALIZERS), default="default",
                        help="what both texts go through before alignment: default (lowercase, punctuation out) or "
                        "whisper_english (openai-whisper's English normaliser first)")
    args = parser.parse_args(cmd)
    for path in (args.ref, args.hyp, args.utt2spk):
        if path is not None and not path.is_file():
            raise SystemExit(f"file not found: {path}")
    try:
        results = score_files(args.ref, args.hyp, args.out, args.utt2spk, normalizer=args.normalizer)
    except ValueError as error:  # ScoringError and bad Kaldi tables name the file
        raise SystemExit(f"scoring: {error}") from None
    for unit, result in results.items():
        t = result.counts.totals()
        check = "" if result.crosscheck["equal"] else \
            f", jiwer {result.crosscheck['errors']['jiwer']['err']} errors (see jiwer_crosscheck.json)"
        print(f"{RATE_NAMES[unit]} {result.counts.error_rate:.2f}% ({t['err']} errors = {t['sub']} sub + "
              f"{t['del']} del + {t['ins']} ins / {t['ref']} {unit}s, {t['utts']} utts{check})")
    missing = next(iter(results.values())).missing_hyp
    if missing:
        print(f"warning: {len(missing)} reference utterances have no hypothesis, scored as all deletions: "
              f"{missing[:5]}{' ...' if len(missing) > 5 else ''}", file=sys.stderr)


if __name__ == "__main__":
    main()
