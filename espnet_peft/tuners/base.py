"""The interface every adapter layer shares, so that generic code never switches on the method name.

An adapter layer *replaces* an ``nn.Linear`` but keeps the very same ``weight`` / ``bias`` Parameter objects under the
same state-dict keys. That is what lets ESPnet's ``init_param`` loading (``dst.update(src)`` + strict load) fill the
pretrained weights unchanged, and lets the optimizer built before that load keep pointing at the right tensors.
"""

from __future__ import annotations

import contextlib
import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Dict, Iterator, Mapping, Optional, Tuple, Type

import torch
from torch import nn
from torch.nn import functional as F


class AdapterConfigError(ValueError):
    """A configuration that cannot be applied (bad field, rank too large, budget too small, ...)."""


@dataclasses.dataclass
class AdapterConfig:
    """Fields shared by every method. Method configs subclass this dataclass.

    Attributes:
        method: Name of the adapter method in the registry (``lora``, ``dora``, ``pissa``, ``ssvd``, ``ssvd_o``).
    """

    method: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, conf: Mapping[str, Any]) -> "AdapterConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(conf) - names)
        if unknown:
            raise AdapterConfigError(
                f"unknown field(s) {unknown} for method '{cls.method}'; valid fields are {sorted(names)}"
            )
        config = cls(**dict(conf))
        config.validate()
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "AdapterConfig":
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise AdapterConfigError(
                f"unknown field(s) {unknown} for method '{self.method}'; valid fields are {sorted(names)}"
            )
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config

    def validate(self) -> None:
        """Check field values that do not depend on the layer shape."""

    @classmethod
    def fields_for_budget(cls, d_out: int, d_in: int, budget: int, fields: Mapping[str, Any]) -> Dict[str, Any]:
        """Settings that spend as much of ``budget`` trainable parameters as possible on a ``d_out x d_in`` layer.

        ``fields`` are the user's other fields (e.g. SSVD-O's ``outer_share``); unset fields are returned as None.
        """
        raise NotImplementedError


