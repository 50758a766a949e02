"""The training config of a fine-tuning run: the source model's own config.yaml, with run-specific keys removed,
fine-tuning overrides (optimiser, epochs, batch), the seed and, for adapters, the method's ``adapter_conf`` at a
budget with the fields a sweep changes.

Starting from the source model's config keeps the architecture, frontend, normalisation, preprocessor and token
settings exactly those the weights were trained with, which is how OWSM fine-tuning is done as well.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, Mapping, Optional


from espnet_peft.budget import budget_derived_fields
from espnet_peft.injection import InjectionSpec
from espnet_peft.layers.create_adapter import ADAPTER_NAME
from espnet_peft.tuners import get_layer_class, registered_methods
from espnet_peft.utils.structured_files import read_yaml

#: the method name of full fine-tuning, the reference every adapter is compared with
FULL = "full"


def all_methods() -> tuple[str, ...]:
    """Every method a recipe can run: the registered adapters, then full fine-tuning."""
    return (*registered_methods(), FULL)

#: keys of an ESPnet config.yaml that describe one run, not the model
RUN_KEYS = (
    "config", "output_dir", "init_param", "resume", "ngpu", "seed", "print_config", "log_level", "dry_run",
    "iterator_type", "train_data_path_and_name_and_type", "valid_data_path_and_name_and_type", "train_shape_file",
    "valid_shape_file", "token_list", "bpemodel", "collect_stats", "write_collected_feats", "multiprocessing_distributed",
    "dist_backend", "dist_init_method", "dist_world_size", "dist_rank", "local_rank", "dist_master_addr",
    "dist_master_port", "dist_launcher", "unused_parameters", "use_adapter", "adapter", "adapter_conf",
    "save_strategy", "ignore_init_mismatch", "freeze_param", "pretrain_path",
    # written into config.yaml by ESPnet itself, not accepted back as options
    "required", "version", "distributed",
)


def method_fields(method: str) -> Dict[str, dataclasses.Field]:
    """The fields of an adapter method's config dataclass (from the tuner registry), by name."""
    return {f.name: f for f in dataclasses.fields(get_layer_class(method).config_class)}


def coerce_setting(method: str, field: str, value: Any) -> Any:
    """``value`` as the type ``method``'s config annotates ``field`` with (an int becomes a float for a float field).

    Raises ValueError naming the field when the config has no such field or the value has another type.
    """
    fields = method_fields(method)
    if field not in fields:
        raise ValueError(f"{method} has no field {field!r}; its fields are {sorted(fields)}")
    hint = typing.get_type_hints(get_layer_class(method).config_class)[field]
    allowed = [t for t in (typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,))
               if t is not type(None)]
    if not all(isinstance(t, type) for t in allowed):
        return value  # an annotation this check does not read: the config's own validate() judges the value
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tuple(allowed)) and (bool in allowed or not isinstance(value, bool)):
        return value
    names = " or ".join(t.__name__ for t in allowed)
    raise ValueError(f"{method}.{field} = {value!r} is not of the field's type {names}")


def read_adapter_conf(peft_conf_dir: Path, method: str) -> Dict[str, Any]:
    """The ``adapter_conf`` of ``peft_conf_dir/<method>.yaml``: the method's default settings in a recipe."""
    peft_file = Path(peft_conf_dir) / f"{method}.yaml"
    if not peft_file.is_file():
        raise FileNotFoundError(f"no adapter settings for method '{method}': expected {peft_file}")
    adapter_conf = dict((read_yaml(peft_file) or {})["adapter_conf"])
    if adapter_conf.get("method") != method:
        raise ValueError(f"{peft_file} sets method {adapter_conf.get('method')!r}, expected {method!r}")
    return adapter_conf


def finetune_config(base_config: Path, overrides: Path, method: str, peft_conf_dir: Optional[Path] = None,
                    budget: Optional[int] = None, settings: Optional[Mapping[str, Any]] = None,
                    seed: Optional[int] = None) -> Dict[str, Any]:
    """``method`` is an adapter name (its ``adapter_conf`` read from ``peft_conf_dir/<method>.yaml``) or ``full``.

    ``settings`` replace fields of the method's config in ``adapter_conf`` (a sweep point); ``seed`` is the training
    seed (ESPnet's ``seed``: initialisation, data order, dropout).
    """
    config = read_yaml(base_config)
    for key in RUN_KEYS:
        config.pop(key, None)
    config.update(read_yaml(overrides) or {})
    if seed is not None:
        config["seed"] = int(seed)
    if method == FULL:
        if settings:
            raise ValueError(f"full fine-tuning has no adapter fields to set, got {dict(settings)}")
        return config
    adapter_conf = read_adapter_conf(Path(peft_conf_dir), method)
    if budget is not None:
        # the budget sets every layer's rank / k: the method file's own size (for runs without a budget) gives way
        spec_fields = {field.name for field in dataclasses.fields(InjectionSpec)}
        method_fields = {k: v for k, v in adapter_conf.items() if k not in spec_fields}
        for field in budget_derived_fields(method, method_fields):
            adapter_conf.pop(field, None)
        adapter_conf["total_budget"] = int(budget)
    adapter_conf.update({k: coerce_setting(method, k, v) for k, v in (settings or {}).items()})
    config.update(use_adapter=True, adapter=ADAPTER_NAME, adapter_conf=adapter_conf)
    return config
