"""Target selection, freezing, reporting, budget matching, and clear errors that leave the model untouched."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from helpers.adapter_models import TARGETS, build_model
from espnet_peft.budget import format_plans, match_budget
from espnet_peft.injection import adapter_layers, find_targets, inject_adapters
from espnet_peft.tuners import METHODS, AdapterConfigError


def state_of(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model: torch.nn.Module, before: dict) -> None:
    assert not adapter_layers(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("conf,message", [
    ({"method": "lokr"}, "unknown adapter method 'lokr'"),
    ({"method": "lora", "target_modules": ["linear_z"]}, "matched no nn.Linear module"),
    ({"method": "lora", "target_modules": ["norm"]}, "matched only non-Linear modules"),
    ({"method": "lora", "target_modules": TARGETS, "r": 17}, "rank r=17 exceeds min(d_in, d_out) = 16"),
    ({"method": "ssvd", "target_modules": TARGETS, "k": 20}, "exceed min(d_in, d_out) = 16"),
    ({"method": "ssvd_o", "target_modules": TARGETS, "budget": 10_000}, "exceeds the 256 parameters"),
    ({"method": "lora", "target_modules": TARGETS, "rank": 4}, "unknown field(s) ['rank']"),
    ({"method": "ssvd", "target_modules": TARGETS}, "exactly one of k, budget, rotation_ratio"),
    ({"method": "lora", "target_modules": TARGETS, "overrides": {"linear_z": {"r": 2}}},
     "overrides pattern(s) ['linear_z'] match no adapted module"),
    ({"method": "lora", "target_modules": TARGETS, "overrides": {"w_1": {"rank": 2}}},
     "overrides for module 'encoder.encoders.0.feed_forward.w_1': unknown field(s) ['rank']"),
    ({"method": "ssvd_o", "target_modules": TARGETS, "budget": 40, "outer_share": "0.5"},
     "outer_share must be a number in [0.0, 1.0], got '0.5'"),
    ({"method": "lora", "target_modules": 3}, "target_modules must be a regex string or a list of module names"),
    ({"method": "lora", "target_modules": TARGETS, "dropout": "0.1"}, "dropout must be a number"),
])
def test_bad_configs_fail_clearly_and_leave_the_model_untouched(conf: dict, message: str) -> None:
    model = build_model()
    before = state_of(model)
    with pytest.raises(AdapterConfigError) as error:
        inject_adapters(model, conf)
    assert message in str(error.value)
    assert_untouched(model, before)


def test_unmatched_targets_list_existing_names() -> None:
    with pytest.raises(AdapterConfigError) as error:
        inject_adapters(build_model(), {"method": "lora", "target_modules": ["linear_z"]})
    assert "encoder.encoders.0.attn.linear_q" in str(error.value) and "'w_1'" in str(error.value)


def test_oversized_rank_names_the_module() -> None:
    with pytest.raises(AdapterConfigError, match=r"module 'encoder\.encoders\.0\.attn\.linear_q'"):
        inject_adapters(build_model(), {"method": "lora", "target_modules": TARGETS, "r": 17})


def test_target_semantics_suffix_regex_all_linear_and_exclude() -> None:
    model = build_model()
    assert set(find_targets(model, ["w_1"])) == {"encoder.encoders.0.feed_forward.w_1", "encoder.encoders.1.feed_forward.w_1"}
    assert set(find_targets(model, r"encoder\.encoders\.1\..*linear_[qv]")) == {
        "encoder.encoders.1.attn.linear_q", "encoder.encoders.1.attn.linear_v"}
    all_linear = find_targets(model, "all-linear")
    assert "ctc.ctc_lo" not in all_linear and len(all_linear) == 8
    assert len(find_targets(model, "all-linear", exclude_modules=["w_1", "w_2"])) == 4


def test_everything_but_adapters_is_frozen_and_table_is_logged(caplog) -> None:
    model = build_model()
    with caplog.at_level(logging.INFO):
        report = inject_adapters(model, {"method": "lora", "target_modules": TARGETS, "r": 2})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.{p}" for n in adapter_layers(model) for p in ("lora_A", "lora_B")}
    assert report.trainable == sum(2 * (m.in_features + m.out_features) for m in adapter_layers(model).values())
    table = report.table()
    assert "linear_q" in table and "w_1" in table and f"{report.trainable:,}" in table
    assert table in caplog.text


def test_overrides_change_only_matching_modules() -> None:
    model = build_model()
    inject_adapters(model, {"method": "lora", "target_modules": TARGETS, "r": 2,
                            "overrides": {"w_1": {"r": 5}, r"encoder\.encoders\.1\.attn\..*": {"alpha": 1.0}}})
    layers = adapter_layers(model)
    assert layers["encoder.encoders.0.feed_forward.w_1"].config.r == 5
    assert layers["encoder.encoders.0.feed_forward.w_2"].config.r == 2
    assert layers["encoder.encoders.1.attn.linear_q"].config.alpha == 1.0
    assert layers["encoder.encoders.0.attn.linear_q"].config.alpha == 16.0


def test_injecting_twice_is_refused() -> None:
    model = build_model()
    inject_adapters(model, {"method": "lora", "target_modules": TARGETS, "r": 2})
    with pytest.raises(AdapterConfigError, match="already has espnet_peft adapters"):
        inject_adapters(model, {"method": "lora", "target_modules": TARGETS, "r": 2})


def test_budget_helper_matches_all_methods_within_five_percent() -> None:
    shapes = {f"enc.{i}.{n}": s for i in range(6) for n, s in
              [("q", (384, 384)), ("k", (384, 384)), ("v", (384, 384)), ("o", (384, 384)),
               ("w_1", (1536, 384)), ("w_2", (384, 1536))]}
    total = 16 * sum(a + b for a, b in shapes.values())
    plans = match_budget(shapes, total, fields={"ssvd_o": {"outer_share": 0.5}})
    assert set(plans) == set(METHODS)
    for plan in plans.values():
        assert abs(plan.achieved - total) <= 0.05 * total
    print(format_plans(plans))  # the achieved counts, as reported to users


@pytest.mark.parametrize("method", METHODS)
def test_total_budget_in_adapter_conf_lands_within_five_percent(method: str) -> None:
    model = build_model()
    total = 800
    fields = {"outer_share": 0.5} if method == "ssvd_o" else {}
    report = inject_adapters(model, {"method": method, "target_modules": TARGETS, "total_budget": total, **fields})
    assert abs(report.trainable - total) <= 0.05 * total


def test_plan_reproduces_through_adapter_conf() -> None:
    model = build_model()
    plan = match_budget(model, 600, ["ssvd"], target_modules=TARGETS)["ssvd"]
    injected = copy.deepcopy(model)
    report = inject_adapters(injected, plan.adapter_conf(target_modules=TARGETS))
    assert report.trainable == plan.achieved


def test_budget_below_the_minimum_is_an_error() -> None:
    with pytest.raises(AdapterConfigError, match="below dora's minimum"):
        match_budget(build_model(), 50, ["dora"], target_modules=TARGETS)


def test_a_rank_given_with_a_total_budget_is_refused_by_name() -> None:
    model = build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AdapterConfigError, match=r"total_budget=500 and \{'r': 4\}.*remove r .*or total_budget"):
        inject_adapters(model, {"method": "lora", "target_modules": TARGETS, "total_budget": 500, "r": 4})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
