"""LoRA configuration (Hu et al., 2021)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Dict, Mapping

from espnet_peft.tuners.base import AdapterConfig, AdapterConfigError, number_in, positive_int


@dataclasses.dataclass
class LoraConfig(AdapterConfig):
    """Low-rank update ``W' = W + s * B A``.

    Attributes:
        r: Rank of the update (default 8). Must not exceed ``min(d_in, d_out)`` of any adapted layer.
        alpha: Scaling numerator (default 16). The update is scaled by ``s = alpha / r``.
        dropout: Dropout applied to the adapter's input only (default 0.0); the frozen path never sees it.
        use_rslora: Rank-stabilised scaling ``s = alpha / sqrt(r)`` instead of ``alpha / r`` (default False).
    """

    method: ClassVar[str] = "lora"

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    use_rslora: bool = False

    def validate(self) -> None:
        positive_int("r", self.r)
        number_in("alpha", self.alpha, float("-inf"), float("inf"))
        if self.alpha <= 0:  # 0 scales the update to nothing (it trains nothing); < 0 only flips B's sign
            raise AdapterConfigError(f"alpha must be > 0 (the update is scaled by alpha / r), got {self.alpha!r}")
        number_in("dropout", self.dropout, 0.0, 1.0)
        if self.dropout == 1.0:
            raise AdapterConfigError("dropout must be in [0, 1), got 1.0")

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    #: trainable parameters per layer beyond ``r * (d_in + d_out)``, as a multiple of ``d_out``
    extra_per_output: ClassVar[int] = 0

    @classmethod
    def fields_for_budget(cls, d_out: int, d_in: int, budget: int, fields: Mapping[str, Any]) -> Dict[str, Any]:
        overhead = cls.extra_per_output * d_out
        rank = round((budget - overhead) / (d_in + d_out))
        if rank < 1:
            raise AdapterConfigError(
                f"a budget of {budget} parameters is below {cls.method}'s minimum of "
                f"{d_in + d_out + overhead} (r = 1) on a {d_out}x{d_in} layer"
            )
        return {"r": min(rank, min(d_in, d_out))}
