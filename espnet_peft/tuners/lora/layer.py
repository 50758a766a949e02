"""LoRA layer: ``y = W x + b + s * B (A drop(x))``; ``A drop(x)`` (``[..., r]``) goes through ``bottleneck``."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from espnet_peft.tuners.base import AdapterConfigError, AdapterLayer, dropout_module
from espnet_peft.tuners.lora.config import LoraConfig


class LoraLayer(AdapterLayer):
    """LoRA; also the base of DoRA and PiSSA, which differ only in initialisation and output scaling."""

    config_class = LoraConfig
    config: LoraConfig

    def __init__(self, base: nn.Linear, config: LoraConfig) -> None:
        super().__init__(base, config)
        self.scaling = config.scaling
        self.dropout = dropout_module(config.dropout)
        self.lora_A = self._new_parameter(config.r, self.in_features)
        self.lora_B = self._new_parameter(self.out_features, config.r)
        # A is weight-independent, so it is drawn at construction (as in loralib / HF peft); B = 0 gives identity.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    @classmethod
    def check_shape(cls, d_out: int, d_in: int, config: LoraConfig) -> None:
        if config.r > min(d_in, d_out):
            raise AdapterConfigError(
                f"{config.method} rank r={config.r} exceeds min(d_in, d_out) = {min(d_in, d_out)} of a "
                f"{d_out}x{d_in} layer; lower r or exclude this module"
            )

    @classmethod
    def count_parameters(cls, d_out: int, d_in: int, config: LoraConfig) -> int:
        return config.r * (d_in + d_out) + config.extra_per_output * d_out

    def _initialise(self, weight_fp32: torch.Tensor) -> None:
        """LoRA's initialisation does not depend on the pretrained weight."""

    def low_rank_product(self) -> torch.Tensor:
        return self.lora_B @ self.lora_A

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * self.low_rank_product()

    def merged_weight(self) -> torch.Tensor:
        return self.weight + self.scaling * self.low_rank_product()

    def side_maps(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lora_A.detach(), self.scaling * self.lora_B.detach()

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        """``s * B A drop(x)`` without the frozen path."""
        return self.scaling * F.linear(self.bottleneck(F.linear(self.dropout(x), self.lora_A)), self.lora_B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + self.adapter_output(x)
