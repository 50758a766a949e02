"""``adapter_conf.dynamics_probe``: the settings of the training-dynamics probe (``espnet_peft.train.dynamics_probe``).

Kept apart from the probe so that the injection spec can validate them without importing the analysis code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from espnet_peft.tuners.base import AdapterConfigError

#: tokens per layer that one probe uses at most, spread evenly over the probe batch
DEFAULT_MAX_ROWS = 2048


@dataclasses.dataclass(frozen=True)
class DynamicsProbeConfig:
    """``every_n_steps``: optimizer steps between probes; ``max_rows``: tokens per layer that a probe uses at most."""

    every_n_steps: int
    max_rows: int = DEFAULT_MAX_ROWS

    @classmethod
    def from_conf(cls, conf: Any) -> "DynamicsProbeConfig":
        if not isinstance(conf, Mapping):
            raise AdapterConfigError(f"dynamics_probe must be a mapping such as {{every_n_steps: 50}}, got {conf!r}")
        unknown = sorted(set(conf) - {f.name for f in dataclasses.fields(cls)})
        if unknown or "every_n_steps" not in conf:
            raise AdapterConfigError(f"dynamics_probe takes every_n_steps (required) and max_rows; got {dict(conf)}")
        for name, value in conf.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AdapterConfigError(f"dynamics_probe.{name} must be a positive integer, got {value!r}")
        return cls(**conf)
