"""``modules_to_save`` and ``bias``: only they and the adapters train, they are counted, saved, exported and merged."""

from __future__ import annotations

from typing import Dict

import pytest
import torch

from helpers.adapter_models import TARGETS, build_model, perturb_adapters
from espnet_peft.base_fingerprint import base_fingerprint
from espnet_peft.injection import adapter_layers, initialise_adapters, inject_adapters, merge_adapters
from espnet_peft.train.checkpoint import load_adapter_only_state
from espnet_peft.tuners import METHODS, AdapterConfigError

ADAPTED_BIASES = {f"encoder.encoders.{b}.{m}.bias" for b in (0, 1)
                  for m in ("attn.linear_q", "attn.linear_v", "feed_forward.w_1", "feed_forward.w_2")}
HEAD = {"ctc.ctc_lo.weight", "ctc.ctc_lo.bias"}
FIELDS = {"lora": {"r": 2}, "dora": {"r": 2}, "pissa": {"r": 2}, "ssvd": {"k": 4}, "ssvd_o": {"budget": 12}}


def conf(method: str = "lora", **extra) -> dict:
    return {"method": method, "target_modules": TARGETS, **FIELDS[method], **extra}


def adapted(method: str = "lora", seed: int = 0, **extra):
    model = build_model(seed=seed, trained_looking=True)
    report = inject_adapters(model, conf(method, **extra))
    initialise_adapters(model)
    return model, report


def adapter_tensor_names(model: torch.nn.Module) -> set:
    return {f"{n}.{k}" for n, layer in adapter_layers(model).items() for k in layer.adapter_parameters()}


def train_step(model: torch.nn.Module) -> None:
    model.train()
    x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(1))
    model(x).square().mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(-0.1 * p.grad)
    model.eval()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bias,expected_biases", [("none", set()), ("adapter_only", ADAPTED_BIASES),
                                                  ("all", "every")])
def test_only_adapters_and_extras_train(method: str, bias: str, expected_biases) -> None:
    model, report = adapted(method, modules_to_save=["ctc_lo"], bias=bias)
    every_bias = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    expected_biases = every_bias if expected_biases == "every" else expected_biases
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == adapter_tensor_names(model) | HEAD | expected_biases
    extras = HEAD | expected_biases
    assert report.extras == sum(model.get_parameter(n).numel() for n in extras)
    assert report.trainable == sum(model.get_parameter(n).numel() for n in trainable)
    assert "modules_to_save + bias" in report.table()

    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_step(model)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed <= trainable | {k for k in before if "running_" in k or "num_batches" in k}
    assert extras <= changed, f"extras that did not train: {sorted(extras - changed)[:5]}"


@pytest.mark.parametrize("method", METHODS)
def test_merge_equals_unmerged_with_trained_extras(method: str) -> None:
    model, _ = adapted(method, modules_to_save=["ctc_lo"], bias="adapter_only")
    perturb_adapters(model, scale=0.05)
    train_step(model)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        unmerged = model(x)
        merged = merge_adapters(model)(x)
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)  # fp32: W' summed in another order


def trainable_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """What ESPnet's ``required_grad_only`` keeps: every trainable tensor and every buffer."""
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    state.update({n: b.clone() for n, b in model.named_buffers()})
    return state


@pytest.mark.parametrize("method", METHODS)
def test_an_adapter_only_checkpoint_carries_the_extras_onto_the_pristine_base(method: str) -> None:
    model, _ = adapted(method, modules_to_save=["ctc_lo"], bias="all")
    fingerprint = base_fingerprint(model)
    train_step(model)
    assert base_fingerprint(model) == fingerprint  # the extras are not base weights
    checkpoint = trainable_state(model)

    fresh = build_model(seed=0, trained_looking=True)  # the pristine base, injected, not initialised
    inject_adapters(fresh, conf(method, modules_to_save=["ctc_lo"], bias="all"))
    load_adapter_only_state(fresh, checkpoint)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_a_package_carries_the_extras_and_applies_to_the_pristine_base(method: str, tmp_path) -> None:
    from espnet_peft.export import apply_adapter, write_adapter_package

    model, _ = adapted(method, modules_to_save=["ctc_lo"], bias="adapter_only")
    train_step(model)
    write_adapter_package(model, tmp_path / "package", "test", {"config": "-", "model_file": "-"})
    base = build_model(seed=0, trained_looking=True)
    meta = apply_adapter(base, tmp_path / "package")
    assert set(meta["trainable_extras"]) == HEAD | ADAPTED_BIASES
    assert meta["trainable_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(base.eval()(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("extra,message", [
    ({"modules_to_save": ["nowhere"]}, "modules_to_save \\['nowhere'\\] matched no module"),
    ({"modules_to_save": ["encoders.0"]}, "modules_to_save 'encoder.encoders.0' holds adapted layers"),
    ({"modules_to_save": 3}, "modules_to_save must be"),
    ({"bias": "lora_only"}, "bias must be one of"),
])
def test_bad_extras_are_refused_and_leave_the_model_untouched(extra: dict, message: str) -> None:
    model = build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AdapterConfigError, match=message):
        inject_adapters(model, conf(**extra))
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
