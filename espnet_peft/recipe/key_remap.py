"""Checkpoint keys that differ between ESPnet versions, renamed when a source model is loaded.

A source checkpoint is loaded strictly into the model that the installed ESPnet builds from its ``config.yaml``.
Only mismatches that are known to come from a code change (not from a different model) are renamed, and only when
the rename turns a key the model does not have into a key the model expects and the checkpoint lacks, with the same
shape; anything else is reported, never guessed.

Known differences (``RENAMES``): the convolutional subsampling's output projection.

* ESPnet 202511's 4x subsampling (``Conv2dSubsampling``, ``input_layer: conv2d``: OWSM v3.1) keeps it as the first
  element of a ``Sequential`` with the positional encoding: ``encoder.embed.out.0.weight``, as the OWSM v3.1
  checkpoints have it.
* 202511's 8x subsampling (``Conv2dSubsampling8``, ``input_layer: conv2d8``: OWSM v4, whose model cards say it
  subsamples 8x) takes OWSM-CTC's prefix embeddings between the projection and the positional encoding, so its
  ``self.out`` is a bare ``Linear`` (``encoder.embed.out.weight``); every other subsampling class, and (as far as
  we know) this one before the prefix support, writes ``encoder.embed.out.0.weight``. Which layout a given OWSM v4
  or OWSM-CTC checkpoint has depends on the ESPnet code it was trained with, which we could not check offline.

Both directions are listed, so a checkpoint from either layout loads into a model of the other.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Mapping, Tuple

import torch


@dataclasses.dataclass(frozen=True)
class Rename:
    pattern: str  # regex, matched against the whole checkpoint key
    replacement: str  # re.sub replacement giving the model's key
    why: str


RENAMES: Tuple[Rename, ...] = (
    Rename(r"(.*\bembed\.out)\.(weight|bias)", r"\1.0.\2",
           "subsampling output Linear stored bare; this ESPnet keeps it as Sequential element 0"),
    Rename(r"(.*\bembed\.out)\.0\.(weight|bias)", r"\1.\2",
           "subsampling output Linear stored as Sequential element 0; this ESPnet builds a bare Linear"),
)


@dataclasses.dataclass
class KeyReport:
    """How a checkpoint's keys compare with the keys (and shapes) a model expects."""

    renamed: Dict[str, str]  # checkpoint key -> model key
    missing: List[str]  # expected by the model, absent from the (renamed) checkpoint
    unexpected: List[str]  # in the checkpoint, unknown to the model
    wrong_shape: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]  # (key, checkpoint shape, model shape)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def describe(self, limit: int = 10) -> str:
        parts = []
        for label, items in (("missing from the checkpoint", self.missing),
                             ("unknown to the model", self.unexpected), ("of another shape", self.wrong_shape)):
            if items:
                shown = ", ".join(str(i) for i in items[:limit])
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                parts.append(f"{len(items)} keys {label}: {shown}{more}")
        return "; ".join(parts) or "all keys match"


def _rename_target(key: str) -> List[Tuple[str, Rename]]:
    return [(re.sub(rule.pattern, rule.replacement, key), rule) for rule in RENAMES if re.fullmatch(rule.pattern, key)]


def remap_state_dict(state: Mapping[str, torch.Tensor], expected: Mapping[str, Tuple[int, ...]]
                     ) -> Tuple[Dict[str, torch.Tensor], KeyReport]:
    """``state`` with the known renames applied where they resolve a mismatch, and what still differs.

    ``expected`` maps every key of the model's ``state_dict()`` to its shape.
    """
    lacking = set(expected) - set(state)
    renamed: Dict[str, str] = {}
    for key in sorted(set(state) - set(expected)):
        for target, _rule in _rename_target(key):
            if target in lacking and tuple(state[key].shape) == tuple(expected[target]):
                renamed[key] = target
                lacking.discard(target)
                break
    out = {renamed.get(k, k): v for k, v in state.items()}
    report = KeyReport(
        renamed=renamed,
        missing=sorted(set(expected) - set(out)),
        unexpected=sorted(set(out) - set(expected)),
        wrong_shape=[(k, tuple(v.shape), tuple(expected[k])) for k, v in sorted(out.items())
                     if k in expected and tuple(v.shape) != tuple(expected[k])],
    )
    return out, report
