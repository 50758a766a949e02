"""Choosing which ``nn.Linear`` modules of a model get adapters (HF peft's ``target_modules`` semantics).

Its own module so that both ``injection`` (which replaces the targets) and ``budget`` (which sizes them) use it
without importing each other.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Sequence, Union

from torch import nn

from espnet_peft.tuners import AdapterConfigError, AdapterLayer

#: output heads that "all-linear" never adapts (ESPnet ASR, OWSM, OWSM-CTC names)
OUTPUT_HEADS = ("ctc.ctc_lo", "decoder.output_layer", "encoder.conditioning_layer", "lm_head", "output_layer")

TargetSpec = Union[str, Sequence[str]]


def name_matches(name: str, patterns: TargetSpec) -> bool:
    """HF peft semantics: a string is a regex matched against the whole name; a list holds names or suffixes."""
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith("." + p) for p in patterns)


def is_output_head(name: str) -> bool:
    return any(name == head or name.endswith("." + head) for head in OUTPUT_HEADS)


def find_targets(model: nn.Module, target_modules: TargetSpec, exclude_modules: Optional[TargetSpec] = None
                 ) -> Dict[str, nn.Linear]:
    """The ``nn.Linear`` modules selected by ``target_modules`` minus ``exclude_modules``; errors name what exists."""
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and not isinstance(m, AdapterLayer)}
    if target_modules == "all-linear":
        chosen = {n: m for n, m in linears.items() if not is_output_head(n)}
    else:
        chosen = {n: m for n, m in linears.items() if name_matches(n, target_modules)}
        non_linear = [n for n, m in model.named_modules() if n and n not in linears and name_matches(n, target_modules)]
        if not chosen and non_linear:
            raise AdapterConfigError(
                f"target_modules {target_modules!r} matched only non-Linear modules (e.g. {non_linear[:5]}); "
                "adapters wrap nn.Linear layers"
            )
    if exclude_modules:
        chosen = {n: m for n, m in chosen.items() if not name_matches(n, exclude_modules)}
    if not chosen:
        sample = list(linears)[:: max(1, len(linears) // 12)][:12]
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in linears})
        raise AdapterConfigError(
            f"target_modules {target_modules!r} (exclude {exclude_modules!r}) matched no nn.Linear module. "
            f"Linear module names in this model include {sample}; their last components are {suffixes}"
        )
    return chosen
