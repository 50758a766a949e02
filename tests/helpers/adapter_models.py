"""Small models with ESPnet-like module names and spectra, shared by the adapter tests."""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn

METHOD_FIELDS: Dict[str, Dict] = {
    "lora": {"r": 4, "alpha": 8},
    "dora": {"r": 4, "alpha": 8},
    "pissa": {"r": 4, "alpha": 8},
    "ssvd": {"k": 6},
    "ssvd_o": {"budget": 40, "outer_share": 0.5},
}
TARGETS = ["linear_q", "linear_v", "w_1", "w_2"]


class Block(nn.Module):
    def __init__(self, d: int, ff: int) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.linear_q = nn.Linear(d, d)
        self.attn.linear_v = nn.Linear(d, d)
        self.feed_forward = nn.Module()
        self.feed_forward.w_1 = nn.Linear(d, ff)
        self.feed_forward.w_2 = nn.Linear(ff, d)
        self.norm = nn.BatchNorm1d(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attn.linear_v(torch.tanh(self.attn.linear_q(x)))
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        return h + self.feed_forward.w_2(torch.relu(self.feed_forward.w_1(h)))


class TinyEncoder(nn.Module):
    """``encoder.encoders.N.{attn.linear_q, attn.linear_v, feed_forward.w_1, feed_forward.w_2}`` + ``ctc.ctc_lo``."""

    def __init__(self, d: int = 16, ff: int = 24, blocks: int = 2, vocab: int = 11) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.encoders = nn.ModuleList(Block(d, ff) for _ in range(blocks))
        self.ctc = nn.Module()
        self.ctc.ctc_lo = nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.encoder.encoders:
            x = block(x)
        return self.ctc.ctc_lo(x)


def make_trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every linear weight a decaying singular spectrum with near-ties, like trained weights have."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                d_out, d_in = module.weight.shape
                q = min(d_out, d_in)
                u, _ = torch.linalg.qr(torch.randn(d_out, q, generator=generator))
                v, _ = torch.linalg.qr(torch.randn(d_in, q, generator=generator))
                spectrum = 3.0 * torch.arange(1, q + 1, dtype=torch.float32) ** -0.7
                module.weight.copy_(u @ torch.diag(spectrum) @ v.T)
    return model


def build_model(seed: int = 0, trained_looking: bool = False, dtype: torch.dtype = torch.float32) -> TinyEncoder:
    torch.manual_seed(seed)
    model = TinyEncoder()
    if trained_looking:
        make_trained_looking(model, seed)
    return model.to(dtype).eval()


def perturb_adapters(model: nn.Module, seed: int = 1, scale: float = 0.1) -> None:
    """Move every trainable tensor away from its (identity) initial value, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.dtype))
