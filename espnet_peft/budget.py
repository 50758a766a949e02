"""Matching trainable-parameter budgets across methods, so that comparisons are fair.

A whole-model budget ``T`` is split over the adapted layers in proportion to ``d_in + d_out`` (what a uniform LoRA
rank spends), and each method then spends its layer budget ``P_l`` as fully as its integer rank / k allows.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from torch import nn

from espnet_peft.targets import find_targets
from espnet_peft.tuners import AdapterConfigError, get_layer_class, registered_methods

Shape = Tuple[int, int]  # (d_out, d_in)


@dataclasses.dataclass
class BudgetPlan:
    method: str
    target: int
    achieved: int
    layer_fields: Dict[str, Dict[str, Any]]

    @property
    def relative_error(self) -> float:
        return (self.achieved - self.target) / self.target

    def adapter_conf(self, **shared: Any) -> Dict[str, Any]:
        """An ``adapter_conf`` that reproduces the plan: the most common setting plus per-module overrides."""
        as_items = {n: _set_items(f) for n, f in self.layer_fields.items()}
        common = Counter(as_items.values()).most_common(1)[0][0]
        overrides = {n.replace(".", r"\."): dict(f) for n, f in as_items.items() if f != common}
        conf = {"method": self.method, **shared, **dict(common)}
        if overrides:
            conf["overrides"] = overrides
        return conf


#: a square layer and a budget on it, to find the fields a total budget derives (rank, k) without a model
PROBE_DIM, PROBE_BUDGET = 256, 8192


def budget_derived_fields(method: str, fields: Mapping[str, Any]) -> frozenset:
    """The fields a total budget sets on every layer (LoRA's r, SSVD-O's k_inner / k_outer / budget)."""
    try:
        return frozenset(get_layer_class(method).config_class.fields_for_budget(PROBE_DIM, PROBE_DIM, PROBE_BUDGET,
                                                                                  fields))
    except (AdapterConfigError, NotImplementedError):
        return frozenset()


def _set_items(fields: Mapping[str, Any]) -> Tuple[Tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in fields.items() if v is not None))


def plan_budget(method: str, shapes: Mapping[str, Shape], total: int, fields: Optional[Mapping[str, Any]] = None,
                ) -> BudgetPlan:
    """Per-layer settings of ``method`` that spend about ``total`` trainable parameters over ``shapes``.

    Each layer gets a share of what is still unspent, proportional to its ``d_in + d_out`` among the layers still to
    plan, and rounds it to its method's integer rank / k. The rounding error thus carries to the next layers
    (error diffusion), so the total lands close to ``total`` even where a single rank step is coarse.
    """
    layer_class = get_layer_class(method)
    config_class = layer_class.config_class
    remaining_weight = sum(d_out + d_in for d_out, d_in in shapes.values())
    layer_fields, achieved = {}, 0
    for name, (d_out, d_in) in shapes.items():
        layer_budget = int(round((total - achieved) * (d_out + d_in) / remaining_weight))
        remaining_weight -= d_out + d_in
        try:
            layer_fields[name] = config_class.fields_for_budget(d_out, d_in, layer_budget, fields or {})
            config = config_class.from_dict({**(fields or {}), **layer_fields[name]})
            layer_class.check_shape(d_out, d_in, config)
        except AdapterConfigError as error:
            raise AdapterConfigError(f"{method} at a total budget of {total:,}: module '{name}': {error}") from None
        achieved += layer_class.count_parameters(d_out, d_in, config)
    return BudgetPlan(method, total, achieved, layer_fields)


def match_budget(model_or_shapes: "nn.Module | Mapping[str, Shape]", total: int, methods: Optional[Iterable[str]] = None,
                 target_modules: Any = "all-linear", exclude_modules: Any = None, tolerance: float = 0.05,
                 fields: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Dict[str, BudgetPlan]:
    """A plan per method, all within ``tolerance`` of ``total``; raises with the achieved counts otherwise.

    ``methods`` defaults to every registered method. ``fields`` gives extra per-method fields (e.g.
    ``{"ssvd_o": {"outer_share": 0.5}}``).
    """
    if isinstance(model_or_shapes, nn.Module):
        targets = find_targets(model_or_shapes, target_modules, exclude_modules)
        shapes = {n: (m.out_features, m.in_features) for n, m in targets.items()}
    else:
        shapes = dict(model_or_shapes)
    methods = registered_methods() if methods is None else methods
    plans = {m: plan_budget(m, shapes, total, (fields or {}).get(m)) for m in methods}
    off = {m: p.achieved for m, p in plans.items() if abs(p.relative_error) > tolerance}
    if off:
        raise AdapterConfigError(
            f"cannot match a budget of {total:,} within {tolerance:.0%} for {sorted(off)}: achieved {off}. "
            "Integer ranks are too coarse at this budget; raise or lower it, or adapt other modules"
        )
    return plans


def format_plans(plans: Mapping[str, BudgetPlan]) -> str:
    lines = [f"{'method':<8}  {'target':>10}  {'achieved':>10}  {'error':>7}  settings"]
    for method, plan in plans.items():
        settings = Counter(_set_items(f) for f in plan.layer_fields.values())
        shown = "; ".join(f"{dict(s)} x{n}" for s, n in settings.most_common())
        lines.append(f"{method:<8}  {plan.target:>10,}  {plan.achieved:>10,}  {plan.relative_error:>+7.2%}  {shown}")
    return "\n".join(lines)
