"""PiSSA layer: LoRA on the principal singular part, with ``weight`` holding the residual ``W - s B0 A0``."""

from __future__ import annotations

import torch
from torch import nn

from espnet_peft.tuners.lora.layer import LoraLayer
from espnet_peft.tuners.pissa.config import PissaConfig
from espnet_peft.tuners.svd import top_singular_triplets


class PissaLayer(LoraLayer):
    config_class = PissaConfig
    config: PissaConfig

    def __init__(self, base: nn.Linear, config: PissaConfig) -> None:
        super().__init__(base, config)
        # The initial factors stay as buffers: the pretrained weight is `weight + s B0 A0`, which is what lets an
        # adapter-only checkpoint (or `required_grad_only`) rebuild the residual, and lets export be relative to W.
        self._new_buffer("lora_A0", *self.lora_A.shape)
        self._new_buffer("lora_B0", *self.lora_B.shape)

    def _initialise(self, weight_fp32: torch.Tensor) -> None:
        u, s, v = top_singular_triplets(weight_fp32, self.config.r, self.config.svd_niter)
        root = (s / self.scaling).sqrt()
        self.lora_A.copy_(root.unsqueeze(1) * v.T)
        self.lora_B.copy_(u * root.unsqueeze(0))
        self.lora_A0.copy_(self.lora_A)
        self.lora_B0.copy_(self.lora_B)
        self._store_residual(weight_fp32)

    def _store_residual(self, pretrained_fp32: torch.Tensor) -> None:
        # From the factors as stored (weight dtype), so that `weight + s B0 A0` reproduces W to float precision.
        principal = self.scaling * (self.lora_B0.float() @ self.lora_A0.float())
        self.weight.copy_(pretrained_fp32 - principal)

    def _after_adapter_state_loaded(self) -> None:
        self._store_residual(self.weight.detach().float())

    def pretrained_weight(self) -> torch.Tensor:
        return self.weight + self.scaling * (self.lora_B0 @ self.lora_A0)

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * (self.low_rank_product() - self.lora_B0 @ self.lora_A0)
