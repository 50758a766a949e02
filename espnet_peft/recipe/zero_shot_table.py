"""RESULTS.md's zero-shot table: the source model on every decoded set, with the checks that show a looping decoder.

A foundation model's zero-shot errors on shifted speech are often not substitutions but run-on hypotheses (Whisper
repeating a sentence until its length limit). WER alone hides which; the table puts beside it the insertion rate,
the longest hypothesis relative to its reference, how many hypotheses are at least twice their reference, and how
many were still running at the decoder's token cap (``decode_info.json`` of ``s2t_batch_inference``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

from espnet_peft.recipe.model_card import set_scores


def zero_shot_lines(decode_dir: Path) -> List[str]:
    """Markdown lines of the table for ``decode_dir/<set>/`` (scored sets only); empty when there are none."""
    decode_dir = Path(decode_dir)
    if not decode_dir.is_dir():
        return []
    sets = sorted(d.name for d in decode_dir.iterdir() if (d / "score_wer" / "summary.json").is_file())
    if not sets:
        return []
    scores = set_scores(decode_dir, sets)
    lines = ["", "## Zero-shot: the source model on every set", "",
             "|set|utterances|words|WER %|insertions %|longest hyp/ref|hyps >= 2x ref|hyps at the token cap|",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in sets:
        score = scores[name]
        info_path = decode_dir / name / "decode_info.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        cap = (f"{info['hit_length_cap']} (cap {info['length_cap']} tokens)" if info.get("length_cap") is not None
               else "- (no absolute cap)")
        lines.append(f"|{name}|{score['utts']}|{score['ref']}|{score['error_rate']:.1f}|"
                     f"{score['insertion_rate']:.1f}|{score['max_hyp_ref_ratio']:.1f}|"
                     f"{score['hyp_at_least_twice_ref']}|{cap}|")
    return lines