class AdapterLayer(nn.Module, ABC):
    """Base of every adapter layer: a frozen ``weight``/``bias`` plus trainable adapter tensors.

    Life cycle:
      1. ``__init__`` allocates all tensors (shapes known from the config) on the weight's device and dtype;
      2. the pretrained weights are loaded into ``weight``/``bias`` (ESPnet's ``init_param``);
      3. ``initialise_from_weight()`` fills the weight-dependent tensors *in place* and sets ``adapter_initialised``;
      4. training updates only the adapter parameters;
      5. ``merged_weight()`` / ``to_linear()`` give a plain layer that runs at base speed.

    ``bottleneck`` is a probe point for analysis (``espnet_peft.analysis.energy``): each method's forward
    passes its low-dimensional intermediate (``[..., r]``) through it. It is an ``nn.Identity``, so it adds no
    parameters, state-dict keys or work; forward hooks on it read the intermediate and its gradient.
    """

    config_class: ClassVar[Type[AdapterConfig]]

    def __init__(self, base: nn.Linear, config: AdapterConfig) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise AdapterConfigError(f"{type(self).__name__} wraps nn.Linear, got {type(base).__name__}")
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.config = config
        # The same Parameter objects: keys, device and optimizer references stay those of the base layer.
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        # A bool buffer survives `.to(dtype)` and ESPnet's checkpoint averaging (True + True stays True).
        self.register_buffer("adapter_initialised", torch.zeros((), dtype=torch.bool, device=base.weight.device))
        self.bottleneck = nn.Identity()

    # ----- construction helpers -------------------------------------------------------------------------------
    def _new_parameter(self, *shape: int) -> nn.Parameter:
        return nn.Parameter(torch.zeros(*shape, device=self.weight.device, dtype=self.weight.dtype))

    def _new_buffer(self, name: str, *shape: int) -> None:
        self.register_buffer(name, torch.zeros(*shape, device=self.weight.device, dtype=self.weight.dtype))

    @property
    def is_initialised(self) -> bool:
        return bool(self.adapter_initialised)

    # ----- the method's math ----------------------------------------------------------------------------------
    @abstractmethod
    def _initialise(self, weight_fp32: torch.Tensor) -> None:
        """Fill weight-dependent tensors in place from the pretrained weight (given in fp32)."""

    @abstractmethod
    def delta_weight(self) -> torch.Tensor:
        """``W' - W_pretrained`` in the weight's dtype, with autograd through the adapter parameters."""

    def merged_weight(self) -> torch.Tensor:
        """The plain weight ``W'`` that reproduces this layer's output (bias unchanged)."""
        return self.pretrained_weight() + self.delta_weight()

    def pretrained_weight(self) -> torch.Tensor:
        """The weight as loaded from the base model (methods that edit ``weight`` in place override this)."""
        return self.weight

    @classmethod
    @abstractmethod
    def count_parameters(cls, d_out: int, d_in: int, config: AdapterConfig) -> int:
        """Trainable parameters this method adds to a ``d_out x d_in`` layer (the formula the tests pin)."""

    @classmethod
    def check_shape(cls, d_out: int, d_in: int, config: AdapterConfig) -> None:
        """Raise AdapterConfigError when ``config`` cannot be applied to a ``d_out x d_in`` layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.merged_weight(), self.bias)

    def side_maps(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The update's two sides, for the training-dynamics probe (``espnet_peft.analysis.dynamics``): the input-side
        map ``[r, d_in]`` (LoRA's ``A``; SSVD's rotated right singular directions ``R_i V_k^T``) and the output-side map
        ``[d_out, r]`` (LoRA's ``s B``; SSVD's rotated left singular directions ``U_k R_o``), detached."""
        raise NotImplementedError(f"{type(self).__name__} does not define its input and output sides")

    @contextlib.contextmanager
    def bottleneck_probe(self) -> Iterator[None]:
        """While active, every forward is guaranteed to pass its intermediate through ``self.bottleneck``.

        Methods with a compute path that never forms the intermediate (SSVD's ``rebuild``) force one that does.
        """
        yield

    # ----- generic life-cycle ---------------------------------------------------------------------------------
    @torch.no_grad()
    def initialise_from_weight(self, force: bool = False) -> bool:
        """Run the weight-dependent initialisation once; returns True when it ran."""
        if self.is_initialised and not force:
            return False
        self._initialise(self.pretrained_weight().detach().float())
        self.adapter_initialised.fill_(True)
        return True

    def adapter_parameters(self) -> Dict[str, nn.Parameter]:
        """The trainable tensors: every direct Parameter except the frozen ``weight`` and ``bias``."""
        return {n: p for n, p in self.named_parameters(recurse=False) if n not in ("weight", "bias")}

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.adapter_parameters().values())

    def adapter_state_dict(self) -> Dict[str, torch.Tensor]:
        """Tensors an adapter-only package needs on top of the pristine base layer: parameters and buffers."""
        state = dict(self.adapter_parameters())
        state.update(dict(self.named_buffers(recurse=False)))
        return {name: tensor.detach().clone() for name, tensor in state.items()}

    @torch.no_grad()
    def load_adapter_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy an ``adapter_state_dict()`` onto this layer, whose ``weight`` must be the pristine base weight."""
        if self.is_initialised:
            raise RuntimeError(
                "load_adapter_state() needs a freshly injected layer on the pristine base weight; this layer is "
                "already initialised"
            )
        expected = set(self.adapter_state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise KeyError(f"adapter state mismatch: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        for name in expected:
            target = getattr(self, name)
            if target.shape != state[name].shape:
                raise ValueError(
                    f"adapter tensor '{name}' has shape {tuple(state[name].shape)}, this layer expects "
                    f"{tuple(target.shape)}: the package was made with another configuration or base model"
                )
            target.copy_(state[name])
        self._after_adapter_state_loaded()

    def _after_adapter_state_loaded(self) -> None:
        """Hook for methods whose frozen ``weight`` is derived from the adapter state (PiSSA's residual)."""

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` holding the merged weight (HF peft's ``merge_and_unload`` for one layer)."""
        linear = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None,
            device=self.weight.device, dtype=self.weight.dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(self.merged_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.config.to_dict().items())
        return f"in_features={self.in_features}, out_features={self.out_features}, {fields}"


def dropout_module(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


def number_in(name: str, value: Any, low: float, high: float) -> None:
    """``low <= value <= high`` for a real number (not a bool or a string that looks like one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise AdapterConfigError(f"{name} must be a number in [{low}, {high}], got {value!r}")


def positive_int(name: str, value: Optional[int]) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise AdapterConfigError(f"{name} must be a positive integer, got {value!r}")

