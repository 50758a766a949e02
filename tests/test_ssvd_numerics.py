"""SSVD / SSVD-O numerics: the core-offset form and the core-only backward compute exactly what the plain form
computes, and the core stays exact under autocast."""

from __future__ import annotations

from typing import Dict, Optional

import pytest
import torch
from torch.nn import functional as F

from helpers.adapter_models import make_trained_looking
from helpers.amp_device import DEVICE, autocast_dtypes
from espnet_peft.tuners import get_layer_class, make_config
from espnet_peft.tuners.core_linear import core_linear
from espnet_peft.tuners.subspace_rotation import SubspaceRotationLayer
from espnet_peft.tuners.svd import ROTATION_MAPS, skew_symmetric

torch.set_num_threads(1)

SHAPES = {"square": (24, 24), "tall": (40, 24), "wide": (24, 40)}  # (d_out, d_in)
CONFIGS = {
    "ssvd": ("ssvd", {"budget": 120}),
    "ssvd_o": ("ssvd_o", {"budget": 120, "outer_share": 0.5}),
    "ssvd_o_gate_smaller": ("ssvd_o", {"budget": 120, "outer_share": 0.25, "gate": True, "rotated_side": "smaller"}),
}


def plain_core(layer: SubspaceRotationLayer) -> torch.Tensor:
    """The core as written in the method's definition: ``R_o diag(s + delta') R_i - diag(s)``, full rotations."""
    rotate = ROTATION_MAPS[layer.config.rotation_map]
    dtype, device = layer.svd_s.dtype, layer.svd_s.device

    def block(generator: Optional[torch.Tensor], size: int) -> torch.Tensor:
        eye = torch.eye(layer.k, dtype=dtype, device=device)
        if generator is None:
            return eye
        rest = torch.eye(layer.k - size, dtype=dtype, device=device)
        return torch.block_diag(rotate(skew_symmetric(generator, size)), rest)

    delta = layer.sigma_delta * (torch.sigmoid(layer.gate) if layer.gate is not None else 1.0)
    scaled = (layer.svd_s + delta).unsqueeze(1) * block(layer.inner_generator, layer.k_inner)
    return block(layer.outer_generator, layer.k_outer) @ scaled - torch.diag(layer.svd_s)


def plain_forward(layer: SubspaceRotationLayer, x: torch.Tensor, path: str) -> torch.Tensor:
    core = plain_core(layer)
    if path == "lowrank":
        return F.linear(x, layer.weight, layer.bias) + F.linear(F.linear(F.linear(x, layer.svd_vh), core), layer.svd_u)
    return F.linear(x, layer.weight + layer.svd_u @ core @ layer.svd_vh, layer.bias)


def make_layer(config_name: str, shape_name: str, rotation_map: str, dtype: torch.dtype = torch.float32,
               scale: float = 0.1) -> SubspaceRotationLayer:
    method, fields = CONFIGS[config_name]
    d_out, d_in = SHAPES[shape_name]
    torch.manual_seed(d_out * d_in)
    base = make_trained_looking(torch.nn.Linear(d_in, d_out), seed=d_out + d_in).to(dtype)
    layer = get_layer_class(method)(base, make_config(method, rotation_map=rotation_map, **fields))
    layer.initialise_from_weight()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in layer.adapter_parameters().values():
            p.copy_(scale * torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return layer


def gradients(layer: SubspaceRotationLayer, x: torch.Tensor, output: torch.Tensor) -> Dict[str, torch.Tensor]:
    upstream = torch.randn(output.shape, generator=torch.Generator().manual_seed(11), dtype=output.dtype)
    inputs = {"x": x, **layer.adapter_parameters()}
    return dict(zip(inputs, torch.autograd.grad((output * upstream).sum(), list(inputs.values()))))


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("rotation_map", ["cayley", "linear"])
@pytest.mark.parametrize("path", ["lowrank", "rebuild"])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-11), (torch.float32, 1e-5)])
def test_outputs_and_gradients_equal_the_plain_form(config_name: str, shape_name: str, rotation_map: str,
                                                    path: str, dtype: torch.dtype, tolerance: float) -> None:
    layer = make_layer(config_name, shape_name, rotation_map, dtype)
    layer.config = layer.config.replace(compute_path=path)
    x = torch.randn(3, 9, layer.in_features, dtype=dtype, requires_grad=True)
    ours, reference = layer(x), plain_forward(layer, x, path)
    torch.testing.assert_close(ours, reference, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(layer.merged_weight(), layer.weight + layer.svd_u @ plain_core(layer) @ layer.svd_vh,
                               rtol=tolerance, atol=tolerance)
    ours_grad, reference_grad = gradients(layer, x, ours), gradients(layer, x, reference)
    assert set(ours_grad) == set(reference_grad)
    for name in ours_grad:
        # relative to the gradient's scale: the generators' gradients reach ~60 here, where one fp32 rounding of a
        # sum is already ~4e-6 (torch 2.14's kernels sum in another order than 2.9's and land 1.8e-5 away)
        scale = max(reference_grad[name].abs().max().item(), 1.0)
        torch.testing.assert_close(ours_grad[name], reference_grad[name], rtol=tolerance, atol=tolerance * scale,
                                   msg=name)


@pytest.mark.parametrize("autocast_dtype", autocast_dtypes())
@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("rotation_map", ["cayley", "linear"])
def test_core_is_exact_under_autocast(autocast_dtype: torch.dtype, config_name: str, rotation_map: str) -> None:
    fresh = make_layer(config_name, "wide", rotation_map, scale=0.0).to(DEVICE)
    with torch.autocast(DEVICE, dtype=autocast_dtype):
        core = fresh.core()
    assert core.dtype == torch.float32 and torch.count_nonzero(core) == 0  # identity at initialisation

    layer = make_layer(config_name, "square", rotation_map, scale=1e-3).to(DEVICE)
    with torch.no_grad(), torch.autocast(DEVICE, dtype=autocast_dtype):
        core = layer.core()
    exact = plain_core(make_layer(config_name, "square", rotation_map, dtype=torch.float64, scale=1e-3)).detach()
    assert core.dtype == torch.float32
    assert (core.double().cpu() - exact).abs().max() <= 1e-5 * exact.abs().max()


@pytest.mark.parametrize("autocast_dtype", autocast_dtypes())
def test_core_only_backward_under_autocast_matches_autograd(autocast_dtype: torch.dtype) -> None:
    layer = make_layer("ssvd_o", "tall", "cayley").to(DEVICE)
    x = torch.randn(4, 6, layer.in_features, device=DEVICE, requires_grad=True)
    core = layer.core().detach().requires_grad_()
    merged = layer.weight + layer.svd_u @ core @ layer.svd_vh  # formed in fp32, as core_linear does
    with torch.autocast(DEVICE, dtype=autocast_dtype):
        ours = core_linear(x, layer.weight, layer.bias, layer.svd_u, core, layer.svd_vh)
        plain = F.linear(x, merged, layer.bias)
    assert ours.dtype == plain.dtype == autocast_dtype
    # W' is summed in another order than `merged`, so a weight may round to a neighbouring low-precision value
    scale = torch.finfo(autocast_dtype).eps * plain.abs().max().item()
    torch.testing.assert_close(ours, plain, rtol=0.0, atol=scale)
    upstream = torch.randn(ours.shape).to(DEVICE, autocast_dtype)
    ours_grads = torch.autograd.grad((ours * upstream).sum(), [x, core])
    plain_grads = torch.autograd.grad((plain * upstream).sum(), [x, core])
    for got, want in zip(ours_grads, plain_grads):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2 * want.abs().max().item())
