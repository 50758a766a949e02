"""SSVD-O configuration (Wang, Watanabe, Van hamme, ICASSP 2026).

The layer (inner and outer rotations of one top-k block around one shared singular-value shift) and the budget rule
below are our reconstruction from the paper's text; no public code of SSVD-O exists to check them against.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple

from espnet_peft.tuners.base import AdapterConfigError, number_in, positive_int
from espnet_peft.tuners.subspace_rotation import (
    SubspaceRotationConfig,
    largest_inner_rank,
    rotation_parameters,
    subspace_parameters,
)


@functools.lru_cache(maxsize=None)
def split_budget(budget: int, outer_share: float, limit: int) -> Tuple[int, int]:
    """The exact budget rule: ``(k_inner, k_outer)`` for a per-layer ``budget`` and ``outer_share``.

    Candidates are budget-maximal on one side: for every ``k_outer`` the largest ``k_inner`` with
    ``P(k_inner, k_outer) <= budget``, and for every ``k_inner`` the largest such ``k_outer``. Among them we take the
    one whose outer rotation parameters ``k_o (k_o - 1) / 2`` are closest to ``outer_share`` times all rotation
    parameters; ties go to the larger total, then to the smaller ``k_outer``, then the smaller ``k_inner``.
    ``outer_share = 0`` gives ``(k, 0)`` with SSVD's ``k`` for the same budget; ``outer_share = 1`` its mirror ``(0, k)``.
    """
    if budget > subspace_parameters(limit, limit):
        raise AdapterConfigError(
            f"a budget of {budget} exceeds the {subspace_parameters(limit, limit)} parameters SSVD-O can place on a "
            f"layer with min(d_in, d_out) = {limit}; lower the budget or exclude this module"
        )
    candidates = set()
    for fixed in range(limit + 1):
        other = largest_inner_rank(budget, fixed, limit)  # P is symmetric, so this serves both sides
        if other < 0:
            break
        candidates.update({(other, fixed), (fixed, other)})

    def preference(pair: Tuple[int, int]) -> Tuple[float, int, int, int]:
        k_inner, k_outer = pair
        inner, outer = rotation_parameters(k_inner), rotation_parameters(k_outer)
        return abs(outer - outer_share * (inner + outer)), -subspace_parameters(k_inner, k_outer), k_outer, k_inner

    return min(candidates, key=preference)


@dataclasses.dataclass
class SsvdOConfig(SubspaceRotationConfig):
    """Inner (input-side, right singular) and outer (output-side, left singular) rotations plus singular-value shifts.

    Set either:
        budget: trainable parameters per layer, split between the two sides by ``outer_share`` with the rule in
            :func:`split_budget`; the achieved count is ``P(k_i, k_o) = k_i(k_i-1)/2 + k_o(k_o-1)/2 + max(k_i, k_o)``
            (plus one with ``gate: true``);
        outer_share: fraction (default 0.0) of the *rotation* parameters spent on the outer side. ``0`` is SSVD.
    or both of:
        k_inner, k_outer: explicit numbers of rotated right / left singular directions (``budget`` unset).

    With ``rotated_side: smaller`` (the ``espnet_pr6425`` preset) the two sides swap on wide layers
    (``d_out < d_in``), where SSVD rotates the output side: ``outer_share`` is then the share of the input side, so
    ``outer_share: 0`` stays SSVD on every layer. See :class:`SubspaceRotationConfig` for the other fields.
    """

    method: ClassVar[str] = "ssvd_o"

    budget: Optional[int] = None
    outer_share: float = 0.0
    k_inner: Optional[int] = None
    k_outer: Optional[int] = None

    def validate(self) -> None:
        super().validate()
        explicit = self.k_inner is not None or self.k_outer is not None
        if (self.budget is None) == (not explicit):
            raise AdapterConfigError("ssvd_o needs either budget (+ outer_share) or k_inner and k_outer, not both")
        if explicit and (self.k_inner is None or self.k_outer is None):
            raise AdapterConfigError("ssvd_o needs both k_inner and k_outer when one is set")
        positive_int("budget", self.budget)
        for name in ("k_inner", "k_outer"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise AdapterConfigError(f"{name} must be a non-negative integer, got {value!r}")
        number_in("outer_share", self.outer_share, 0.0, 1.0)
        if explicit and self.k_inner == 0 and self.k_outer == 0:
            raise AdapterConfigError("ssvd_o with k_inner = k_outer = 0 trains nothing: give at least one of them > 0")

    def resolve_ranks(self, d_out: int, d_in: int) -> Tuple[int, int]:
        if self.budget is None:
            k_inner, k_outer = self.k_inner, self.k_outer
            return (k_outer, k_inner) if self.output_side_first(d_out, d_in) else (k_inner, k_outer)
        return split_budget(self.budget - int(self.gate), float(self.outer_share), min(d_out, d_in))

    @classmethod
    def fields_for_budget(cls, d_out: int, d_in: int, budget: int, fields: Mapping[str, Any]) -> Dict[str, Any]:
        limit = min(d_out, d_in)
        fields = cls.expand_preset(fields)
        budget = min(budget - int(fields.get("gate", False)), subspace_parameters(limit, limit))
        k_inner, k_outer = split_budget(budget, float(fields.get("outer_share", 0.0)), limit)
        if fields.get("rotated_side") == "smaller" and d_out < d_in:
            k_inner, k_outer = k_outer, k_inner  # explicit k_inner / k_outer are literal sides
        return {"k_inner": k_inner, "k_outer": k_outer, "budget": None}
