"""The ``espnet_pr6425`` preset reproduces the authors' SSVD layer (ESPnet pull request #6425, ``SSVDLinear``).

``authors_weight`` below restates that layer from its description, independently of our code:

* thin SVD of ``W`` when ``d_out >= d_in``, of ``W^T`` otherwise (so the smaller side is rotated);
* ``A = I - 2 S`` with ``S`` skew-symmetric, built from ``K_vec`` (``k (k-1) / 2`` values, strict upper triangle);
* ``A`` multiplies the top ``k`` rows of ``V^T``; the singular values become ``s_pre + pad(s * sigmoid(gate))``;
* ``k = int(min(d_out, d_in) * rotation_ratio)``; ``K_vec``, ``s`` and ``gate`` start at zero.

Our parameters map onto theirs as: inner generator ``= -K_vec`` where the input side is rotated,
outer generator ``= +K_vec`` on wide layers (there ``W' = U A^T D V^T`` and ``A^T = I + 2 S``); ``delta = s``.
"""

from __future__ import annotations

from typing import Dict, Tuple

import pytest
import torch
from torch.nn import functional as F

from helpers.adapter_models import make_trained_looking
from espnet_peft.tuners import AdapterConfigError, get_layer_class, make_config

torch.set_num_threads(1)

SHAPES = {"square": (40, 40), "tall": (64, 40), "wide": (40, 64)}  # (d_out, d_in)
RATIO = 0.4


def authors_weight(weight: torch.Tensor, k_vec: torch.Tensor, s: torch.Tensor, gate: torch.Tensor, k: int
                   ) -> torch.Tensor:
    d_out, d_in = weight.shape
    wide = d_out < d_in
    u, s_pre, vh = torch.linalg.svd(weight.T if wide else weight, full_matrices=False)
    skew = torch.zeros(k, k, dtype=weight.dtype)
    rows, cols = torch.triu_indices(k, k, offset=1)
    skew = skew.index_put((rows, cols), k_vec)
    skew = skew - skew.T
    rotation = torch.eye(k, dtype=weight.dtype) - 2 * skew
    sigma = s_pre + F.pad(s * torch.sigmoid(gate), (0, s_pre.numel() - k))
    rotated = torch.cat([rotation @ vh[:k], vh[k:]], dim=0)
    rebuilt = u @ torch.diag(sigma) @ rotated
    return rebuilt.T if wide else rebuilt


def trained_state(k: int, seed: int) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "K_vec": 0.05 * torch.randn(k * (k - 1) // 2, generator=generator),
        "s": 0.1 * torch.randn(k, generator=generator),
        "gate": torch.randn(1, generator=generator),
    }


def our_layer(shape: Tuple[int, int], method: str = "ssvd", **fields):
    d_out, d_in = shape
    torch.manual_seed(d_out + d_in)  # the bias
    base = make_trained_looking(torch.nn.Linear(d_in, d_out), seed=sum(shape))
    if method == "ssvd" and "budget" not in fields:
        fields.setdefault("rotation_ratio", RATIO)
    fields.setdefault("compute_path", "lowrank")
    layer = get_layer_class(method)(base, make_config(method, preset="espnet_pr6425", **fields))
    layer.initialise_from_weight()
    return base, layer


