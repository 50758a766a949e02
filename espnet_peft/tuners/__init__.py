"""The single registry of adapter methods: a method name maps to its layer class (and through it, its config).

Adding a method means adding a folder with ``config.py`` and ``layer.py`` and adding its layer class to
``SHIPPED`` here (``docs/contributing.md`` lists the configs and tests that go with it). ``register_method`` adds one
from outside the package (a plugin of the plugin, or a test): injection, budgets, merging, checkpoints, packages and
the recipe's config maker then take it by name like a shipped one.
"""

from typing import Dict, Tuple, Type

from espnet_peft.tuners.base import AdapterConfig, AdapterConfigError, AdapterLayer
from espnet_peft.tuners.dora.layer import DoraLayer
from espnet_peft.tuners.lora.layer import LoraLayer
from espnet_peft.tuners.pissa.layer import PissaLayer
from espnet_peft.tuners.ssvd.layer import SsvdLayer
from espnet_peft.tuners.ssvd_o.layer import SsvdOLayer

SHIPPED: Tuple[Type[AdapterLayer], ...] = (LoraLayer, DoraLayer, PissaLayer, SsvdLayer, SsvdOLayer)
LAYER_CLASSES: Dict[str, Type[AdapterLayer]] = {layer.config_class.method: layer for layer in SHIPPED}
#: the shipped methods (what the committed configs and results cover); ``registered_methods()`` also has added ones
METHODS = tuple(LAYER_CLASSES)


def registered_methods() -> Tuple[str, ...]:
    """Every method injection accepts now: the shipped ones and those added by ``register_method``."""
    return tuple(LAYER_CLASSES)


def register_method(layer_class: Type[AdapterLayer]) -> Type[AdapterLayer]:
    """Add a method (usable as a class decorator). Its name is ``layer_class.config_class.method``; a name already
    registered is refused, so a plugin cannot silently replace a shipped method."""
    name = getattr(getattr(layer_class, "config_class", None), "method", "")
    if not name or not issubclass(layer_class, AdapterLayer):
        raise AdapterConfigError(f"{layer_class!r} is not an AdapterLayer whose config_class names a method")
    if name in LAYER_CLASSES:
        raise AdapterConfigError(f"adapter method {name!r} is already registered ({LAYER_CLASSES[name].__name__})")
    LAYER_CLASSES[name] = layer_class
    return layer_class


def unregister_method(name: str) -> None:
    """Remove a method added by ``register_method`` (shipped methods stay)."""
    if name in METHODS:
        raise AdapterConfigError(f"{name!r} is a shipped method and cannot be unregistered")
    LAYER_CLASSES.pop(name, None)


def get_layer_class(method: str) -> Type[AdapterLayer]:
    if method not in LAYER_CLASSES:
        raise AdapterConfigError(f"unknown adapter method {method!r}; choose one of {list(registered_methods())}")
    return LAYER_CLASSES[method]


def make_config(method: str, **fields) -> AdapterConfig:
    return get_layer_class(method).config_class.from_dict(fields)


__all__ = ["AdapterConfig", "AdapterConfigError", "AdapterLayer", "LAYER_CLASSES", "METHODS", "SHIPPED",
           "get_layer_class", "make_config", "register_method", "registered_methods", "unregister_method"]
