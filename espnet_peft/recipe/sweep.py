"""The experiments of a recipe run: every (domain, method, seed), plus sweep points that change one adapter field.

A sweep spec names a method, one field of its config dataclass (``espnet_peft.tuners``) and the values to try::

    ssvd_o:outer_share=0,0.25,0.5,0.75,1      # several specs are separated by spaces or ';'
    lora:alpha=8,32

Each value is one experiment that differs from the method's default config (``<peft_conf_dir>/<method>.yaml``, else
the dataclass default) in that field alone; the value equal to the default *is* the default experiment. The default
config runs with every seed, the other sweep points with the first seed only: the default rows are what methods are
compared on, a sweep point is one dot of a trend.

Names and labels: ``child_ssvd_o_s0`` / ``ssvd_o`` for a default config, ``child_ssvd_o_outer_share0.25_s0`` /
``ssvd_o outer_share=0.25`` for a sweep point. The settings of a default experiment list its swept fields' default
values, so that the report can place it in each sweep.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_peft.budget import PROBE_BUDGET, PROBE_DIM, budget_derived_fields
from espnet_peft.injection import InjectionSpec
from espnet_peft.recipe import field_settings as fmt
from espnet_peft.recipe.finetune_config import FULL, all_methods, coerce_setting, method_fields, read_adapter_conf
from espnet_peft.tuners import AdapterConfigError, get_layer_class, registered_methods

#: adapter_conf keys that are not fields of the method's config
INJECTION_KEYS = frozenset(f.name for f in dataclasses.fields(InjectionSpec)) - {"method_fields"}


class SweepError(ValueError):
    """A bad sweep spec, method list or seed list (the message quotes the bad part)."""


@dataclasses.dataclass(frozen=True)
class Sweep:
    method: str
    field: str
    values: Tuple[fmt.Scalar, ...]
    default: Optional[fmt.Scalar] = None  # the field's value in the method's default config


@dataclasses.dataclass(frozen=True)
class Experiment:
    domain: str
    method: str
    seed: int
    settings: Tuple[Tuple[str, fmt.Scalar], ...] = ()  # swept fields and their values in this run
    default: bool = True  # the method's default config (else a sweep point)

    @property
    def label(self) -> str:
        return self.method if self.default else fmt.describe(self.method, dict(self.settings))

    @property
    def name(self) -> str:
        point = "" if self.default else f"_{fmt.name_part(dict(self.settings))}"
        return f"{self.domain}_{self.method}{point}_s{self.seed}"

    def line(self) -> str:
        """``domain method seed name settings label`` (the label last: it may hold spaces)."""
        return " ".join([self.domain, self.method, str(self.seed), self.name,
                         fmt.format_settings(dict(self.settings)), self.label])


# ---------------------------------------------------------------- parsing (syntax only)


def parse_sweeps(text: str) -> List[Sweep]:
    """``"ssvd_o:outer_share=0,1; lora:alpha=8,32"`` -> sweeps with YAML-read values (not yet checked)."""
    sweeps = []
    for spec in (s for s in re.split(r"[;\s]+", text.strip()) if s):
        method, colon, rest = spec.partition(":")
        field, equals, values = rest.partition("=")
        if not colon or not equals or not method or not field:
            raise SweepError(f"sweep spec {spec!r}: expected method:field=value,value,... "
                             "(e.g. ssvd_o:outer_share=0,0.5,1)")
        texts = values.split(fmt.SEPARATOR)
        if any(not t for t in texts):
            raise SweepError(f"sweep spec {spec!r}: an empty value in {values!r}")
        try:
            parsed = tuple(fmt.parse_value(t) for t in texts)
        except fmt.SettingError as error:
            raise SweepError(f"sweep spec {spec!r}: {error}") from None
        sweeps.append(Sweep(method, field, parsed))
    return sweeps


# ---------------------------------------------------------------- checking against the tuner registry


def check_sweep(sweep: Sweep, peft_conf_dir: Path, budget: Optional[int] = None) -> Sweep:
    """The sweep with values of the field's type and its default; raises SweepError naming what is wrong.

    Checks that the method is a registered adapter, that the field is one of its config's fields and not one that
    ``budget`` (the recipe's total budget) sets per layer, and that every value passes the config's validation.
    """
    where = f"sweep {sweep.method}:{sweep.field}"
    if sweep.method == FULL:
        raise SweepError(f"{where}: full fine-tuning has no adapter fields to sweep")
    if sweep.method not in registered_methods():
        raise SweepError(f"{where}: unknown method {sweep.method!r}; adapters are {list(registered_methods())}")
    fields = method_fields(sweep.method)
    if sweep.field not in fields:
        raise SweepError(f"{where}: {sweep.method} has no field {sweep.field!r}; its fields are {sorted(fields)}")
    base = {k: v for k, v in read_adapter_conf(peft_conf_dir, sweep.method).items()
            if k not in INJECTION_KEYS and k != "method"}
    if budget is not None and sweep.field in budget_derived_fields(sweep.method, base):
        raise SweepError(f"{where}: the total budget (--budget {budget}) sets {sweep.field} on every layer, so "
                         "sweeping it changes nothing; sweep another field, or run with other budgets")
    config_class = get_layer_class(sweep.method).config_class
    values = []
    for value in sweep.values:
        try:
            value = coerce_setting(sweep.method, sweep.field, value)
            trial = {**base, sweep.field: value}
            if budget is not None:
                trial.update(config_class.fields_for_budget(PROBE_DIM, PROBE_DIM, PROBE_BUDGET, trial))
            config_class.from_dict(trial)
        except (AdapterConfigError, TypeError, ValueError) as error:
            raise SweepError(f"{where}: value {fmt.format_value(value)!r}: {error}") from None
        if value in values:
            raise SweepError(f"{where}: value {fmt.format_value(value)!r} is given twice")
        values.append(value)
    field = fields[sweep.field]
    if sweep.field in base:
        default = base[sweep.field]
    elif field.default is not dataclasses.MISSING:
        default = field.default
    else:
        default = field.default_factory()  # type: ignore[misc]
    return dataclasses.replace(sweep, values=tuple(values), default=default)


# ---------------------------------------------------------------- the plan


def parse_methods(text: str) -> List[str]:
    """Method names separated by spaces; empty means every registered adapter, then full fine-tuning."""
    methods = text.split() or list(all_methods())
    unknown = [m for m in methods if m not in all_methods()]
    if unknown:
        raise SweepError(f"unknown method(s) {unknown}; choose from {list(all_methods())}")
    if len(set(methods)) != len(methods):
        raise SweepError(f"a method is listed twice in {methods}")
    return methods


def parse_seeds(text: str) -> List[int]:
    words = text.split()
    if not words or not all(w.isdigit() for w in words):
        raise SweepError(f"seeds {text!r}: expected non-negative integers separated by spaces, e.g. \"0 1 2\"")
    seeds = [int(w) for w in words]
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds {text!r}: a seed is listed twice")
    return seeds


def plan(domains: Sequence[str], methods: Sequence[str], seeds: Sequence[int], sweeps: Sequence[Sweep]
         ) -> List[Experiment]:
    """Per domain and method: the default config with every seed, then each sweep point with the first seed.

    ``sweeps`` must be checked (``check_sweep``); those of methods not in ``methods`` are left out.
    """
    if not domains:
        raise SweepError("no target domains")
    by_method: Dict[str, List[Sweep]] = {}
    for sweep in sweeps:
        if any(s.field == sweep.field for s in by_method.get(sweep.method, [])):
            raise SweepError(f"{sweep.method}:{sweep.field} is swept twice; give all its values in one spec")
        by_method.setdefault(sweep.method, []).append(sweep)
    experiments = []
    for domain in domains:
        for method in methods:
            own = by_method.get(method, [])
            defaults = tuple((s.field, s.default) for s in own)
            experiments += [Experiment(domain, method, seed, defaults) for seed in seeds]
            experiments += [Experiment(domain, method, seeds[0], ((s.field, v),), default=False)
                            for s in own for v in s.values if v != s.default]
    return experiments
