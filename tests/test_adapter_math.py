"""Invariants every adapter must satisfy, written once and checked for all five methods."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from helpers.adapter_models import METHOD_FIELDS, TARGETS, build_model, perturb_adapters
from espnet_peft.injection import adapter_layers, initialise_adapters, inject_adapters, merge_adapters
from espnet_peft.tuners import METHODS

torch.set_num_threads(1)


def adapted(method: str, trained_looking: bool = True, dtype: torch.dtype = torch.float32, **fields):
    model = build_model(trained_looking=trained_looking, dtype=dtype)
    conf = {"method": method, "target_modules": TARGETS, **METHOD_FIELDS[method], **fields}
    if method in ("ssvd", "ssvd_o"):
        conf.setdefault("compute_path", "lowrank")
    inject_adapters(model, conf)
    initialise_adapters(model)
    return model


def inputs(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(5)).to(dtype)


def assert_relative_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    error = (actual - expected).norm() / expected.norm()
    assert error <= tolerance, f"relative error {error:.3g} > {tolerance}"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("trained_looking", [False, True], ids=["random", "trained"])
def test_identity_at_initialisation(method: str, trained_looking: bool) -> None:
    x = inputs()
    reference = build_model(trained_looking=trained_looking)(x)
    assert_relative_close(adapted(method, trained_looking)(x), reference, 1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_merged_equals_unmerged(method: str) -> None:
    model = adapted(method)
    perturb_adapters(model)
    x = inputs()
    with torch.no_grad():
        unmerged = model(x)
        merged_model = merge_adapters(copy.deepcopy(model))
        assert not adapter_layers(merged_model)
        assert all(type(m) is nn.Linear for n, m in merged_model.named_modules() if n.endswith(tuple(TARGETS)))
        assert_relative_close(merged_model(x), unmerged, 1e-5)
        assert (unmerged - build_model(trained_looking=True)(x)).abs().max() > 1e-3  # the adapters did something


@pytest.mark.parametrize("method", METHODS)
def test_delta_weight_is_merged_minus_pretrained(method: str) -> None:
    model = adapted(method)
    perturb_adapters(model)
    pristine = build_model(trained_looking=True)
    for name, layer in adapter_layers(model).items():
        original = pristine.get_submodule(name).weight
        with torch.no_grad():
            assert_relative_close(layer.merged_weight() - original, layer.delta_weight(), 1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_gradients_reach_only_adapter_parameters(method: str) -> None:
    model = adapted(method).train()
    perturb_adapters(model)  # B = 0 would leave A without gradient
    model(inputs()).square().mean().backward()
    for name, p in model.named_parameters():
        is_adapter = any(name.endswith(f".{n}") for layer in adapter_layers(model).values()
                         for n in layer.adapter_parameters())
        assert p.requires_grad == is_adapter, name
        if is_adapter:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


@pytest.mark.parametrize("method", METHODS)
def test_state_dict_round_trip_is_bit_exact(method: str) -> None:
    model = adapted(method)
    perturb_adapters(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    reloaded = build_model(seed=123)  # other random weights: everything must come from the file
    inject_adapters(reloaded, {"method": method, "target_modules": TARGETS, **METHOD_FIELDS[method],
                               **({"compute_path": "lowrank"} if method.startswith("ssvd") else {})})
    reloaded.load_state_dict(torch.load(buffer), strict=True)
    assert initialise_adapters(reloaded) == 0, "a reloaded adapter must not be re-initialised"
    x = inputs()
    with torch.no_grad():
        assert torch.equal(reloaded(x), model(x))


@pytest.mark.parametrize("method", METHODS)
def test_adapter_only_state_on_pristine_base(method: str) -> None:
    model = adapted(method)
    perturb_adapters(model)
    fresh = build_model(trained_looking=True)
    inject_adapters(fresh, {"method": method, "target_modules": TARGETS, **METHOD_FIELDS[method],
                            **({"compute_path": "lowrank"} if method.startswith("ssvd") else {})})
    for name, layer in adapter_layers(model).items():
        adapter_layers(fresh)[name].load_adapter_state(layer.adapter_state_dict())
    x = inputs()
    with torch.no_grad():
        assert_relative_close(fresh(x), model(x), 1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_initialisation_fills_existing_tensors_in_place(method: str) -> None:
    model = build_model(trained_looking=True)
    inject_adapters(model, {"method": method, "target_modules": TARGETS, **METHOD_FIELDS[method]})
    before = {n: (id(p), p.data_ptr()) for n, p in model.named_parameters()}
    initialise_adapters(model)
    after = {n: (id(p), p.data_ptr()) for n, p in model.named_parameters()}
    assert before == after


@pytest.mark.parametrize("method", METHODS)
def test_half_precision_keeps_dtype_and_identity(method: str) -> None:
    model = adapted(method, dtype=torch.bfloat16)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point():
            assert tensor.dtype == torch.bfloat16, name
    x = inputs(torch.bfloat16)
    reference = build_model(trained_looking=True, dtype=torch.bfloat16)(x)
    assert_relative_close(model(x).float(), reference.float(), 2e-2)


def test_dora_reload_keeps_trained_magnitude() -> None:
    model = adapted("dora")
    perturb_adapters(model)
    layer = next(iter(adapter_layers(model).values()))
    magnitude = layer.magnitude.detach().clone()
    assert initialise_adapters(model) == 0
    assert torch.equal(layer.magnitude, magnitude)


def test_frozen_batchnorm_statistics_do_not_move() -> None:
    model = adapted("lora").train()
    norm = model.encoder.encoders[0].norm
    mean = norm.running_mean.clone()
    model(inputs() * 3 + 1)
    assert torch.equal(norm.running_mean, mean)
    stock = build_model().train()
    stock(inputs() * 3 + 1)
    assert not torch.equal(stock.encoder.encoders[0].norm.running_mean, mean)  # the test would notice drift