def load_authors_state(layer, state: Dict[str, torch.Tensor], wide: bool) -> None:
    with torch.no_grad():
        if wide:
            layer.outer_generator.copy_(state["K_vec"])
        else:
            layer.inner_generator.copy_(-state["K_vec"])
        layer.sigma_delta.copy_(state["s"])
        layer.gate.copy_(state["gate"])


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("path", ["lowrank", "rebuild"])
def test_preset_matches_the_authors_layer(shape_name: str, path: str) -> None:
    shape = SHAPES[shape_name]
    wide = shape_name == "wide"
    base, layer = our_layer(shape, compute_path=path)
    k = int(min(shape) * RATIO)
    assert layer.k == k and (layer.k_outer, layer.k_inner) == ((k, 0) if wide else (0, k))
    assert layer.num_trainable_parameters() == k * (k - 1) // 2 + k + 1
    state = {name: tensor.requires_grad_() for name, tensor in trained_state(k, seed=len(shape_name)).items()}
    load_authors_state(layer, {n: t.detach() for n, t in state.items()}, wide)

    weight = base.weight.detach()
    x_theirs = torch.randn(3, 7, shape[1], requires_grad=True)
    x_ours = x_theirs.detach().clone().requires_grad_()
    merged_theirs = authors_weight(weight, state["K_vec"], state["s"], state["gate"], k)
    y_theirs = F.linear(x_theirs, merged_theirs, base.bias.detach())
    y_ours = layer(x_ours)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.merged_weight(), merged_theirs, rtol=1e-5, atol=1e-5)

    upstream = torch.randn_like(y_theirs)
    (y_theirs * upstream).sum().backward()
    (y_ours * upstream).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-5, atol=1e-5)
    generator = layer.outer_generator if wide else layer.inner_generator
    sign = 1.0 if wide else -1.0
    torch.testing.assert_close(sign * generator.grad, state["K_vec"].grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.sigma_delta.grad, state["s"].grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.gate.grad, state["gate"].grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_preset_starts_at_the_pretrained_weight(shape_name: str) -> None:
    base, layer = our_layer(SHAPES[shape_name])
    assert torch.count_nonzero(layer.core()) == 0
    x = torch.randn(2, SHAPES[shape_name][1])
    assert torch.equal(layer(x), base(x))


@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_ssvd_o_with_outer_share_zero_is_the_authors_ssvd_on_every_shape(shape_name: str) -> None:
    shape = SHAPES[shape_name]
    _, ssvd = our_layer(shape, budget=300)
    _, ssvd_o = our_layer(shape, method="ssvd_o", budget=300, outer_share=0.0)
    assert (ssvd_o.k_inner, ssvd_o.k_outer) == (ssvd.k_inner, ssvd.k_outer)
    assert (ssvd.k_outer > 0) == (shape_name == "wide")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in (ssvd, ssvd_o):
            for name, p in sorted(layer.adapter_parameters().items()):
                p.copy_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    x = torch.randn(4, shape[1], generator=generator)
    assert torch.equal(ssvd_o(x), ssvd(x))


def test_preset_floors_the_rotation_ratio_and_counts_the_gate() -> None:
    assert make_config("ssvd", preset="espnet_pr6425", rotation_ratio=0.4).resolve_ranks(1024, 1024) == (409, 0)
    assert make_config("ssvd", rotation_ratio=0.4).resolve_ranks(1024, 1024) == (410, 0)
    config = make_config("ssvd", preset="espnet_pr6425", budget=16 * 768)
    k = config.resolve_ranks(384, 384)[0]
    assert k * (k - 1) // 2 + k + 1 <= 16 * 768 < (k + 1) * k // 2 + k + 2
    assert get_layer_class("ssvd").count_parameters(384, 384, config) == k * (k - 1) // 2 + k + 1


@pytest.mark.parametrize("fields", [
    {"rotation_map": "cayley"},
    {"gate": False},
    {"rotated_side": "input"},
    {"ratio_rounding": "round"},
])
def test_a_field_that_contradicts_the_preset_is_refused(fields: dict) -> None:
    field = next(iter(fields))
    with pytest.raises(AdapterConfigError, match=f"preset 'espnet_pr6425' sets {field}"):
        make_config("ssvd", preset="espnet_pr6425", rotation_ratio=0.4, **fields)
    config = make_config("ssvd", preset="espnet_pr6425", rotation_ratio=0.4)
    with pytest.raises(AdapterConfigError, match="preset"):
        config.replace(**fields)


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(AdapterConfigError, match="espnet_pr6425"):
        make_config("ssvd_o", preset="authors", budget=100)


@pytest.mark.parametrize("method,fields", [("ssvd", {}), ("ssvd_o", {"outer_share": 0.5})])
def test_preset_works_with_a_total_budget(method: str, fields: dict) -> None:
    from helpers.adapter_models import TARGETS, build_model
    from espnet_peft.injection import adapter_layers, inject_adapters

    model = build_model(trained_looking=True)
    report = inject_adapters(model, {"method": method, "preset": "espnet_pr6425", "target_modules": TARGETS,
                                     "total_budget": 400, **fields})
    layers = adapter_layers(model)
    assert all(layer.gate is not None and layer.config.rotation_map == "linear" for layer in layers.values())
    trained = sum(layer.num_trainable_parameters() for layer in layers.values())
    assert trained == report.trainable and 0.95 * 400 <= trained <= 400
    if method == "ssvd":  # the authors' SSVD rotates the output side of wide layers
        wide = [layer for layer in layers.values() if layer.out_features < layer.in_features]
        assert wide and all(layer.k_inner == 0 < layer.k_outer for layer in wide)
