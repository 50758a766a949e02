"""The model families, by ``ModelSource.kind`` (filled by the modules of this package as they are imported)."""

from __future__ import annotations

from typing import Dict, Type

from espnet_peft.analysis.families.base import ModelFamily
from espnet_peft.analysis.resolve import ModelSource

FAMILIES: Dict[str, ModelFamily] = {}


def register(cls: Type[ModelFamily]) -> Type[ModelFamily]:
    """Class decorator: load and analyse the models whose source has kind ``cls.kind`` with a ``cls``."""
    if cls.kind in FAMILIES:
        raise ValueError(f"two model families have kind {cls.kind!r}: {type(FAMILIES[cls.kind]).__name__} and "
                         f"{cls.__name__}")
    FAMILIES[cls.kind] = cls()
    return cls


def family_of(source: ModelSource) -> ModelFamily:
    """The family that loads and analyses the model of ``source``."""
    family = FAMILIES.get(source.kind)
    if family is None:
        raise ValueError(f"no model family has kind {source.kind!r}; known: {', '.join(FAMILIES)}")
    return family
