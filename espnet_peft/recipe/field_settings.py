"""The text form of adapter field settings, ``field=value``: how sweeps, training configs and run_info.json name them.

A value is read as a YAML scalar (``0.25`` a float, ``8`` an int, ``true`` a bool, ``cayley`` a word) and written
back in one canonical form (``format_value``), which experiment names and report labels are built from. Several
settings of one experiment are joined by commas (values never hold one: a sweep lists its values with commas);
``-`` stands for none, so that the shell always reads a word.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Tuple, Union

import yaml

Scalar = Union[bool, int, float, str]
NONE = "-"
SEPARATOR = ","
#: what a value may look like in text: it becomes part of a directory name
VALUE_PATTERN = re.compile(r"[A-Za-z0-9._+-]+")
FIELD_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: a float in exponent form without a dot (1e-5), which YAML 1.1 reads as a string
EXPONENT_PATTERN = re.compile(r"[-+]?\d+[eE][-+]?\d+")


class SettingError(ValueError):
    """A malformed ``field=value`` (the bad text is in the message)."""


def parse_value(text: str) -> Scalar:
    text = text.strip()
    if not VALUE_PATTERN.fullmatch(text):
        raise SettingError(f"value {text!r}: use letters, digits and . _ + - only (it becomes part of a dir name)")
    value = float(text) if EXPONENT_PATTERN.fullmatch(text) else yaml.safe_load(text)
    if not isinstance(value, (bool, int, float, str)):
        raise SettingError(f"value {text!r} is not a number, a boolean or a word")
    return value


def format_value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_setting(text: str) -> Tuple[str, Scalar]:
    """``"outer_share=0.25"`` -> ``("outer_share", 0.25)``."""
    field, sep, value = text.partition("=")
    field = field.strip()
    if not sep or not FIELD_PATTERN.fullmatch(field):
        raise SettingError(f"{text!r} is not field=value")
    return field, parse_value(value)


def format_settings(settings: Mapping[str, Any]) -> str:
    return SEPARATOR.join(f"{k}={format_value(v)}" for k, v in settings.items()) or NONE


def describe(method: str, settings: Mapping[str, Any]) -> str:
    """A report label: ``ssvd_o outer_share=0.25`` (the method alone without settings)."""
    return " ".join([method, *(f"{k}={format_value(v)}" for k, v in settings.items())])


def name_part(settings: Mapping[str, Any]) -> str:
    """The piece of an experiment name: ``outer_share0.25`` (fields and values concatenated, joined by ``_``)."""
    return "_".join(f"{k}{format_value(v)}" for k, v in settings.items())
