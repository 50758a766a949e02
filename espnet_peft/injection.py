"""Putting adapters into a model: target selection, per-module configs, replacement, freezing, reporting.

The ``adapter_conf`` a user writes in YAML is the injection spec::

    adapter_conf:
      method: ssvd_o                  # a name in the tuner registry, espnet_peft.tuners.registered_methods()
      target_modules: [linear_q, linear_v]   # list: exact name or name suffix; string: regex (fullmatch);
                                             # "all-linear": every nn.Linear except output heads
      exclude_modules: [decoder]      # same matching rules; wins over target_modules
      overrides: {"encoder\\.encoders\\.0\\..*": {budget: 2000}}   # per-module field changes (suffix or regex)
      total_budget: 500000            # optional: derive per-layer rank / k from a whole-model parameter budget
      frozen_norms: eval              # eval (default): frozen BatchNorm keeps its running stats; train: stock
      budget: 4000                    # ... plus the method's own fields (see each method's config docstring)
      outer_share: 0.5
      dynamics_probe: {every_n_steps: 50}    # optional: record A/B training dynamics (espnet_peft.train.dynamics_probe)
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from espnet_peft.budget import budget_derived_fields, plan_budget
from espnet_peft.dynamics_probe_config import DynamicsProbeConfig
from espnet_peft.trainable_extras import EXTRAS_ATTRIBUTE, check_extras_options, extra_parameter_names
from espnet_peft.targets import OUTPUT_HEADS, TargetSpec, find_targets, is_output_head, name_matches  # noqa: F401 (re-exported)
from espnet_peft.tuners import AdapterConfig, AdapterConfigError, AdapterLayer, get_layer_class, registered_methods

#: attribute under which the injection spec is kept on the model (read by merge / export)
SPEC_ATTRIBUTE = "espnet_peft_spec"


@dataclasses.dataclass
class InjectionSpec:
    method: str
    target_modules: TargetSpec = "all-linear"
    exclude_modules: Optional[TargetSpec] = None
    overrides: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    total_budget: Optional[int] = None
    frozen_norms: str = "eval"
    modules_to_save: Optional[TargetSpec] = None  # trained in full besides the adapters (espnet_peft.trainable_extras)
    bias: str = "none"  # none | all | adapter_only
    dynamics_probe: Optional[Dict[str, Any]] = None  # the training-dynamics probe's settings (DynamicsProbeConfig)
    method_fields: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> "InjectionSpec":
        conf = dict(conf)
        if "method" not in conf:
            raise AdapterConfigError(f"adapter_conf needs 'method' (one of {', '.join(registered_methods())})")
        own = {f.name for f in dataclasses.fields(cls)} - {"method_fields"}
        spec = cls(**{k: conf.pop(k) for k in list(conf) if k in own}, method_fields=conf)
        if spec.total_budget is None:  # validate early; with a total budget the plan supplies rank / k per layer
            get_layer_class(spec.method).config_class.from_dict(spec.method_fields)
        check_extras_options(spec.modules_to_save, spec.bias)
        if spec.dynamics_probe is not None:
            DynamicsProbeConfig.from_conf(spec.dynamics_probe)
        if spec.frozen_norms not in ("eval", "train"):
            raise AdapterConfigError(f"frozen_norms must be 'eval' or 'train', got {spec.frozen_norms!r}")
        if spec.total_budget is not None and spec.overrides:
            raise AdapterConfigError("total_budget derives every layer's setting; it cannot be combined with overrides")
        for name in ("target_modules", "exclude_modules"):
            value = getattr(spec, name)
            if not (value is None and name == "exclude_modules") and not _is_target_spec(value):
                raise AdapterConfigError(f"{name} must be a regex string or a list of module names, got {value!r}")
        if not isinstance(spec.overrides, dict) or not all(isinstance(v, dict) for v in spec.overrides.values()):
            raise AdapterConfigError(f"overrides must map a module pattern to a dict of fields, got {spec.overrides!r}")
        if spec.total_budget is not None:
            derived = budget_derived_fields(spec.method, spec.method_fields)
            given = {k: spec.method_fields[k] for k in sorted(derived & set(spec.method_fields))}
            if given:
                raise AdapterConfigError(
                    f"adapter_conf sets total_budget={spec.total_budget} and {given}, but total_budget derives "
                    f"{sorted(derived)} for every layer, so {sorted(given)} would be ignored: remove "
                    f"{' and '.join(sorted(given))} (to spend the total budget) or total_budget (to use them as given)")
        return spec

    def to_conf(self) -> Dict[str, Any]:
        conf = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method_fields"}
        if self.dynamics_probe is None:  # a training-time setting: configs and packages without it stay as they were
            del conf["dynamics_probe"]
        conf.update(self.method_fields)
        return conf


def layer_configs(spec: InjectionSpec, targets: Mapping[str, nn.Linear]) -> Dict[str, AdapterConfig]:
    """One validated config per target module, with overrides or the ``total_budget`` plan applied."""
    config_class = get_layer_class(spec.method).config_class
    if spec.total_budget is not None:
        shapes = {n: (m.out_features, m.in_features) for n, m in targets.items()}
        plan = plan_budget(spec.method, shapes, spec.total_budget, spec.method_fields)
        logging.log(logging.WARNING if abs(plan.relative_error) > 0.05 else logging.INFO,
                    "espnet_peft: %s at a total budget of %s trains %s parameters (%+.2f%%)", spec.method,
                    f"{spec.total_budget:,}", f"{plan.achieved:,}", 100 * plan.relative_error)
        return {n: config_class.from_dict({**spec.method_fields, **plan.layer_fields[n]}) for n in targets}
    base = config_class.from_dict(spec.method_fields)
    configs = {}
    unused = set(spec.overrides)
    for name in targets:
        fields = {}
        for pattern, changes in spec.overrides.items():
            if name_matches(name, pattern) or name_matches(name, [pattern]):
                fields.update(changes)
                unused.discard(pattern)
        try:
            configs[name] = base.replace(**fields) if fields else base
        except AdapterConfigError as error:
            raise AdapterConfigError(f"overrides for module '{name}': {error}") from None
    if unused:
        raise AdapterConfigError(
            f"overrides pattern(s) {sorted(unused)} match no adapted module; adapted modules include "
            f"{sorted(targets)[:6]}"
        )
    return configs


def _is_target_spec(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))


def _stay_in_eval(module: nn.Module, _inputs: Tuple) -> None:
    # Frozen BatchNorm must not keep updating running statistics in train mode: the base would drift.
    module.training = False


@dataclasses.dataclass
class InjectionReport:
    method: str
    layers: Dict[str, AdapterLayer]
    trainable: int
    total: int
    extras: int = 0  # parameters of modules_to_save and trained biases (within ``trainable``)

    def table(self) -> str:
        return parameter_table(self.layers, self.trainable, self.total, self.extras)


def check_injection(model: nn.Module, conf: Union[Mapping[str, Any], InjectionSpec]
                    ) -> Tuple[Dict[str, nn.Linear], Dict[str, AdapterConfig]]:
    """The checks of an injection that need only the model's ``nn.Linear`` names and shapes (matching, field values,
    budget plan, ranks against shapes): the target modules and their configs, or an ``AdapterConfigError`` naming
    what does not fit. Touches nothing (``make_finetune_config`` runs it on a skeleton of the base model)."""
    spec = conf if isinstance(conf, InjectionSpec) else InjectionSpec.from_conf(conf)
    layer_class = get_layer_class(spec.method)
    targets = find_targets(model, spec.target_modules, spec.exclude_modules)
    configs = layer_configs(spec, targets)
    for name, module in targets.items():
        try:
            layer_class.check_shape(module.out_features, module.in_features, configs[name])
        except AdapterConfigError as error:
            raise AdapterConfigError(f"module '{name}': {error}") from None
    return targets, configs


def inject_adapters(model: nn.Module, conf: Union[Mapping[str, Any], InjectionSpec]) -> InjectionReport:
    """Replace the selected ``nn.Linear`` layers by adapter layers and freeze everything else.

    Every check (matching, field values, ranks against shapes) runs before the model is touched, so a bad config
    leaves the model as it was.
    """
    spec = conf if isinstance(conf, InjectionSpec) else InjectionSpec.from_conf(conf)
    if getattr(model, SPEC_ATTRIBUTE, None) is not None:
        raise AdapterConfigError("this model already has espnet_peft adapters; merge them before injecting again")
    layer_class = get_layer_class(spec.method)
    targets, configs = check_injection(model, spec)
    extras = extra_parameter_names(model, targets, spec.modules_to_save, spec.bias)

    for p in model.parameters():
        p.requires_grad_(False)
    layers = {}
    for name, module in targets.items():
        layers[name] = layer_class(module, configs[name])
        set_submodule(model, name, layers[name])
    if spec.frozen_norms == "eval":
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.register_forward_pre_hook(_stay_in_eval)
    for name in extras:
        model.get_parameter(name).requires_grad_(True)
    setattr(model, SPEC_ATTRIBUTE, spec.to_conf())
    setattr(model, EXTRAS_ATTRIBUTE, extras)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    extra_count = sum(model.get_parameter(n).numel() for n in extras)
    report = InjectionReport(spec.method, layers, trainable, sum(p.numel() for p in model.parameters()), extra_count)
    logging.info("espnet_peft: %s adapters on %d modules\n%s", spec.method, len(layers), report.table())
    return report


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``name`` of ``model`` (injection, merging, and the analysis' adapter swap)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def adapter_layers(model: nn.Module) -> Dict[str, AdapterLayer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, AdapterLayer)}


def initialise_adapters(model: nn.Module, force: bool = False) -> int:
    """Run the weight-dependent initialisation of every adapter not yet initialised; returns how many ran."""
    return sum(layer.initialise_from_weight(force=force) for layer in adapter_layers(model).values())


def merge_adapters(model: nn.Module) -> nn.Module:
    """Replace every adapter layer by a plain ``nn.Linear`` holding its merged weight (in place)."""
    for name, layer in adapter_layers(model).items():
        set_submodule(model, name, layer.to_linear())
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            for key, hook in list(module._forward_pre_hooks.items()):
                if hook is _stay_in_eval:
                    del module._forward_pre_hooks[key]
    for attribute in (SPEC_ATTRIBUTE, EXTRAS_ATTRIBUTE):
        if hasattr(model, attribute):
            delattr(model, attribute)
    return model


def parameter_table(layers: Mapping[str, AdapterLayer], trainable: int, total: int, extras: int = 0) -> str:
    """Trainable parameters per module type (last name component) and in total."""
    rows: Dict[str, List[int]] = defaultdict(lambda: [0, 0])
    for name, layer in layers.items():
        kind = name.rsplit(".", 1)[-1]
        if kind.isdigit():  # e.g. cgmlp.channel_proj1.0
            kind = ".".join(name.rsplit(".", 2)[-2:])
        rows[kind][0] += 1
        rows[kind][1] += layer.num_trainable_parameters()
    width = max([len("module type")] + [len(k) for k in rows] + ([len("modules_to_save + bias")] if extras else []))
    lines = [f"{'module type':<{width}}  {'layers':>6}  {'trainable':>12}"]
    lines += [f"{k:<{width}}  {n:>6}  {p:>12,}" for k, (n, p) in sorted(rows.items())]
    if extras:
        lines.append(f"{'modules_to_save + bias':<{width}}  {'':>6}  {extras:>12,}")
    share = 100.0 * trainable / max(total, 1)
    lines.append(f"{'total':<{width}}  {len(layers):>6}  {trainable:>12,}  of {total:,} ({share:.3f}%)")
    return "\n".join(lines)
