"""SSVD / SSVD-O specifics: rotations, the budget rule, SSVD as the outer_share = 0 case, compute paths."""

from __future__ import annotations

import copy

import pytest
import torch

from helpers.adapter_models import TARGETS, build_model, perturb_adapters
from espnet_peft.injection import adapter_layers, initialise_adapters, inject_adapters
from espnet_peft.tuners import get_layer_class, make_config
from espnet_peft.tuners.ssvd_o.config import split_budget
from espnet_peft.tuners.svd import cayley, skew_symmetric

torch.set_num_threads(1)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_cayley_rotation_is_orthogonal(dtype: torch.dtype, tolerance: float) -> None:
    k = 170
    generator = torch.randn(k * (k - 1) // 2, generator=torch.Generator().manual_seed(0), dtype=dtype) * 0.1
    rotation = cayley(skew_symmetric(generator, k))
    eye = torch.eye(k, dtype=dtype)
    assert (rotation.T @ rotation - eye).abs().max() < tolerance
    assert torch.det(rotation).item() == pytest.approx(1.0, abs=1e-4)


def test_skew_symmetric_layout() -> None:
    g = skew_symmetric(torch.tensor([1.0, 2.0, 3.0]), 3)
    assert torch.equal(g, torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.0, 3.0], [-2.0, -3.0, 0.0]]))


