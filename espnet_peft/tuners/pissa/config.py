"""PiSSA configuration (Meng et al., 2024)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

from espnet_peft.tuners.base import positive_int
from espnet_peft.tuners.lora.config import LoraConfig


@dataclasses.dataclass
class PissaConfig(LoraConfig):
    """LoRA whose factors start as the top-r singular part of ``W``; the frozen weight becomes the residual.

    Attributes (beyond :class:`LoraConfig`):
        svd_niter: None (default) for an exact SVD; an integer N for ``torch.svd_lowrank`` with N power
            iterations, which is much faster on large layers but only approximates the top-r part. The residual is
            always computed from the same factors, so the layer is the identity at initialisation either way.
    """

    method: ClassVar[str] = "pissa"

    svd_niter: Optional[int] = None

    def validate(self) -> None:
        super().validate()
        positive_int("svd_niter", self.svd_niter)
