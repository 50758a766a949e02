"""The analyses a run can do, by name (filled by the modules of this package as they are imported)."""

from __future__ import annotations

from typing import Dict, Type

from espnet_peft.analysis.methods.base import Analysis

REGISTRY: Dict[str, Type[Analysis]] = {}


def register(cls: Type[Analysis]) -> Type[Analysis]:
    """Class decorator: make ``cls`` runnable as ``analyze --analyses <cls.name>``."""
    if cls.name in REGISTRY:
        raise ValueError(f"two analyses are named {cls.name!r}: {REGISTRY[cls.name].__name__} and {cls.__name__}")
    REGISTRY[cls.name] = cls
    return cls