def brute_force_split(budget: int, share: float, limit: int):
    """The rule spelled out over all pairs: budget-maximal on one side, closest share, then larger total."""
    def params(ki, ko):
        return ki * (ki - 1) // 2 + ko * (ko - 1) // 2 + max(ki, ko)
    feasible = [(ki, ko) for ki in range(limit + 1) for ko in range(limit + 1) if params(ki, ko) <= budget]
    maximal = {(ki, ko) for ki, ko in feasible
               if ki == max(a for a, b in feasible if b == ko) or ko == max(b for a, b in feasible if a == ki)}
    ranked = sorted((abs(ko * (ko - 1) // 2 - share * (ki * (ki - 1) // 2 + ko * (ko - 1) // 2)), -params(ki, ko), ko, ki)
                    for ki, ko in maximal)
    return ranked[0][3], ranked[0][2]


@pytest.mark.parametrize("budget", [1, 2, 3, 10, 57, 100, 1000, 4095])
@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_budget_rule_matches_its_definition(budget: int, share: float) -> None:
    limit = 64
    k_inner, k_outer = split_budget(budget, share, limit)
    assert (k_inner, k_outer) == brute_force_split(budget, share, limit)
    achieved = k_inner * (k_inner - 1) // 2 + k_outer * (k_outer - 1) // 2 + max(k_inner, k_outer)
    assert achieved <= budget
    if share == 0.0:
        ssvd_k = max(k for k in range(limit + 1) if k * (k + 1) // 2 <= budget)
        assert (k_inner, k_outer) == (ssvd_k, 0)


def test_budget_rule_report_at_owsm_base_width() -> None:
    """The achieved split for a LoRA-r16-sized budget on a 384x384 layer, at the paper's sweep of shares."""
    budget = 16 * (384 + 384)
    splits = {share: split_budget(budget, share, 384) for share in (0.0, 0.25, 0.5, 0.75, 1.0)}
    assert splits[0.0] == (156, 0) and splits[1.0] == (0, 156)
    assert abs(splits[0.5][0] - splits[0.5][1]) <= 1
    for k_inner, k_outer in splits.values():
        achieved = k_inner * (k_inner - 1) // 2 + k_outer * (k_outer - 1) // 2 + max(k_inner, k_outer)
        assert 0.98 * budget <= achieved <= budget


@pytest.mark.parametrize("method,fields,expected", [
    ("lora", {"r": 3}, 3 * (24 + 16)),
    ("pissa", {"r": 3}, 3 * (24 + 16)),
    ("dora", {"r": 3}, 3 * (24 + 16) + 24),
    ("ssvd", {"k": 5}, 5 * 4 // 2 + 5),
    ("ssvd_o", {"k_inner": 5, "k_outer": 3}, 10 + 3 + 5),
    ("ssvd_o", {"k_inner": 2, "k_outer": 6}, 1 + 15 + 6),
])
def test_parameter_counts_match_formulas(method: str, fields: dict, expected: int) -> None:
    layer_class = get_layer_class(method)
    config = make_config(method, **fields)
    layer = layer_class(torch.nn.Linear(16, 24), config)
    assert layer.num_trainable_parameters() == expected == layer_class.count_parameters(24, 16, config)


@pytest.mark.parametrize("rotation_map", ["cayley", "linear"])
def test_ssvd_o_with_outer_share_zero_is_ssvd(rotation_map: str) -> None:
    models = {}
    for method, fields in (("ssvd", {}), ("ssvd_o", {"outer_share": 0.0})):
        model = build_model(trained_looking=True)
        inject_adapters(model, {"method": method, "target_modules": TARGETS, "budget": 30, "compute_path": "lowrank",
                                "rotation_map": rotation_map, **fields})
        initialise_adapters(model)
        perturb_adapters(model)  # same seed, same parameter shapes and order -> same trained state
        models[method] = model
    for name, layer in adapter_layers(models["ssvd_o"]).items():
        assert layer.k_outer == 0 and layer.outer_generator is None
        assert layer.k_inner == adapter_layers(models["ssvd"])[name].k_inner
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.equal(models["ssvd_o"](x), models["ssvd"](x))


def test_compute_paths_agree_and_auto_picks_one() -> None:
    model = build_model(trained_looking=True)
    inject_adapters(model, {"method": "ssvd_o", "target_modules": TARGETS, "budget": 40, "outer_share": 0.5,
                            "compute_path": "lowrank"})
    initialise_adapters(model)
    perturb_adapters(model)
    x = torch.randn(2, 5, 16)
    outputs = {}
    for path in ("lowrank", "rebuild", "auto", "timed"):
        variant = copy.deepcopy(model)
        for layer in adapter_layers(variant).values():
            layer.config = layer.config.replace(compute_path=path)
        outputs[path] = variant(x)
    torch.testing.assert_close(outputs["rebuild"], outputs["lowrank"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs["auto"], outputs["lowrank"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs["timed"], outputs["lowrank"], rtol=1e-5, atol=1e-6)


def test_auto_picks_by_counted_work_and_is_the_same_every_time() -> None:
    from espnet_peft.tuners.compute_path import counted_choice

    # few tokens against a large k: rebuilding W' costs more than the per-token correction, and vice versa
    assert counted_choice(384, 384, 156, tokens=8, grad=True) == "lowrank"
    assert counted_choice(384, 384, 156, tokens=596, grad=True) == "rebuild"
    assert counted_choice(384, 384, 156, tokens=100, grad=False) == "lowrank"  # inference: no backward to pay
    assert counted_choice(384, 384, 156, tokens=596, grad=False) == "rebuild"
    layer = get_layer_class("ssvd")(torch.nn.Linear(16, 16), make_config("ssvd", k=12))
    layer.initialise_from_weight()
    x = torch.randn(3, 40, 16)
    choices = {layer._choose_path(x) for _ in range(5)}
    assert choices == {counted_choice(16, 16, 12, tokens=120, grad=True)}


def test_linear_rotation_map_is_first_order_cayley() -> None:
    from espnet_peft.tuners.svd import linear_rotation

    generator = torch.Generator().manual_seed(0)
    g = skew_symmetric(torch.randn(6, dtype=torch.float64, generator=generator) * 1e-4, 4)
    # cayley(G) - (I + 2G) = 2 G^2 (I - G)^-1: second order, bounded by 2 |G|^2 / (1 - |G|) in the spectral norm
    norm = torch.linalg.matrix_norm(g, ord=2).item()
    difference = torch.linalg.matrix_norm(linear_rotation(g) - cayley(g), ord=2).item()
    assert 0 < difference <= 2 * norm ** 2 / (1 - norm) * (1 + 1e-9)


def test_svd_factors_are_stored_and_rotations_act_on_the_right_sides() -> None:
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 8)
    layer = get_layer_class("ssvd_o")(base, make_config("ssvd_o", k_inner=4, k_outer=3, compute_path="lowrank"))
    layer.initialise_from_weight()
    assert {"svd_u", "svd_s", "svd_vh"} <= set(layer.state_dict())
    with torch.no_grad():
        layer.inner_generator.normal_()
        layer.outer_generator.normal_()
        merged = layer.merged_weight()
    u, s, vh = layer.svd_u, layer.svd_s, layer.svd_vh
    # Directions outside the top-k block are untouched on both sides.
    rest = base.weight - u @ torch.diag(s) @ vh
    torch.testing.assert_close(merged - u @ (u.T @ merged @ vh.T) @ vh, rest, rtol=1e-4, atol=1e-5)
    # The k x k core is R_o diag(s) R_i, with R = (I - G)^-1 (I + G) on the top k_inner / k_outer directions.
    def rotation(generator: torch.Tensor, size: int) -> torch.Tensor:
        g = skew_symmetric(generator, size)
        eye = torch.eye(size)
        return torch.block_diag(torch.linalg.inv(eye - g) @ (eye + g), torch.eye(4 - size))
    expected_core = rotation(layer.outer_generator, 3) @ torch.diag(s) @ rotation(layer.inner_generator, 4)
    torch.testing.assert_close(u.T @ merged @ vh.T, expected_core, rtol=1e-4, atol=1e-5)
    # The fourth left direction is outside the outer rotation: that row of the core is only inner-rotated.
    assert not torch.allclose(expected_core[3], torch.diag(s)[3])
    torch.testing.assert_close(expected_core[3], s[3] * rotation(layer.inner_generator, 4)[3])
