"""DoRA configuration (Liu et al., 2024)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from espnet_peft.tuners.lora.config import LoraConfig


@dataclasses.dataclass
class DoraConfig(LoraConfig):
    """Weight-decomposed LoRA: a trainable per-output magnitude ``g`` times the direction of ``W + s B A``.

    Same fields as :class:`LoraConfig`. Adds ``d_out`` trainable parameters per layer (the magnitude), so its
    minimum budget is ``d_in + 2 d_out`` (r = 1).
    """

    method: ClassVar[str] = "dora"
    extra_per_output: ClassVar[int] = 1
