"""SSVD configuration (Wang, Watanabe, Van hamme, ASRU 2025)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple

from espnet_peft.tuners.base import AdapterConfigError, number_in, positive_int
from espnet_peft.tuners.subspace_rotation import SubspaceRotationConfig, largest_inner_rank


@dataclasses.dataclass
class SsvdConfig(SubspaceRotationConfig):
    """Rotate the top-k right (input-side) singular vectors of ``W`` and shift the top-k singular values.

    Set exactly one of:
        k: the number of rotated directions on every adapted layer;
        budget: trainable parameters per layer; ``k`` is the largest with ``k (k - 1) / 2 + k <= budget``;
        rotation_ratio: ``k = round(rotation_ratio * min(d_in, d_out))`` per layer, or its floor with
            ``ratio_rounding: floor`` (the authors' code: 409 rather than 410 on 1024-wide layers).

    Trainable parameters per layer: ``k (k - 1) / 2 + k``, plus one with ``gate: true``.
    See :class:`SubspaceRotationConfig` for ``rotation_map``, ``rotated_side``, ``gate``, ``compute_path`` and the
    ``espnet_pr6425`` preset, which here also sets ``ratio_rounding: floor``.
    """

    method: ClassVar[str] = "ssvd"

    k: Optional[int] = None
    budget: Optional[int] = None
    rotation_ratio: Optional[float] = None
    ratio_rounding: str = "round"

    PRESETS: ClassVar[Dict[str, Dict[str, Any]]] = {
        name: {**fields, "ratio_rounding": "floor"} for name, fields in SubspaceRotationConfig.PRESETS.items()
    }

    def validate(self) -> None:
        super().validate()
        given = [name for name in ("k", "budget", "rotation_ratio") if getattr(self, name) is not None]
        if len(given) != 1:
            raise AdapterConfigError(f"ssvd needs exactly one of k, budget, rotation_ratio; got {given or 'none'}")
        positive_int("k", self.k)
        positive_int("budget", self.budget)
        if self.rotation_ratio is not None:
            number_in("rotation_ratio", self.rotation_ratio, 0.0, 1.0)
            if self.rotation_ratio == 0:
                raise AdapterConfigError("rotation_ratio must be in (0, 1], got 0")
        if self.ratio_rounding not in ("round", "floor"):
            raise AdapterConfigError(f"ratio_rounding must be 'round' or 'floor', got {self.ratio_rounding!r}")

    def resolve_ranks(self, d_out: int, d_in: int) -> Tuple[int, int]:
        if self.k is not None:
            return self.k, 0
        if self.budget is not None:
            return largest_inner_rank(self.budget - int(self.gate)), 0
        if self.ratio_rounding == "floor":
            return math.floor(min(d_out, d_in) * self.rotation_ratio), 0
        return max(1, round(self.rotation_ratio * min(d_out, d_in))), 0

    @classmethod
    def fields_for_budget(cls, d_out: int, d_in: int, budget: int, fields: Mapping[str, Any]) -> Dict[str, Any]:
        gate = int(cls.expand_preset(fields).get("gate", False))
        k = min(largest_inner_rank(budget - gate), min(d_out, d_in))
        return {"k": k, "budget": None, "rotation_ratio": None}
