"""The layer shared by SSVD and SSVD-O: rotations and singular-value shifts inside the principal subspaces of W.

``W = U S V^T`` (thin SVD, fp32). With the top-``k`` block (``k = max(k_inner, k_outer)``)::

    W' = W + U_k (R_o diag(s_k + delta') R_i - diag(s_k)) V_k^T,    delta' = delta (* sigmoid(gate) with ``gate``)

``R_i = rot(G_i)`` acts on the top ``k_inner`` right (input-side) singular directions and ``R_o = rot(G_o)`` on the
top ``k_outer`` left (output-side) ones, identity elsewhere in the block. ``rot`` is the exact Cayley map or its
first-order form. At initialisation ``G_i = G_o = 0`` and ``delta = 0``, so the core is exactly zero and ``W' = W``.

The core is computed from the rotations' offsets ``E = R - I`` (``M = diag(delta') + E_o D + D E_i + E_o D E_i`` with
``D = diag(s_k + delta')``), never as a difference of the large, nearly equal ``R_o D R_i`` and ``diag(s_k)``; and it
is computed in fp32 even under autocast. Both keep the small trained update exact in low precision.

The ``bottleneck`` probe sees ``core V_k^T x`` (``[..., k]``): the update's coordinates on the top-``k`` left
singular directions, the trained part of the layer's output (``V_k^T x`` alone is frozen, so its energy would not
show what training did). Like LoRA's ``A x`` it is zero-free only once trained: at initialisation ``core = 0``.
``rebuild`` never forms it, so ``bottleneck_probe()`` forces ``lowrank`` while it is active.

The frozen factors ``U_k, s_k, V_k^T`` are persistent buffers: recomputing the SVD on load could flip signs or
reorder near-equal singular values and silently change what the trained generators mean.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, ClassVar, Dict, Iterator, Mapping, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from espnet_peft.tuners import compute_path
from espnet_peft.tuners.base import AdapterConfig, AdapterConfigError, AdapterLayer
from espnet_peft.tuners.core_linear import core_linear, low_rank_update
from espnet_peft.tuners.svd import ROTATION_MAPS, ROTATION_OFFSETS, skew_symmetric, top_singular_triplets

ROTATED_SIDES = ("input", "smaller")


def rotation_parameters(k: int) -> int:
    """Free parameters of a ``k x k`` skew-symmetric generator."""
    return k * (k - 1) // 2


def subspace_parameters(k_inner: int, k_outer: int) -> int:
    """``P(k_i, k_o) = k_i (k_i - 1) / 2 + k_o (k_o - 1) / 2 + max(k_i, k_o)``."""
    return rotation_parameters(k_inner) + rotation_parameters(k_outer) + max(k_inner, k_outer)


def largest_inner_rank(budget: int, k_outer: int = 0, limit: Optional[int] = None) -> int:
    """Largest ``k_i`` (``<= limit``) with ``P(k_i, k_outer) <= budget``; with ``k_outer = 0`` this is SSVD's rank.

    ``P`` grows with ``k_i``, so a binary search finds it.
    """
    lo, hi = 0, limit if limit is not None else max(budget, 1)
    if subspace_parameters(0, k_outer) > budget:
        return -1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if subspace_parameters(mid, k_outer) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclasses.dataclass
class SubspaceRotationConfig(AdapterConfig):
    """Fields shared by SSVD and SSVD-O.

    Attributes:
        rotation_map: ``cayley`` (default; exact, orthogonal) or ``linear`` (``I + 2G``, the first-order map of the
            authors' ESPnet code).
        rotated_side: ``input`` (default; SSVD's rotation acts on the input-side singular vectors of every layer, as
            the paper describes) or ``smaller`` (the authors' code: the input side when ``d_out >= d_in``, the output
            side of wide layers). For SSVD-O, the side that SSVD would rotate is the one ``outer_share: 0`` rotates.
        gate: shift the singular values by ``delta * sigmoid(gate)`` with one trainable scalar ``gate`` per layer
            (the authors' code; one extra parameter) instead of by ``delta``.
        compute_path: ``auto`` (default; the path with fewer multiply-adds for the layer and batch, the same in
            every run), ``timed`` (time both, keep the faster on this machine; not reproducible bit for bit),
            ``lowrank`` (rank-k correction ``W x + U (M (V^T x))``) or ``rebuild`` (form ``W'`` once per step, with
            a backward that computes only the core's gradient).
        preset: a name in ``PRESETS`` that sets several of the fields above at once; a field given together with
            a preset must agree with it.
    """

    rotation_map: str = "cayley"
    rotated_side: str = "input"
    gate: bool = False
    compute_path: str = "auto"
    preset: Optional[str] = None

    #: ``espnet_pr6425``: the choices of SSVDLinear in ESPnet pull request #6425 (the authors' code)
    PRESETS: ClassVar[Dict[str, Dict[str, Any]]] = {
        "espnet_pr6425": {"rotation_map": "linear", "rotated_side": "smaller", "gate": True},
    }

    @classmethod
    def expand_preset(cls, conf: Mapping[str, Any]) -> Dict[str, Any]:
        """``conf`` with its preset's fields filled in; a conflicting explicit field is an error."""
        conf = dict(conf)
        preset = conf.get("preset")
        if preset is None:
            return conf
        if preset not in cls.PRESETS:
            raise AdapterConfigError(f"{cls.method}: unknown preset {preset!r}; choose one of {sorted(cls.PRESETS)}")
        for field, value in cls.PRESETS[preset].items():
            if field in conf and conf[field] != value:
                raise AdapterConfigError(
                    f"{cls.method}: preset {preset!r} sets {field}={value!r}, but {field}={conf[field]!r} is also "
                    f"given; drop one of them"
                )
            conf[field] = value
        return conf

    @classmethod
    def from_dict(cls, conf: Mapping[str, Any]) -> "SubspaceRotationConfig":
        return super().from_dict(cls.expand_preset(conf))

    def validate(self) -> None:
        if self.rotation_map not in ROTATION_MAPS:
            raise AdapterConfigError(f"rotation_map must be one of {sorted(ROTATION_MAPS)}, got {self.rotation_map!r}")
        if self.rotated_side not in ROTATED_SIDES:
            raise AdapterConfigError(f"rotated_side must be one of {list(ROTATED_SIDES)}, got {self.rotated_side!r}")
        if not isinstance(self.gate, bool):
            raise AdapterConfigError(f"gate must be true or false, got {self.gate!r}")
        if self.compute_path not in compute_path.COMPUTE_PATHS:
            raise AdapterConfigError(
                f"compute_path must be one of {list(compute_path.COMPUTE_PATHS)}, got {self.compute_path!r}"
            )
        self.expand_preset(self.to_dict())  # a replace() must not leave the preset's choices

    def resolve_ranks(self, d_out: int, d_in: int) -> Tuple[int, int]:
        """``(k, k_other)``: rotated directions on the side SSVD rotates and on the other side."""
        raise NotImplementedError

    def output_side_first(self, d_out: int, d_in: int) -> bool:
        """Whether the side SSVD rotates is the output side on a ``d_out x d_in`` layer."""
        return self.rotated_side == "smaller" and d_out < d_in

    def layer_ranks(self, d_out: int, d_in: int) -> Tuple[int, int]:
        """``(k_inner, k_outer)``: rotated right (input-side) and left (output-side) singular directions."""
        k_first, k_other = self.resolve_ranks(d_out, d_in)
        return (k_other, k_first) if self.output_side_first(d_out, d_in) else (k_first, k_other)


class SubspaceRotationLayer(AdapterLayer):
    config: SubspaceRotationConfig

    def __init__(self, base: nn.Linear, config: SubspaceRotationConfig) -> None:
        super().__init__(base, config)
        self.check_shape(self.out_features, self.in_features, config)
        self.k_inner, self.k_outer = config.layer_ranks(self.out_features, self.in_features)
        self.k = max(self.k_inner, self.k_outer)
        self._new_buffer("svd_u", self.out_features, self.k)
        self._new_buffer("svd_s", self.k)
        self._new_buffer("svd_vh", self.k, self.in_features)
        self.inner_generator = self._generator(self.k_inner)
        self.outer_generator = self._generator(self.k_outer)
        self.sigma_delta = self._new_parameter(self.k)
        self.gate = self._new_parameter(1) if config.gate else None
        self.rotation_offset = ROTATION_OFFSETS[config.rotation_map]

    def _generator(self, k: int) -> Optional[nn.Parameter]:
        return self._new_parameter(rotation_parameters(k)) if k >= 2 else None

    @classmethod
    def check_shape(cls, d_out: int, d_in: int, config: SubspaceRotationConfig) -> None:
        k_inner, k_outer = config.layer_ranks(d_out, d_in)
        limit = min(d_out, d_in)
        if max(k_inner, k_outer) > limit:
            raise AdapterConfigError(
                f"{config.method}: k_inner={k_inner}, k_outer={k_outer} exceed min(d_in, d_out) = {limit} of a "
                f"{d_out}x{d_in} layer; lower k / budget or exclude this module"
            )
        if max(k_inner, k_outer) < 1:
            raise AdapterConfigError(f"{config.method}: the configuration gives k = 0 on a {d_out}x{d_in} layer")

    @classmethod
    def count_parameters(cls, d_out: int, d_in: int, config: SubspaceRotationConfig) -> int:
        return subspace_parameters(*config.layer_ranks(d_out, d_in)) + int(config.gate)

    def _initialise(self, weight_fp32: torch.Tensor) -> None:
        if self.config.output_side_first(self.out_features, self.in_features):
            # The SVD of W^T, as the authors' code takes it here: its singular vectors may differ in sign from
            # those of W, and the generators are only meaningful in the basis they were trained in.
            v, s, u = top_singular_triplets(weight_fp32.T, self.k)
        else:
            u, s, v = top_singular_triplets(weight_fp32, self.k)
        self.svd_u.copy_(u)
        self.svd_s.copy_(s)
        self.svd_vh.copy_(v.T)

    def _block_offset(self, generator: Optional[nn.Parameter], size: int, dtype: torch.dtype
                      ) -> Optional[torch.Tensor]:
        """``rot(G) - I`` on the top ``size`` directions, zero on the rest of the k block; None if zero."""
        if generator is None:
            return None
        offset = self.rotation_offset(skew_symmetric(generator.to(dtype), size))
        return F.pad(offset, (0, self.k - size, 0, self.k - size))

    def core(self) -> torch.Tensor:
        """``M = R_o diag(s + delta') R_i - diag(s)`` (``k x k``), computed in fp32 (fp64 for an fp64 layer) also under
        autocast, returned in the weight dtype.

        With ``R = I + E`` this is ``diag(delta') + E_o D + D E_i + E_o D E_i`` (``D = diag(s + delta')``): no
        cancellation between large terms, so the update stays exact at any scale of the trained parameters.
        """
        dtype = torch.promote_types(self.svd_s.dtype, torch.float32)
        with torch.autocast(device_type=self.svd_s.device.type, enabled=False):
            delta = self.sigma_delta.to(dtype)
            if self.gate is not None:
                delta = delta * torch.sigmoid(self.gate.to(dtype))
            scale = self.svd_s.to(dtype) + delta
            core = torch.diag(delta)
            inner = self._block_offset(self.inner_generator, self.k_inner, dtype)
            outer = self._block_offset(self.outer_generator, self.k_outer, dtype)
            if inner is not None:
                scaled_inner = scale.unsqueeze(1) * inner  # D E_i
                core = core + scaled_inner
            if outer is not None:
                core = core + outer * scale.unsqueeze(0)  # E_o D
                if inner is not None:
                    core = core + outer @ scaled_inner
            return core.to(self.weight.dtype)

    def delta_weight(self) -> torch.Tensor:
        return low_rank_update(self.svd_u, self.core(), self.svd_vh)

    @torch.no_grad()
    def side_maps(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(I + E_i) V_k^T`` and ``U_k (I + E_o)``: where the inner and outer generators have turned the frozen
        singular directions (``delta`` scales between them and is not part of either side)."""
        dtype = torch.promote_types(self.svd_s.dtype, torch.float32)
        eye = torch.eye(self.k, dtype=dtype, device=self.svd_s.device)
        inner = self._block_offset(self.inner_generator, self.k_inner, dtype)
        outer = self._block_offset(self.outer_generator, self.k_outer, dtype)
        rotate_in = eye if inner is None else eye + inner
        rotate_out = eye if outer is None else eye + outer
        return rotate_in @ self.svd_vh.to(dtype), self.svd_u.to(dtype) @ rotate_out

    def _lowrank_forward(self, x: torch.Tensor, core: torch.Tensor) -> torch.Tensor:
        update = F.linear(self.bottleneck(F.linear(F.linear(x, self.svd_vh), core)), self.svd_u)
        return F.linear(x, self.weight, self.bias) + update

    def _rebuild_forward(self, x: torch.Tensor, core: torch.Tensor) -> torch.Tensor:
        return core_linear(x, self.weight, self.bias, self.svd_u, core, self.svd_vh)

    def _choose_path(self, x: torch.Tensor) -> str:
        if self.config.compute_path in ("lowrank", "rebuild"):
            return self.config.compute_path
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.adapter_parameters().values())
        if self.config.compute_path == "auto":
            return compute_path.counted_choice(self.out_features, self.in_features, self.k,
                                               x.numel() // x.shape[-1], grad)
        key = (
            self.out_features, self.in_features, compute_path.rank_bucket(self.k),
            compute_path.token_bucket(x.numel() // x.shape[-1]),
            grad, x.device.type, x.dtype,
        )

        def measure() -> str:
            probe = x.detach()
            params = [p for p in self.adapter_parameters().values() if p.requires_grad] if grad else []
            return compute_path.measure_fastest(
                {
                    "lowrank": lambda: self._lowrank_forward(probe, self.core()),
                    "rebuild": lambda: self._rebuild_forward(probe, self.core()),
                },
                params,
                x.device,
            )

        return compute_path.cached_choice(key, measure)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        core = self.core()
        if self._choose_path(x) == "lowrank":
            return self._lowrank_forward(x, core)
        return self._rebuild_forward(x, core)

    @contextlib.contextmanager
    def bottleneck_probe(self) -> Iterator[None]:
        # `rebuild` folds the update into the weight, and `timed` would time both paths on the probed input.
        original = self.config
        self.config = original.replace(compute_path="lowrank")
        try:
            yield
        finally:
            self.config = original

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k_inner={self.k_inner}, k_outer={self.k_outer}"

