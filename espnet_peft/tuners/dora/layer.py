"""DoRA layer: ``y = (g / n) * (W x + s B A drop(x)) + b`` with ``n = ||W + s B A||_row`` detached."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from espnet_peft.tuners.dora.config import DoraConfig
from espnet_peft.tuners.lora.layer import LoraLayer


class DoraLayer(LoraLayer):
    config_class = DoraConfig
    config: DoraConfig

    def __init__(self, base: nn.Linear, config: DoraConfig) -> None:
        super().__init__(base, config)
        self.magnitude = self._new_parameter(self.out_features)

    def _initialise(self, weight_fp32: torch.Tensor) -> None:
        self.magnitude.copy_(self._row_norm_of_update(weight_fp32))

    @torch.no_grad()
    def _row_norm_of_update(self, weight_fp32: torch.Tensor) -> torch.Tensor:
        """``||W + s B A||`` per output row, expanded so that no ``d_out x d_in`` tensor is allocated.

        ``||w_i + s (BA)_i||^2 = ||w_i||^2 + 2 s <W A^T, B>_i + s^2 <B (A A^T), B>_i``. With ``B = 0`` it is exactly
        the same arithmetic as the magnitude's initial value, so the layer is the identity at initialisation.

        Autocast is off here: a matmul on ``lora_A`` / ``lora_B`` under autocast inside ``no_grad`` would fill
        autocast's cast cache with gradient-less copies, and the adapter path of the same forward would then train
        neither factor.
        """
        with torch.autocast(device_type=weight_fp32.device.type, enabled=False):
            a = self.lora_A.float()
            b = self.lora_B.float()
            s = self.scaling
            squared = weight_fp32.square().sum(dim=1)
            squared += 2 * s * ((weight_fp32 @ a.T) * b).sum(dim=1)
            squared += s * s * ((b @ (a @ a.T)) * b).sum(dim=1)
            return squared.clamp_min(0).sqrt()

    def _output_scale(self) -> torch.Tensor:
        norm = self._row_norm_of_update(self.weight.detach().float())
        return self.magnitude / norm.to(self.magnitude.dtype)

    def delta_weight(self) -> torch.Tensor:
        return self.merged_weight() - self.weight

    def merged_weight(self) -> torch.Tensor:
        return self._output_scale().unsqueeze(1) * (self.weight + self.scaling * self.low_rank_product())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self._output_scale()
        frozen = F.linear(x, self.weight)
        if isinstance(self.dropout, nn.Identity):
            out = scale * (frozen + self.adapter_output(x))
        else:
            # The magnitude rescales the frozen path on the dropped-out input, as in the paper and HF peft.
            out = frozen + (scale - 1) * F.linear(self.dropout(x), self.weight) + scale * self.adapter_output(x)
        return out if self.bias is None else out + self.bias
