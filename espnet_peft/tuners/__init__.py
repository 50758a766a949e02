"""The single registry of adapter methods: a method name maps to its layer class (and through it, its config).

Adding a method means adding a folder with ``config.py`` and ``layer.py`` and one line here.
"""

from typing import Dict, Type

from espnet_peft.tuners.base import AdapterConfig, AdapterConfigError, AdapterLayer
from espnet_peft.tuners.dora.layer import DoraLayer
from espnet_peft.tuners.lora.layer import LoraLayer
from espnet_peft.tuners.pissa.layer import PissaLayer
from espnet_peft.tuners.ssvd.layer import SsvdLayer
from espnet_peft.tuners.ssvd_o.layer import SsvdOLayer

LAYER_CLASSES: Dict[str, Type[AdapterLayer]] = {
    layer.config_class.method: layer for layer in (LoraLayer, DoraLayer, PissaLayer, SsvdLayer, SsvdOLayer)
}
METHODS = tuple(LAYER_CLASSES)


def get_layer_class(method: str) -> Type[AdapterLayer]:
    if method not in LAYER_CLASSES:
        raise AdapterConfigError(f"unknown adapter method {method!r}; choose one of {list(METHODS)}")
    return LAYER_CLASSES[method]


def make_config(method: str, **fields) -> AdapterConfig:
    return get_layer_class(method).config_class.from_dict(fields)


__all__ = ["AdapterConfig", "AdapterConfigError", "AdapterLayer", "LAYER_CLASSES", "METHODS", "get_layer_class",
           "make_config"]
