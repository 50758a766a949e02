"""Registration of the plugin in ESPnet's adapter table (``espnet2.layers.create_adapter``).

ESPnet looks the adapter name up at call time, so adding an entry on import is enough. Every module that a training
or inference process (including spawned DDP children) imports to get a plugin task imports this one.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from espnet_peft.injection import inject_adapters

#: the value of ESPnet's ``--adapter`` option that selects this plugin (``adapter_conf.method`` picks the method)
ADAPTER_NAME = "espnet_peft"


def create_espnet_peft_adapter(model: nn.Module, **adapter_conf: Any) -> None:
    """ESPnet adapter-table entry: inject adapters and freeze the base (no weight-dependent init yet)."""
    inject_adapters(model, adapter_conf)


def register() -> None:
    from espnet2.layers.create_adapter import create_adapter_fn_table

    create_adapter_fn_table[ADAPTER_NAME] = create_espnet_peft_adapter


register()
