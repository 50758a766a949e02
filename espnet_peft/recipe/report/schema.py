"""The report's input: one ``run_info.json`` per experiment anywhere under ``exp_root``, read into a ``RunRecord``.

The shell recipe writes it after decoding::

    {
      "domain": "child",                  # required: the shifted domain this run adapts to
      "method": "ssvd_o",                 # required: "zero_shot" marks the untouched base model (one per domain)
      "seed": 0,                          # optional: the training seed; runs that differ only in it share a row
      "settings": {"outer_share": 0.25},  # optional: the swept adapter fields (espnet_peft.recipe.sweep); a field
                                          #   with two or more values over a method's rows gets a sweep plot
      "label": "ssvd_o outer_share=0.25", # optional: row name (default: method, plus the settings)
      "trainable_params": 1234567,        # required: 0 for zero_shot
      "train_time_s": 5400.0,             # optional: wall-clock training time
      "peak_mem_mb": 20480.0,             # optional: peak accelerator memory during training
      "device": "NVIDIA H100 80GB HBM3",  # optional: what it trained on (listed in the environment block)
      "scores": {                         # required: decode set dirs scored by espnet_peft.bin.score (--out),
        "target": "decode_asr/test_child",#   relative to this file's dir or absolute; each holds
        "source": "decode_asr/test_src"   #   score_wer/per_utt.tsv
      },
      "other_sources": {                  # optional: more source-domain decode set dirs, by set name; each gets
        "espeak": "decode_asr/test_espeak"#   a WER and forgetting column pair of its own
      }
    }
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from espnet_peft.recipe.field_settings import describe
from espnet_peft.recipe.scoring import UtteranceCounts, read_score_dir

RUN_INFO = "run_info.json"
#: the method of the untouched base model, which every row of its domain is measured against
ZERO_SHOT = "zero_shot"
ROLES = ("target", "source")
REQUIRED = ("domain", "method", "trainable_params", "scores")
OPTIONAL = ("seed", "settings", "label", "train_time_s", "peak_mem_mb", "device", "other_sources")
NUMERIC = {"trainable_params": int, "seed": int, "train_time_s": float, "peak_mem_mb": float}


class ReportError(ValueError):
    """Inconsistent experiment records (what is missing and where is in the message)."""


@dataclasses.dataclass
class RunRecord:
    """One experiment: a (domain, method, settings, seed) run and its per-utterance WER counts on both sets."""

    domain: str
    method: str
    trainable_params: int
    scores: Dict[str, UtteranceCounts]  # role ("target" / "source") -> counts
    score_dirs: Dict[str, str] = dataclasses.field(default_factory=dict)
    seed: Optional[int] = None
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    label: Optional[str] = None
    train_time_s: Optional[float] = None
    peak_mem_mb: Optional[float] = None
    device: Optional[str] = None
    source_file: str = "<memory>"
    #: more source-domain test sets (name -> counts): their WER and forgetting get a table of their own
    other_scores: Dict[str, UtteranceCounts] = dataclasses.field(default_factory=dict)
    other_score_dirs: Dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label is None:
            self.label = describe(self.method, self.settings)
        missing = [r for r in ROLES if r not in self.scores]
        if missing:
            raise ReportError(f"{self.source_file}: 'scores' lacks {missing}; give a decode set dir per role {ROLES}")


def load_run_info(path: Path) -> RunRecord:
    """Read one run_info.json (schema in the module docstring) and the score dirs it points to."""
    path = Path(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(info, dict):
        raise ReportError(f"{path}: expected a JSON object; see the schema in espnet_peft/recipe/report/schema.py")
    missing = [k for k in REQUIRED if info.get(k) is None]
    unknown = sorted(set(info) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise ReportError(f"{path}: missing keys {missing}, unknown keys {unknown}; "
                          "see espnet_peft/recipe/report/schema.py")
    if not isinstance(info["scores"], dict):
        raise ReportError(f"{path}: 'scores' must map each role {ROLES} to a decode set dir")
    settings = info.get("settings") or {}
    if not isinstance(settings, dict) or not all(isinstance(v, (bool, int, float, str)) for v in settings.values()):
        raise ReportError(f"{path}: 'settings' must map adapter fields to numbers, booleans or words")
    dirs = {role: str(path.parent / d) for role, d in info["scores"].items()}  # absolute d stays absolute
    scores = {role: read_score_dir(Path(d)) for role, d in dirs.items()}
    other = info.get("other_sources") or {}
    if not isinstance(other, dict):
        raise ReportError(f"{path}: 'other_sources' must map set names to decode set dirs")
    other_dirs = {name: str(path.parent / d) for name, d in other.items()}
    other_scores = {name: read_score_dir(Path(d)) for name, d in other_dirs.items()}
    fields = {k: info[k] for k in (*REQUIRED, *OPTIONAL)
              if k not in ("scores", "other_sources") and info.get(k) is not None}
    for key, cast in NUMERIC.items():
        if key in fields:
            try:
                fields[key] = cast(fields[key])
            except (TypeError, ValueError):
                raise ReportError(f"{path}: {key}={fields[key]!r} is not a number") from None
    return RunRecord(**fields, scores=scores, score_dirs=dirs, source_file=str(path), other_scores=other_scores,
                     other_score_dirs=other_dirs)


def collect_results(exp_root: Path) -> List[RunRecord]:
    """Every ``run_info.json`` under ``exp_root``, in path order."""
    paths = sorted(Path(exp_root).rglob(RUN_INFO))
    if not paths:
        raise ReportError(f"no {RUN_INFO} under {exp_root}: the recipe writes one per experiment after scoring")
    return [load_run_info(p) for p in paths]
