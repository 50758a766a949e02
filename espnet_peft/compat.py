"""What differs between the supported ESPnet releases, in one place.

* espnet <= 202511 keeps the legacy network code in ``espnet.nets``; espnet 202609+ moved it to
  ``espnet2.legacy.nets`` (the old package is gone). :func:`legacy_nets` imports from whichever is installed, so that
  ``isinstance`` checks see the classes ESPnet's own models are built from.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache
from types import ModuleType


@lru_cache(maxsize=None)
def legacy_nets_package() -> str:
    """``espnet2.legacy.nets`` (espnet 202609+) or ``espnet.nets`` (espnet <= 202511)."""
    return "espnet2.legacy.nets" if importlib.util.find_spec("espnet2.legacy") is not None else "espnet.nets"


def legacy_nets(module: str) -> ModuleType:
    """``<legacy nets package>.<module>``, e.g. ``legacy_nets("pytorch_backend.transformer.mask")``."""
    return importlib.import_module(f"{legacy_nets_package()}.{module}")
