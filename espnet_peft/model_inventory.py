"""The ``nn.Linear`` inventory of a model config (names and shapes), cached beside the config, and a weightless
skeleton built from it: what config-time checks of an adapter config need (``injection.check_injection``), without
loading or even allocating the model's weights each time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from torch import nn

from espnet_peft.atomic import atomic_write_text
from espnet_peft.utils.file_hash import file_sha256

#: written beside the config: ``{"config_sha256": ..., "linears": {name: [out_features, in_features]}}``
INVENTORY = "linear_modules.json"


def linear_inventory(config: Path) -> Dict[str, List[int]]:
    """Every ``nn.Linear`` of the model ``config`` builds, as ``name -> [out_features, in_features]``.

    Built once with the config's ESPnet task (no weights loaded) and cached in ``INVENTORY`` beside the config, keyed
    by the config's sha256.
    """
    config = Path(config)
    cache, key = config.parent / INVENTORY, file_sha256(config)
    if cache.is_file():
        try:
            stored = json.loads(cache.read_text(encoding="utf-8"))
            if stored.get("config_sha256") == key:
                return stored["linears"]
        except (ValueError, KeyError):
            pass  # a damaged cache is rebuilt
    from espnet_peft.export import config_task, task_class

    model, _ = task_class(config_task(config)).build_model_from_file(config, None, "cpu")
    linears = {name: [m.out_features, m.in_features] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    try:
        atomic_write_text(cache, json.dumps({"config_sha256": key, "linears": linears}))
    except OSError:
        pass  # a read-only source dir: built again next time
    return linears


def skeleton(linears: Dict[str, List[int]]) -> nn.Module:
    """A module tree holding only these ``nn.Linear`` layers, on the meta device (no memory), at their dotted
    names."""
    root = nn.Module()
    for name, (out_features, in_features) in linears.items():
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, nn.Linear(in_features, out_features, device="meta"))
    return root
