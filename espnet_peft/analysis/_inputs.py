"""Input handling shared by the analysis modules: torch or numpy in, float64 torch out, clear shape errors."""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple, Union

import numpy as np
import torch

#: what the analysis functions accept: converted to float64 torch tensors on the way in
ArrayLike = Union[torch.Tensor, np.ndarray]


def as_float64(x: Any) -> torch.Tensor:
    """``x`` (torch tensor, numpy array or nested sequence) as a detached float64 tensor on its own device.

    float64 because similarity indices are ratios of sums of squares: in float32 the sums over many frames lose the
    digits that the tests (and small CKA differences between adapters) depend on.
    """
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def as_matrix(x: Any, name: str) -> torch.Tensor:
    """``x`` as a float64 ``[n, features]`` matrix; anything else is an error that names the shape."""
    t = as_float64(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, features], got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def as_matrix_pair(x: Any, y: Any, names: Tuple[str, str] = ("X", "Y")) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two float64 matrices with the same number of rows (the same ``n`` inputs)."""
    tx, ty = as_matrix(x, names[0]), as_matrix(y, names[1])
    check_same_rows(tx, ty, names)
    return tx, ty


def check_same_rows(x: torch.Tensor, y: torch.Tensor, names: Tuple[str, str] = ("X", "Y")) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{names[0]} has shape {tuple(x.shape)} and {names[1]} has shape {tuple(y.shape)}: both need the same "
            "number of rows (one per input frame / utterance)"
        )


def check_min_rows(x: torch.Tensor, minimum: int, name: str, why: str) -> None:
    if x.shape[0] < minimum:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: {why} needs at least {minimum} rows")


def as_matrix_list(xs: Sequence[Any], name: str) -> List[torch.Tensor]:
    """A sequence of matrices (one per layer) with a shared number of rows."""
    if isinstance(xs, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of [n, features] matrices (one per layer), got one array")
    mats = [as_matrix(x, f"{name}[{i}]") for i, x in enumerate(xs)]
    if not mats:
        raise ValueError(f"{name} is empty")
    for i, m in enumerate(mats[1:], start=1):
        check_same_rows(mats[0], m, (f"{name}[0]", f"{name}[{i}]"))
    return mats


def center_columns(x: torch.Tensor) -> torch.Tensor:
    """Subtract each column's mean (two-pass, so no cancellation from a large mean)."""
    return x - x.mean(dim=0, keepdim=True)
