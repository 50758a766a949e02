"""What decoding and scoring setting a result came from, and the rule that one report table holds one setting.

A decode set dir's setting is what its ``made_from.json`` records about the search (``espnet_peft.recipe.provenance``;
the model's own fingerprint left out, since every row of a table has another model), which decoder wrote it, and the
text normaliser its scoring used. Rows decoded or scored differently, say after a re-decode of some methods with
another CTC weight or word penalty, are not comparable: the report refuses to put them into one table or test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Tuple

from espnet_peft.recipe.provenance import read_record

#: settings that identify the model, not the search: they differ between rows by design
MODEL_KEYS = ("model_sha256", "config_sha256", "model_file")
#: written by espnet_peft.bin.s2t_batch_inference beside its hypotheses
BATCH_DECODE_INFO = "decode_info.json"


class MixedSettingsError(ValueError):
    """Rows of one table were decoded or scored with different settings (which rows and keys: in the message)."""


def normalizer_of(decode_set_dir: str) -> str:
    """The text normaliser the scoring CLI recorded in ``score_wer/summary.json`` (``default`` before it did)."""
    path = Path(decode_set_dir) / "score_wer" / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")).get("normalizer", "default") if path.is_file() else "default"


def decode_setting(decode_set_dir: str) -> Dict[str, Any]:
    """The search settings, decoder and scoring normaliser of one decoded set (``{}`` parts where none is recorded,
    as in hand-made score dirs)."""
    record = read_record(Path(decode_set_dir)) or {}
    setting = {k: v for k, v in (record.get("settings") or {}).items() if k not in MODEL_KEYS}
    if record:
        setting["decoder"] = ("espnet_peft.bin.s2t_batch_inference"
                              if (Path(decode_set_dir) / BATCH_DECODE_INFO).is_file() else "espnet2 Speech2Text")
    setting["normalizer"] = normalizer_of(decode_set_dir)
    return setting


def one_setting(table: str, rows: Iterable[Tuple[str, Iterable[str]]]) -> Dict[str, Any]:
    """The one setting shared by every decode dir of ``rows`` (``(row name, its decode set dirs)``); refuses, naming
    the rows and the keys that differ, when they are not all the same."""
    first_name, common = None, None
    for name, dirs in rows:
        for decode_dir in dirs:
            setting = decode_setting(decode_dir)
            if common is None:
                first_name, common = f"{name} ({decode_dir})", setting
            elif setting != common:
                keys = sorted(k for k in set(setting) | set(common) if setting.get(k) != common.get(k))
                shown = {k: (common.get(k), setting.get(k)) for k in keys}
                raise MixedSettingsError(
                    f"{table}: {name} ({decode_dir}) was decoded or scored with other settings than {first_name}: "
                    f"{shown} (first, this one). One table compares one setting: decode and score every row again "
                    "with the same options (recipe stages 6-9 for every method), or move the other runs out of exp/")
    return common or {}


def describe(setting: Mapping[str, Any]) -> str:
    """A one-line rendering for RESULTS.md."""
    if not setting:
        return "not recorded"
    return ", ".join(f"{k}=`{v}`" for k, v in sorted(setting.items()) if v is not None)
