"""The training config of a fine-tuning run: the source model's own config.yaml, with run-specific keys removed,
fine-tuning overrides (optimiser, epochs, batch) and, for adapters, the method's ``adapter_conf`` at a budget.

Starting from the source model's config keeps the architecture, frontend, normalisation, preprocessor and token
settings exactly those the weights were trained with, which is how OWSM fine-tuning is done as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from espnet_peft.layers.create_adapter import ADAPTER_NAME

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


def finetune_config(base_config: Path, overrides: Path, method: str, peft_conf_dir: Optional[Path] = None,
                    budget: Optional[int] = None, outer_share: Optional[float] = None) -> Dict[str, Any]:
    """``method`` is an adapter name (its ``adapter_conf`` read from ``peft_conf_dir/<method>.yaml``) or ``full``."""
    config = yaml.safe_load(Path(base_config).read_text(encoding="utf-8"))
    for key in RUN_KEYS:
        config.pop(key, None)
    config.update(yaml.safe_load(Path(overrides).read_text(encoding="utf-8")) or {})
    if method == "full":
        return config
    peft_file = Path(peft_conf_dir) / f"{method}.yaml"
    if not peft_file.is_file():
        raise FileNotFoundError(f"no adapter settings for method '{method}': expected {peft_file}")
    adapter_conf = dict(yaml.safe_load(peft_file.read_text(encoding="utf-8"))["adapter_conf"])
    if adapter_conf.get("method") != method:
        raise ValueError(f"{peft_file} sets method {adapter_conf.get('method')!r}, expected {method!r}")
    if budget is not None:
        adapter_conf["total_budget"] = int(budget)
    if outer_share is not None:
        adapter_conf["outer_share"] = float(outer_share)
    config.update(use_adapter=True, adapter=ADAPTER_NAME, adapter_conf=adapter_conf)
    return config
