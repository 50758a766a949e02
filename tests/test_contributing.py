"""docs/contributing.md, followed: a new adapter method added through the registry alone works end to end.

The method here is a throw-away one, a per-output-row scale ``W' = diag(1 + g) W`` (``d_out`` parameters per layer),
defined in this file and registered with ``espnet_peft.tuners.register_method``; no file of the package is edited.
Injection, identity at initialisation, gradients, merging, budgets, adapter packages and the recipe's method list must
then take it by name as they take a shipped method. The checklist's other items (configs, shipped-method tests) are
checked by the tests that parametrize over ``espnet_peft.tuners.METHODS``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterator, Mapping

import pytest
import torch

from espnet_peft.budget import match_budget
from espnet_peft.export import apply_adapter, methods_of_checkpoint, write_adapter_package
from espnet_peft.injection import adapter_layers, initialise_adapters, inject_adapters, merge_adapters
from espnet_peft.recipe.finetune_config import all_methods
from espnet_peft.tuners import (METHODS, AdapterConfig, AdapterConfigError, AdapterLayer, register_method,
                                registered_methods, unregister_method)
from helpers.adapter_models import TARGETS, build_model, perturb_adapters

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class RowScaleConfig(AdapterConfig):
    """A gain per output row, ``W' = diag(1 + g) W``."""

    method: ClassVar[str] = "row_scale_for_test"

    @classmethod
    def fields_for_budget(cls, d_out: int, d_in: int, budget: int, fields: Mapping[str, Any]) -> Dict[str, Any]:
        return {}  # its count is fixed (d_out per layer): nothing to set


class RowScaleLayer(AdapterLayer):
    config_class = RowScaleConfig

    def __init__(self, base: torch.nn.Linear, config: RowScaleConfig) -> None:
        super().__init__(base, config)
        self.gain = self._new_parameter(self.out_features)

    def _initialise(self, weight_fp32: torch.Tensor) -> None:
        self.gain.zero_()

    def delta_weight(self) -> torch.Tensor:
        return self.bottleneck(self.gain)[:, None] * self.weight

    @classmethod
    def count_parameters(cls, d_out: int, d_in: int, config: AdapterConfig) -> int:
        return d_out


@pytest.fixture
def row_scale() -> Iterator[str]:
    register_method(RowScaleLayer)
    try:
        yield RowScaleConfig.method
    finally:
        unregister_method(RowScaleConfig.method)


def _injected(method: str, seed: int = 0) -> torch.nn.Module:
    model = build_model(seed)
    inject_adapters(model, {"method": method, "target_modules": TARGETS})
    initialise_adapters(model)
    return model


def test_a_registered_method_is_taken_by_name_everywhere(row_scale: str) -> None:
    assert row_scale in registered_methods() and row_scale in all_methods()
    assert row_scale not in METHODS, "METHODS is the shipped set, which the committed configs cover"
    x = torch.randn(2, 5, 16)
    base = build_model()
    model = _injected(row_scale)
    assert len(adapter_layers(model)) == 2 * len(TARGETS)
    assert all(not layer.delta_weight().any() for layer in adapter_layers(model).values())  # identity at init
    torch.testing.assert_close(model(x), base(x), rtol=0, atol=1e-6)

    model.train()
    model(x).square().mean().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all(n.endswith(".gain") for n in with_grad), "gradients only in the new method's tensors"

    perturb_adapters(model)
    model.eval()
    with torch.no_grad():
        adapted = model(x)
        merged = merge_adapters(model)(x)
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-6)  # merge = unmerged

    plans = match_budget(build_model(), total=2 * (16 + 16 + 24 + 16), methods=[row_scale], target_modules=TARGETS)
    assert plans[row_scale].achieved == 2 * (16 + 16 + 24 + 16)


def test_a_registered_method_round_trips_through_an_adapter_package(row_scale: str, tmp_path: Path) -> None:
    x = torch.randn(2, 5, 16)
    model = _injected(row_scale)
    perturb_adapters(model)
    model.eval()
    write_adapter_package(model, tmp_path / "package", "asr", {"config": "test", "model_file": "test"})
    state = torch.load(tmp_path / "package" / "adapter_model.pth", weights_only=True)
    assert methods_of_checkpoint(state) == [row_scale]

    fresh = build_model()
    apply_adapter(fresh, tmp_path / "package")
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_a_taken_name_and_a_shipped_method_are_refused(row_scale: str) -> None:
    with pytest.raises(AdapterConfigError, match=f"'{row_scale}' is already registered"):
        register_method(RowScaleLayer)
    with pytest.raises(AdapterConfigError, match="'lora' is a shipped method"):
        unregister_method("lora")


def test_the_checklist_names_files_that_exist() -> None:
    """Every path the contributor's checklist names is in the repository (a renamed file breaks the checklist)."""
    text = (REPO / "docs" / "contributing.md").read_text(encoding="utf-8")
    named = {path for path in re.findall(r"`((?:espnet_peft|tests|conf|egs2|benchmarks|docs|tools)/[^`*<> ]+)`", text)}
    assert len(named) > 15, "the checklist names the files each addition touches"
    missing = sorted(path for path in named if not (REPO / path.rstrip("/")).exists())
    assert not missing, f"docs/contributing.md names files that do not exist: {missing}"
