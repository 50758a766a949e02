"""The training-dynamics probe: the side maps are each method's update, a planted low-rank task is recovered, and
real ESPnet training is unchanged by the probe."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers.espnet_fixtures import PretrainedModel, finetune_cmd
from espnet_peft.analysis.dynamics import initial_state, probe_dynamics
from espnet_peft.injection import adapter_layers, inject_adapters, initialise_adapters
from espnet_peft.train.dynamics_probe import FIGURE, RESULT, START, DynamicsProbe, DynamicsProbeConfig
from espnet_peft.tuners import METHODS, AdapterConfigError

D, PLANTED_RANK, RANK = 32, 2, 8
SETTINGS = {"lora": {"r": 4}, "dora": {"r": 4}, "pissa": {"r": 4}, "ssvd": {"k": 6},
            "ssvd_o": {"k_inner": 6, "k_outer": 4}}


class Regression(nn.Module):
    """``linear(x)`` against a target, returning the loss first as ESPnet models do."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(D, D)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
        return (((self.linear(x) - y) ** 2).sum(-1).mean(),)


def adapted(method: str, seed: int = 0, **fields: object) -> Regression:
    torch.manual_seed(seed)
    model = Regression()
    inject_adapters(model, {"method": method, "target_modules": ["linear"], **fields})
    initialise_adapters(model)
    return model


@pytest.mark.parametrize("method", METHODS)
def test_the_side_maps_rebuild_each_methods_update(method: str) -> None:
    model = adapted(method, **SETTINGS[method])
    layer = adapter_layers(model)["linear"]
    with torch.no_grad():
        for p in layer.adapter_parameters().values():
            p.add_(0.1 * torch.randn_like(p))
    first, second = layer.side_maps()
    delta = layer.delta_weight().detach()
    if method in ("ssvd", "ssvd_o"):  # U R_o diag(s + delta) R_i V^T - U diag(s) V^T
        scale = layer.svd_s + layer.sigma_delta.detach()
        rebuilt = second @ torch.diag(scale) @ first - layer.svd_u @ torch.diag(layer.svd_s) @ layer.svd_vh
    elif method == "dora":  # the direction's update, before DoRA's per-row magnitude
        rebuilt = second @ first
        delta = layer.scaling * layer.low_rank_product().detach()
    elif method == "pissa":
        rebuilt = second @ first - layer.scaling * layer.lora_B0 @ layer.lora_A0
    else:
        rebuilt = second @ first
    torch.testing.assert_close(rebuilt, delta, atol=1e-5, rtol=1e-4)


def planted_task(seed: int = 0):
    """Inputs with 4 strong directions; the target adds a rank-2 map that reads two of them."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
    scales = torch.full((D,), 0.3)
    scales[:4] = 3.0
    out_basis, _ = torch.linalg.qr(torch.randn(D, PLANTED_RANK, generator=g))
    planted = out_basis @ torch.diag(torch.tensor([2.0, 1.5])) @ basis[:, :PLANTED_RANK].T

    def batch(n: int = 512) -> dict:
        x = (torch.randn(n, D, generator=g) * scales) @ basis.T
        return {"inputs": x}

    return batch, basis, out_basis, planted


def test_the_probe_recovers_a_planted_low_rank_task(tmp_path: Path) -> None:
    """LoRA learns ``W + U_p S V_p^T``: the B-side outputs end at the planted rank, A's update lies in the strong
    input directions, and B in the gradient's principal directions, far above chance."""
    batch, basis, out_basis, planted = planted_task()
    model = adapted("lora", r=RANK, alpha=RANK)
    target = model.linear.weight.detach() + planted

    # plain SGD keeps every update in the span of the gradients (Adam rescales coordinates and leaks out of it)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    probe = DynamicsProbe(model, DynamicsProbeConfig(every_n_steps=50), tmp_path, [optimizer]).attach()
    for _ in range(301):
        x = batch()["inputs"]
        loss = model(x=x, y=x @ target.T + model.linear.bias.detach())[0]  # keywords, as ESPnet calls models
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert probe.finish() == tmp_path / FIGURE and (tmp_path / FIGURE).stat().st_size > 0
    probes = json.loads((tmp_path / RESULT).read_text())["probes"]
    assert [p["step"] for p in probes] == [0, 50, 100, 150, 200, 250, 300, 301]  # and the final model
    first, last = probes[0]["layers"]["linear"], probes[-1]["layers"]["linear"]
    assert last["act_b"]["k90"] == PLANTED_RANK and last["grad_b"]["k90"] <= PLANTED_RANK
    assert first["act_b"]["k90"] == 0  # B = 0: no update yet
    chance = RANK / D
    assert last["forward_alignment_update"] > 0.9 > 3 * chance
    assert last["backward_alignment"] > 0.95
    assert first["forward_alignment"] < 2 * chance  # LoRA's random A starts unaligned
    assert first["forward_alignment_update"] is None and first["update_cka"] is None
    # the update really is the planted map where the inputs live (the weak directions barely move the loss)
    learned = adapter_layers(model)["linear"].delta_weight().detach()
    strong = basis[:, :4]
    assert torch.linalg.matrix_norm((learned - planted) @ strong) < 0.05 * torch.linalg.matrix_norm(planted)
    assert last["change_norm"]["lora_B"] > 0 and first["change_norm"]["lora_B"] == 0


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_probed_without_touching_gradients_or_state(method: str) -> None:
    batch, *_ = planted_task(1)
    model = adapted(method, **SETTINGS[method])
    keys = set(model.state_dict())
    start = initial_state(model)
    b = batch(64)
    stats = probe_dynamics(model, b, lambda m, x: m(x["inputs"], x["inputs"].roll(1, -1))[0], start)["linear"]
    assert all(p.grad is None for p in model.parameters())
    assert set(model.state_dict()) == keys
    assert all(v == 0 for v in stats["change_norm"].values())
    assert 0 < stats["forward_alignment"] <= 1 + 1e-9
    if method in ("lora", "dora"):  # B starts at zero: nothing to align yet
        assert stats["backward_alignment"] is None
    else:
        assert 0 < stats["backward_alignment"] <= 1 + 1e-9
    assert stats["grad_b"]["k90"] >= 1 and math.isclose(stats["forward_alignment_chance"], stats["rank"] / D)


