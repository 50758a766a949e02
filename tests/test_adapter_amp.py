"""Mixed precision: under ``torch.autocast`` every adapter trains the parameters it trains in fp32, with close gradients.

The hazard this guards against is autocast's cast cache: a trainable fp32 leaf first cast to the autocast dtype
where autograd is off (a ``no_grad`` helper, a custom Function's forward) is cached *without* a gradient path, and
every later use of that leaf in the same autocast region silently gets the cached copy: its gradient is then
missing, and training under ``use_amp: true`` would leave that tensor at its initial value.
"""

from __future__ import annotations

from typing import Dict

import pytest
import torch

from helpers.adapter_models import METHOD_FIELDS, TARGETS, build_model, perturb_adapters
from helpers.amp_device import DEVICE, autocast_dtypes
from espnet_peft.injection import adapter_layers, initialise_adapters, inject_adapters

CASES = {method: {"method": method, **fields} for method, fields in METHOD_FIELDS.items()}
CASES["dora_dropout"] = {**CASES["dora"], "dropout": 0.1}
CASES["lora_dropout"] = {**CASES["lora"], "dropout": 0.1}


class FixedDropout(torch.nn.Module):
    """Dropout with a mask drawn once on the CPU: CUDA's dropout draws other masks for other dtypes, and the
    comparison needs the same mask with and without autocast."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.masks: Dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) not in self.masks:
            keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(x.numel())) >= self.p
            self.masks[tuple(x.shape)] = keep.float() / (1 - self.p)
        return x * self.masks[tuple(x.shape)].to(x.device, x.dtype)


def trainable_gradients(model: torch.nn.Module, x: torch.Tensor, autocast_dtype) -> Dict[str, torch.Tensor]:
    for parameter in model.parameters():
        parameter.grad = None
    with torch.autocast(DEVICE, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        loss = model(x).float().square().mean()
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("autocast_dtype", autocast_dtypes())
@pytest.mark.parametrize("case", list(CASES))
def test_every_trainable_tensor_gets_its_gradient_under_autocast(case: str, autocast_dtype: torch.dtype) -> None:
    model = build_model(seed=0, trained_looking=True)
    inject_adapters(model, {**CASES[case], "target_modules": TARGETS})
    initialise_adapters(model)
    perturb_adapters(model, scale=0.05)
    for layer in adapter_layers(model).values():
        if isinstance(getattr(layer, "dropout", None), torch.nn.Dropout):
            layer.dropout = FixedDropout(layer.dropout.p)
    model = model.to(DEVICE).train()
    x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(3)).to(DEVICE)

    reference = trainable_gradients(model, x, None)
    mixed = trainable_gradients(model, x, autocast_dtype)

    missing = sorted(name for name, grad in mixed.items() if grad is None)
    assert not missing, f"no gradient under {autocast_dtype} autocast: {missing}"
    for name, grad in mixed.items():
        want = reference[name]
        assert grad.dtype == want.dtype == torch.float32, name
        error = ((grad - want).norm() / want.norm()).item()
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), want.flatten(), dim=0).item()
        # fp16 keeps 11 significant bits: measured errors are <= 1.3%. bf16 keeps 8: up to 17% (PiSSA's A, whose
        # gradient goes through the large principal factor B), but the direction holds (cosine >= 0.988). A dropped
        # path (the cast-cache hazard) loses a whole term, an error of order 100%.
        if autocast_dtype == torch.float16:
            assert error <= 0.05, f"{name}: relative error {error:.4f} under fp16 autocast"
        else:
            assert cosine >= 0.98, f"{name}: cosine {cosine:.5f} to the fp32 gradient under bf16 autocast"
