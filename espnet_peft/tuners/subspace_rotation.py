"""The layer shared by SSVD and SSVD-O: rotations and singular-value shifts inside the principal subspaces of W.

``W = U S V^T`` (thin SVD, fp32). With the top-``k`` block (``k = max(k_inner, k_outer)``)::

    W' = W + U_k (R_o diag(s_k + delta) R_i - diag(s_k)) V_k^T

``R_i = rot(G_i)`` acts on the top ``k_inner`` right (input-side) singular directions and ``R_o = rot(G_o)`` on the
top ``k_outer`` left (output-side) ones, identity elsewhere in the block. ``rot`` is the exact Cayley map or its
first-order form. At initialisation ``G_i = G_o = 0`` and ``delta = 0``, so the core is exactly zero and ``W' = W``.

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
from typing import Iterator, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from espnet_peft.tuners import compute_path
from espnet_peft.tuners.base import AdapterConfig, AdapterConfigError, AdapterLayer
from espnet_peft.tuners.svd import ROTATION_MAPS, skew_symmetric, top_singular_triplets


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
        rotation_map: ``cayley`` (default; exact, orthogonal) or ``linear`` (``I + 2G``, upstream ESPnet's default).
        compute_path: ``auto`` (default; time both and keep the faster per layer shape and batch size),
            ``lowrank`` (rank-k correction ``W x + U (M (V^T x))``) or ``rebuild`` (form ``W'`` once per step).
    """

    rotation_map: str = "cayley"
    compute_path: str = "auto"

    def validate(self) -> None:
        if self.rotation_map not in ROTATION_MAPS:
            raise AdapterConfigError(f"rotation_map must be one of {sorted(ROTATION_MAPS)}, got {self.rotation_map!r}")
        if self.compute_path not in compute_path.COMPUTE_PATHS:
            raise AdapterConfigError(
                f"compute_path must be one of {list(compute_path.COMPUTE_PATHS)}, got {self.compute_path!r}"
            )

    def resolve_ranks(self, d_out: int, d_in: int) -> Tuple[int, int]:
        """``(k_inner, k_outer)`` for a ``d_out x d_in`` layer."""
        raise NotImplementedError


class SubspaceRotationLayer(AdapterLayer):
    config: SubspaceRotationConfig

    def __init__(self, base: nn.Linear, config: SubspaceRotationConfig) -> None:
        super().__init__(base, config)
        self.check_shape(self.out_features, self.in_features, config)
        self.k_inner, self.k_outer = config.resolve_ranks(self.out_features, self.in_features)
        self.k = max(self.k_inner, self.k_outer)
        self._new_buffer("svd_u", self.out_features, self.k)
        self._new_buffer("svd_s", self.k)
        self._new_buffer("svd_vh", self.k, self.in_features)
        self.inner_generator = self._generator(self.k_inner)
        self.outer_generator = self._generator(self.k_outer)
        self.sigma_delta = self._new_parameter(self.k)
        self.rotate = ROTATION_MAPS[config.rotation_map]

    def _generator(self, k: int) -> Optional[nn.Parameter]:
        return self._new_parameter(rotation_parameters(k)) if k >= 2 else None

    @classmethod
    def check_shape(cls, d_out: int, d_in: int, config: SubspaceRotationConfig) -> None:
        k_inner, k_outer = config.resolve_ranks(d_out, d_in)
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
        return subspace_parameters(*config.resolve_ranks(d_out, d_in))

    def _initialise(self, weight_fp32: torch.Tensor) -> None:
        u, s, v = top_singular_triplets(weight_fp32, self.k)
        self.svd_u.copy_(u)
        self.svd_s.copy_(s)
        self.svd_vh.copy_(v.T)

    def _block_rotation(self, generator: Optional[nn.Parameter], size: int) -> torch.Tensor:
        """``rot(G)`` on the top ``size`` directions, identity on the rest of the k block (fp32)."""
        if generator is None:
            return torch.eye(self.k, device=self.svd_s.device)
        rotation = self.rotate(skew_symmetric(generator.float(), size))
        if size == self.k:
            return rotation
        return torch.block_diag(rotation, torch.eye(self.k - size, device=rotation.device))

    def core(self) -> torch.Tensor:
        """``M = R_o diag(s + delta) R_i - diag(s)`` (``k x k``), computed in fp32, returned in the weight dtype."""
        sigma = self.svd_s.float()
        scaled = (sigma + self.sigma_delta.float()).unsqueeze(1) * self._block_rotation(self.inner_generator, self.k_inner)
        rotated = self._block_rotation(self.outer_generator, self.k_outer) @ scaled
        return (rotated - torch.diag(sigma)).to(self.weight.dtype)

    def delta_weight(self) -> torch.Tensor:
        return self.svd_u @ self.core() @ self.svd_vh

    def _lowrank_forward(self, x: torch.Tensor, core: torch.Tensor) -> torch.Tensor:
        update = F.linear(self.bottleneck(F.linear(F.linear(x, self.svd_vh), core)), self.svd_u)
        return F.linear(x, self.weight, self.bias) + update

    def _rebuild_forward(self, x: torch.Tensor, core: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight + self.svd_u @ core @ self.svd_vh, self.bias)

    def _choose_path(self, x: torch.Tensor) -> str:
        if self.config.compute_path != "auto":
            return self.config.compute_path
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.adapter_parameters().values())
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
        # `rebuild` folds the update into the weight, and `auto` would time both paths on the probed input.
        original = self.config
        self.config = original.replace(compute_path="lowrank")
        try:
            yield
        finally:
            self.config = original

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k_inner={self.k_inner}, k_outer={self.k_outer}"