def test_bad_probe_settings_are_refused_by_name() -> None:
    for bad in ({}, {"every_n_steps": 0}, {"every_n_steps": 5, "every": 1}, "50", {"every_n_steps": True}):
        with pytest.raises(AdapterConfigError, match="dynamics_probe"):
            inject_adapters(Regression(), {"method": "lora", "target_modules": ["linear"], "dynamics_probe": bad})


def _train(pretrained: PretrainedModel, out: Path, probe: bool) -> dict:
    conf = {"method": "lora", "r": 4, "alpha": 8, "target_modules": ["linear_q", "linear_v", "w_1"]}
    if probe:
        conf["dynamics_probe"] = {"every_n_steps": 2}
    cmd = finetune_cmd(pretrained, out, ["--use_adapter", "true", "--adapter", "espnet_peft", "--adapter_conf",
                                         json.dumps(conf), "--max_epoch", "2", "--optim_conf", "lr=0.01",
                                         "--scheduler", "none", "--seed", "1"])
    importlib.import_module(f"espnet_peft.bin.{pretrained.task}_train").main(cmd)
    return torch.load(out / "latest.pth", map_location="cpu", weights_only=False)


def test_espnet_training_with_the_probe_is_bit_identical_and_records_curves(pretrained_asr: PretrainedModel,
                                                                            tmp_path: Path) -> None:
    plain = _train(pretrained_asr, tmp_path / "plain", probe=False)
    probed = _train(pretrained_asr, tmp_path / "probed", probe=True)
    assert plain.keys() == probed.keys()
    for key in plain:
        assert torch.equal(plain[key], probed[key]), key
    assert not (tmp_path / "plain" / RESULT).exists()
    probes = json.loads((tmp_path / "probed" / RESULT).read_text())["probes"]
    steps = [p["step"] for p in probes]
    assert steps[0] == 0 and steps == sorted(steps) and len(steps) >= 3 and all(s % 2 == 0 for s in steps[:-1])
    reporter = torch.load(tmp_path / "probed" / "checkpoint.pth", weights_only=False)["optimizers"][0]["state"]
    assert steps[-1] == int(next(iter(reporter.values()))["step"])  # the final model is probed too
    layers = probes[-1]["layers"]
    assert len(layers) == len(adapter_layers_of(pretrained_asr, tmp_path / "probed"))
    assert any(layer["change_norm"]["lora_B"] > 0 for layer in layers.values())
    assert (tmp_path / "probed" / FIGURE).is_file() and (tmp_path / "probed" / START).is_file()


def adapter_layers_of(pretrained: PretrainedModel, out: Path) -> list:
    state = torch.load(out / "latest.pth", map_location="cpu", weights_only=False)
    return [k for k in state if k.endswith(".lora_A")]


def test_principal_directions_span_the_top_singular_subspace() -> None:
    from espnet_peft.analysis.dynamics import principal_directions

    g = torch.Generator().manual_seed(3)
    for shape in ((300, 20), (10, 40)):  # more rows than columns (the Gram's eigenvectors) and fewer (an SVD)
        rows = torch.randn(*shape, generator=g, dtype=torch.float64) * torch.linspace(3, 0.1, shape[1]).double()
        basis = principal_directions(rows, 5)
        _, _, vh = torch.linalg.svd(rows, full_matrices=False)
        torch.testing.assert_close(basis @ basis.T, vh[:5].T @ vh[:5], atol=1e-8, rtol=0)
