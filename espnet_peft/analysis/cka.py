"""Centred kernel alignment (CKA): linear, RBF and debiased; full, exact-streaming and minibatch.

Definitions (``docs/analysis-definitions.md``, sections "Linear CKA" to "CKA matrices and drift"), for representations
``X [n, p]`` and ``Y [n, q]`` of the same ``n`` inputs, ``H = I - 11^T / n``:

* linear CKA ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred data (feature space: no ``n x n`` matrix);
* kernel CKA ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``HSIC(K, L) = <HKH, HLH>_F / (n - 1)^2``;
* debiased CKA: the same ratio of the unbiased U-statistic HSIC_1 (Song et al. 2012), on ``K~`` (``K``, zero diagonal):
  ``[tr(K~L~) + 1^T K~ 1 * 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) * 1^T K~ L~ 1] / (n(n-3))``.

Inputs are torch tensors or numpy arrays; everything is computed in float64 on the input's device. Scalars come back as
Python floats, matrices as float64 tensors. A representation with zero variance gives NaN (CKA is 0/0 there): it marks
a dead layer in a matrix instead of aborting the whole sweep.

Which tool for which job:

* data that fits, one pair: ``linear_cka`` (any ``n``: memory ``O(n (p + q) + p q)``), ``kernel_cka`` on Grams;
* layer x layer matrix on data that fits: ``cka_matrix``;
* more frames than fit: ``StreamingLinearCKA`` (exact, one layer pair, memory ``O((p + q)^2)`` independent of ``n``) or
  ``MinibatchCKA`` (any kernel, many layer pairs at once, memory ``O(layers * batch^2)``; estimates the debiased CKA).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple, Union

import torch
from tqdm import tqdm

from espnet_peft.analysis._inputs import (
    ArrayLike,
    as_matrix,
    as_matrix_list,
    as_matrix_pair,
    center_columns,
    check_min_rows,
    check_same_rows,
)

#: ``cka_matrix`` methods: biased / debiased CKA with the linear or the RBF kernel
METHODS = ("linear", "debiased", "rbf", "debiased_rbf")
KERNELS = ("linear", "rbf")


# ---------------------------------------------------------------------------------------------------------------------
# Kernels


def gram_linear(x: ArrayLike) -> torch.Tensor:
    """Linear-kernel Gram matrix ``X X^T`` ``[n, n]`` (not centred: the HSIC estimators centre it)."""
    x = as_matrix(x, "X")
    return x @ x.T


def _squared_distances(x: torch.Tensor) -> torch.Tensor:
    # Centring first leaves the distances unchanged but keeps ||a||^2 + ||b||^2 - 2 a.b from cancelling on data far
    # from the origin; the clamp and the zero diagonal remove the remaining rounding (d^2 can never be negative).
    x = center_columns(x)
    norms = (x * x).sum(dim=1)
    d2 = (x @ x.T).mul_(-2.0).add_(norms[:, None]).add_(norms[None, :]).clamp_min_(0.0)  # in place: one n x n array
    d2.fill_diagonal_(0.0)
    return d2


def _median_upper(d2: torch.Tensor) -> torch.Tensor:
    """Median of the strict upper triangle (pairs ``i < j``) of a symmetric ``d2`` with a zero diagonal; the mean of
    the two middle values when their number is even, as ``numpy.median`` (and Kornblith et al.'s code) does.

    Read off the whole matrix, without gathering the triangle (at n = 8k its indices alone take 512 MB): the
    off-diagonal entries are every pair twice, and the median of a list with every value doubled is the median of the
    list. The ``n`` diagonal zeros sort first, so the middle pair of the ``2m`` off-diagonal values (``m`` pairs) sits
    at ranks ``n + m`` and ``n + m + 1`` of all ``n^2`` entries.
    """
    n = d2.shape[0]
    m = n * (n - 1) // 2
    flat = d2.reshape(-1)
    return (flat.kthvalue(n + m).values + flat.kthvalue(n + m + 1).values) / 2


def gram_rbf(x: ArrayLike, threshold: float = 1.0) -> torch.Tensor:
    """RBF-kernel Gram matrix ``exp(-d^2 / (2 tau^2 median(d^2)))``, ``tau = threshold``, ``[n, n]``.

    The bandwidth follows the median heuristic of Kornblith et al. (2019): the median squared distance over the pairs
    ``i < j``, so ``threshold`` is a fraction of the median distance.
    """
    x = as_matrix(x, "X")
    check_min_rows(x, 2, "X", "the RBF median heuristic (a pair of rows)")
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    d2 = _squared_distances(x)
    median = _median_upper(d2)
    if median <= 0:
        raise ValueError(
            f"X (shape {tuple(x.shape)}): the median squared distance between rows is 0 (at least half of the pairs "
            "of rows coincide), so the RBF bandwidth is undefined"
        )
    return torch.exp(d2 / (-2.0 * threshold**2 * median))


def _gram(x: torch.Tensor, kernel: str, threshold: float) -> torch.Tensor:
    if kernel == "linear":
        # HSIC is translation invariant; centring first only keeps the Gram entries small (better rounding)
        return gram_linear(center_columns(x))
    if kernel == "rbf":
        return gram_rbf(x, threshold)
    raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")


# ---------------------------------------------------------------------------------------------------------------------
# HSIC on stacks of Gram matrices: one code path for a single pair and for a layer x layer matrix


@dataclasses.dataclass
class _HsicTerms:
    """What the HSIC estimators need from a stack of ``m`` Gram matrices ``[m, n, n]``, computed once per stack.

    Biased: ``flat`` holds the centred Grams ``HKH``. Debiased: ``flat`` holds ``K~`` (zero diagonal), with its total
    ``sums`` ``1^T K~ 1`` and its row sums ``rows`` ``K~ 1``: every term of HSIC_1 is then an inner product.
    """

    flat: torch.Tensor
    sums: Optional[torch.Tensor]
    rows: Optional[torch.Tensor]
    n: int
    debiased: bool


def _center_gram(k: torch.Tensor) -> torch.Tensor:
    """``H K H`` for a stack ``[..., n, n]`` (row and column means removed; no ``n x n`` matrix ``H`` is built, and
    one copy of ``K`` is the only ``n x n`` allocation)."""
    out = k - k.mean(dim=-1, keepdim=True)
    return out.sub_(k.mean(dim=-2, keepdim=True)).add_(k.mean(dim=(-2, -1), keepdim=True))


def _hsic_terms(grams: torch.Tensor, debiased: bool) -> _HsicTerms:
    m, n, _ = grams.shape
    if debiased:
        if n < 4:
            raise ValueError(f"the debiased HSIC_1 divides by n(n-3) and needs n >= 4 inputs, got n = {n}")
        tilde = grams.clone()
        tilde.diagonal(dim1=-2, dim2=-1).zero_()
        rows = tilde.sum(dim=-1)
        return _HsicTerms(tilde.reshape(m, n * n), rows.sum(dim=-1), rows, n, True)
    return _HsicTerms(_center_gram(grams).reshape(m, n * n), None, None, n, False)


def _hsic_cross(a: _HsicTerms, b: _HsicTerms) -> torch.Tensor:
    """HSIC between every Gram of ``a`` and every Gram of ``b``: ``[m_a, m_b]``.

    ``tr(K L) = <K, L>_F`` because Grams are symmetric, so the trace term of a whole layer x layer matrix is one
    matrix product.
    """
    n = a.n
    inner = a.flat @ b.flat.T
    if not a.debiased:
        return inner / (n - 1) ** 2
    return (inner + torch.outer(a.sums, b.sums) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (a.rows @ b.rows.T)) / (
        n * (n - 3)
    )


def _hsic_self(a: _HsicTerms) -> torch.Tensor:
    """The diagonal of ``_hsic_cross(a, a)`` without the off-diagonal work: ``[m_a]``."""
    n = a.n
    inner = (a.flat * a.flat).sum(dim=-1)
    if not a.debiased:
        return inner / (n - 1) ** 2
    return (inner + a.sums**2 / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (a.rows * a.rows).sum(dim=-1)) / (n * (n - 3))


def _normalise(cross: torch.Tensor, self_a: torch.Tensor, self_b: torch.Tensor) -> torch.Tensor:
    """``cross / sqrt(self_a self_b)``; NaN where a self-similarity is not positive (a constant representation)."""
    denom = torch.outer(self_a.reshape(-1), self_b.reshape(-1))
    nan = torch.full_like(cross, float("nan"))
    return torch.where(denom > 0, cross / denom.clamp_min(torch.finfo(denom.dtype).tiny).sqrt(), nan)


def _square_gram_pair(k: ArrayLike, l: ArrayLike) -> Tuple[torch.Tensor, torch.Tensor]:
    k, l = as_matrix_pair(k, l, ("K", "L"))
    if k.shape[0] != k.shape[1] or k.shape != l.shape:
        raise ValueError(f"K has shape {tuple(k.shape)} and L has shape {tuple(l.shape)}: both must be the same n x n")
    return k, l


def hsic_biased(k: ArrayLike, l: ArrayLike) -> float:
    """Biased HSIC ``<HKH, HLH>_F / (n - 1)^2`` of two ``n x n`` Gram matrices."""
    k, l = _square_gram_pair(k, l)
    return float(_hsic_cross(_hsic_terms(k[None], False), _hsic_terms(l[None], False))[0, 0])


def hsic_unbiased(k: ArrayLike, l: ArrayLike) -> float:
    """Unbiased HSIC_1 (Song et al. 2012) of two ``n x n`` Gram matrices, exactly the formula of the module docstring.

    Needs ``n >= 4``. It estimates the population HSIC without the ``O(1/n)`` bias of ``hsic_biased``, and can be
    slightly negative for independent representations.
    """
    k, l = _square_gram_pair(k, l)
    return float(_hsic_cross(_hsic_terms(k[None], True), _hsic_terms(l[None], True))[0, 0])


def kernel_cka(k: ArrayLike, l: ArrayLike, debiased: bool = False) -> float:
    """CKA from two ``n x n`` Gram matrices: ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` (biased or HSIC_1)."""
    k, l = _square_gram_pair(k, l)
    tk, tl = _hsic_terms(k[None], debiased), _hsic_terms(l[None], debiased)
    return float(_normalise(_hsic_cross(tk, tl), _hsic_self(tk), _hsic_self(tl))[0, 0])


# ---------------------------------------------------------------------------------------------------------------------
# Linear CKA in feature space (no n x n matrix), full and streaming


@dataclasses.dataclass
class _LinearMoments:
    """Sufficient statistics of linear CKA for a pair of column-centred ``X``, ``Y`` with ``k_i = ||x_i||^2``,
    ``l_i = ||y_i||^2``: ``n``, ``||X^T Y||^2``, ``||X^T X||^2``, ``||Y^T Y||^2``, ``sum k``, ``sum l``, ``k.l``,
    ``k.k``, ``l.l``. The last five are only needed by the debiased estimator."""

    n: int
    xy: float
    xx: float
    yy: float
    tr_x: float
    tr_y: float
    kl: float
    kk: float
    ll: float


def _debiased_dot(dot: float, kl: float, tr_a: float, tr_b: float, n: int) -> float:
    """``n (n - 3) HSIC_1`` of two centred linear Grams from feature-space statistics.

    With ``X`` centred, ``K 1 = 0``, so ``1^T K~ 1 = -tr K``, ``K~ 1 = -k`` and ``tr(K~ L~) = ||X^T Y||^2 - k.l``;
    substituting in HSIC_1 gives ``||X^T Y||^2 - n/(n-2) k.l + tr K tr L / ((n-1)(n-2))`` (Kornblith et al.'s
    feature-space debiased CKA).
    """
    return dot - n / (n - 2) * kl + tr_a * tr_b / ((n - 1) * (n - 2))


def _cka_from_moments(m: _LinearMoments, debiased: bool) -> float:
    if debiased:
        if m.n < 4:
            raise ValueError(f"debiased CKA needs n >= 4 inputs, got n = {m.n}")
        xy = _debiased_dot(m.xy, m.kl, m.tr_x, m.tr_y, m.n)
        xx = _debiased_dot(m.xx, m.kk, m.tr_x, m.tr_x, m.n)
        yy = _debiased_dot(m.yy, m.ll, m.tr_y, m.tr_y, m.n)
    else:
        xy, xx, yy = m.xy, m.xx, m.yy
    as_tensor = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    return float(_normalise(as_tensor(xy)[None], as_tensor(xx), as_tensor(yy))[0, 0])


@dataclasses.dataclass
class _CentredLayer:
    """One centred representation and its self-statistics, computed once when a layer enters many pairs.

    With fewer inputs than features, ``||X^T Y||^2 = <X X^T, Y Y^T>_F`` is cheaper through the ``n x n`` Gram (then
    smaller than ``X`` itself), so that Gram is kept; otherwise ``gram`` is None and pairs go through ``X^T Y``.
    """

    x: torch.Tensor
    gram: Optional[torch.Tensor]
    gram_sq: float  # ||X^T X||_F^2
    row_sq: torch.Tensor  # k_i = ||x_i||^2
    trace: float  # sum k_i = ||X||_F^2

    @classmethod
    def of(cls, x: torch.Tensor) -> "_CentredLayer":
        x = center_columns(x)
        row_sq = (x * x).sum(dim=1)
        if x.shape[0] < x.shape[1]:
            gram = x @ x.T
            return cls(x, gram, float(gram.square().sum()), row_sq, float(row_sq.sum()))
        return cls(x, None, float((x.T @ x).square().sum()), row_sq, float(row_sq.sum()))


def _cross_sq(a: _CentredLayer, b: _CentredLayer) -> float:
    """``||X^T Y||_F^2``."""
    if a.gram is not None and b.gram is not None:
        return float((a.gram * b.gram).sum())  # tr(X X^T Y Y^T)
    return float((a.x.T @ b.x).square().sum())


def _pair_moments(a: _CentredLayer, b: _CentredLayer) -> _LinearMoments:
    return _LinearMoments(
        n=a.x.shape[0],
        xy=_cross_sq(a, b),
        xx=a.gram_sq,
        yy=b.gram_sq,
        tr_x=a.trace,
        tr_y=b.trace,
        kl=float(a.row_sq @ b.row_sq),
        kk=float(a.row_sq @ a.row_sq),
        ll=float(b.row_sq @ b.row_sq),
    )


def linear_cka(x: ArrayLike, y: ArrayLike, debiased: bool = False) -> float:
    """Linear CKA of ``X [n, p]`` and ``Y [n, q]`` in feature space: ``||Y^T X||^2 / (||X^T X|| ||Y^T Y||)``.

    Columns are centred here (two-pass, exact). ``debiased=True`` gives the CKA of the HSIC_1 estimator, the same
    number as ``kernel_cka(gram_linear(X), gram_linear(Y), debiased=True)`` without the ``n x n`` Grams.
    """
    x, y = as_matrix_pair(x, y)
    check_min_rows(x, 2, "X", "CKA (a variance)")
    return _cka_from_moments(_pair_moments(_CentredLayer.of(x), _CentredLayer.of(y)), debiased)


def _centred_norm_product(
    n: int,
    ru_rv: torch.Tensor,
    ru_v: torch.Tensor,
    rv_u: torch.Tensor,
    uv: torch.Tensor,
    mu: torch.Tensor,
    nu: torch.Tensor,
    ru: torch.Tensor,
    rv: torch.Tensor,
) -> torch.Tensor:
    """``sum_i ||u_i - mu||^2 ||v_i - nu||^2`` from raw sums over rows, with ``ru_i = ||u_i||^2``, ``rv_i = ||v_i||^2``.

    Arguments: ``ru_rv = sum ru rv``, ``ru_v = sum ru_i v_i``, ``rv_u = sum rv_i u_i``, ``uv = U^T V``, the means
    ``mu``, ``nu``, ``ru = sum ru_i``, ``rv = sum rv_i``. Expanding both factors gives
    ``ru_rv - 2 nu.ru_v - 2 mu.rv_u + 4 mu^T uv nu + |nu|^2 ru + |mu|^2 rv - 3 n |mu|^2 |nu|^2``
    (the last term collects three ``n |mu|^2 |nu|^2`` terms, using ``sum u = n mu`` and ``sum v = n nu``).
    """
    mu2, nu2 = mu @ mu, nu @ nu
    return ru_rv - 2 * (nu @ ru_v) - 2 * (mu @ rv_u) + 4 * (mu @ uv @ nu) + nu2 * ru + mu2 * rv - 3 * n * mu2 * nu2


class StreamingLinearCKA:
    """Exact linear CKA (biased and debiased) over any number of frames, fed batch by batch.

    Accumulates in float64 ``X^T X``, ``Y^T Y``, ``X^T Y``, the column sums and ``n`` (``8 (p + q)^2`` bytes: about
    25 MB at 1024 + 1024 dims, whatever ``n``), plus ``O(p + q)`` fourth-moment sums for the debiased estimator, and
    centres at the end (``X^T X - n mu mu^T``). The result equals ``linear_cka`` on the concatenated batches up to
    rounding.

    Numerics: ``X^T X - n mu mu^T`` cancels catastrophically when the mean is large against the spread (Transformer
    hidden states have outlier dimensions with large means). Every batch is therefore shifted by the first batch's
    mean before accumulating; CKA is translation invariant, so this changes nothing but the rounding.

    One object is one layer pair: a full layer x layer matrix would need ``p q`` floats per pair; use
    ``MinibatchCKA`` for that.

    >>> s = StreamingLinearCKA()
    >>> for xb, yb in batches:  # doctest: +SKIP
    ...     s.update(xb, yb)
    >>> s.compute(), s.compute(debiased=True)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.n = 0
        self._state: Optional[dict] = None

    def update(self, x: ArrayLike, y: ArrayLike) -> "StreamingLinearCKA":
        """Add a batch of rows ``x [b, p]``, ``y [b, q]`` (the same ``b`` inputs)."""
        x, y = as_matrix_pair(x, y, ("x batch", "y batch"))
        check_min_rows(x, 1, "x batch", "an update")  # an empty first batch would make the shift NaN
        if self._state is None:
            self._state = self._empty_state(x, y)
        s = self._state
        if x.shape[1] != s["xx"].shape[0] or y.shape[1] != s["yy"].shape[0]:
            raise ValueError(
                f"x batch has shape {tuple(x.shape)} and y batch has shape {tuple(y.shape)}, but earlier batches had "
                f"{s['xx'].shape[0]} and {s['yy'].shape[0]} features"
            )
        x = x - s["shift_x"]
        y = y - s["shift_y"]
        rx, ry = (x * x).sum(dim=1), (y * y).sum(dim=1)
        s["xx"].addmm_(x.T, x)
        s["yy"].addmm_(y.T, y)
        s["xy"].addmm_(x.T, y)
        s["sx"] += x.sum(dim=0)
        s["sy"] += y.sum(dim=0)
        # fourth-moment sums: only the debiased estimator uses them, and they cost O(b (p + q)) per batch
        s["rx"] += rx.sum()
        s["ry"] += ry.sum()
        s["rx_rx"] += rx @ rx
        s["ry_ry"] += ry @ ry
        s["rx_ry"] += rx @ ry
        s["rx_x"] += rx @ x
        s["ry_y"] += ry @ y
        s["rx_y"] += rx @ y
        s["ry_x"] += ry @ x
        self.n += x.shape[0]
        return self

    @staticmethod
    def _empty_state(x: torch.Tensor, y: torch.Tensor) -> dict:
        p, q = x.shape[1], y.shape[1]
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=x.device)  # noqa: E731
        return {
            "shift_x": x.mean(dim=0),
            "shift_y": y.mean(dim=0),
            "xx": zeros(p, p),
            "yy": zeros(q, q),
            "xy": zeros(p, q),
            "sx": zeros(p),
            "sy": zeros(q),
            "rx": zeros(()),
            "ry": zeros(()),
            "rx_rx": zeros(()),
            "ry_ry": zeros(()),
            "rx_ry": zeros(()),
            "rx_x": zeros(p),
            "ry_y": zeros(q),
            "rx_y": zeros(q),
            "ry_x": zeros(p),
        }

    def _moments(self) -> _LinearMoments:
        """The centred sufficient statistics of everything seen so far."""
        if self._state is None:
            raise ValueError("StreamingLinearCKA: no batch seen yet")
        s, n = self._state, self.n
        mu, nu = s["sx"] / n, s["sy"] / n
        xy = s["xy"] - n * torch.outer(mu, nu)
        xx = s["xx"] - n * torch.outer(mu, mu)
        yy = s["yy"] - n * torch.outer(nu, nu)
        return _LinearMoments(
            n=n,
            xy=float(xy.square().sum()),
            xx=float(xx.square().sum()),
            yy=float(yy.square().sum()),
            tr_x=float(s["rx"] - n * (mu @ mu)),
            tr_y=float(s["ry"] - n * (nu @ nu)),
            kl=float(_centred_norm_product(n, s["rx_ry"], s["rx_y"], s["ry_x"], s["xy"], mu, nu, s["rx"], s["ry"])),
            kk=float(_centred_norm_product(n, s["rx_rx"], s["rx_x"], s["rx_x"], s["xx"], mu, mu, s["rx"], s["rx"])),
            ll=float(_centred_norm_product(n, s["ry_ry"], s["ry_y"], s["ry_y"], s["yy"], nu, nu, s["ry"], s["ry"])),
        )

    def compute(self, debiased: bool = False) -> float:
        """Linear CKA (``debiased=True``: of the HSIC_1 estimator) of all batches seen so far."""
        return _cka_from_moments(self._moments(), debiased)


# ---------------------------------------------------------------------------------------------------------------------
# Minibatch kernel CKA (Nguyen et al. 2021)

Layers = Union[ArrayLike, Sequence[ArrayLike]]


def _layer_list(features: Layers, name: str) -> List[torch.Tensor]:
    """One ``[n, d]`` matrix or a sequence of them (one per layer) as a list of float64 matrices."""
    if isinstance(features, torch.Tensor) or hasattr(features, "__array__"):
        return [as_matrix(features, name)]
    return as_matrix_list(features, name)


class MinibatchCKA:
    """Minibatch CKA (Nguyen et al. 2021): debiased kernel CKA for every pair of layers A x B in bounded memory.

    Each ``update`` computes, on that minibatch only, the Gram matrix of every layer and the HSIC_1 of every pair
    (A x B) and of every layer with itself, and adds them to running sums; ``compute`` returns
    ``sum HSIC_1(K_a, L_b) / sqrt(sum HSIC_1(K_a, K_a) sum HSIC_1(L_b, L_b))``. Memory: the Grams of one minibatch,
    ``(len(A) + len(B)) * batch^2`` floats, whatever the number of minibatches.

    It estimates the *debiased* CKA (each HSIC_1 is unbiased), so compare it with ``kernel_cka(..., debiased=True)`` /
    ``linear_cka(..., debiased=True)``, not with biased CKA. With one minibatch holding all rows it is exactly the full
    debiased CKA; with several, it is close but not identical (a ratio of sums of per-batch estimates). Two caveats:

    * HSIC_1 of a minibatch only sees the dependence *within* it: draw minibatches at random over the whole data set
      (e.g. shuffle frames across utterances), not runs of consecutive frames of one utterance, whose shared
      utterance-level offset the estimator removes;
    * with ``kernel="rbf"`` the bandwidth is the median heuristic *of each minibatch* (so the kernel varies slightly
      from batch to batch); size minibatches so that this median is stable (hundreds of rows).

    Intra-model matrices: pass only ``features_a`` to ``update``; the Grams are then computed once.

    >>> m = MinibatchCKA(kernel="linear")
    >>> for batch_a, batch_b in loader:  # doctest: +SKIP
    ...     m.update(batch_a, batch_b)  # lists of [b, d] tensors, one per layer
    >>> m.compute()  # [len(A), len(B)]  # doctest: +SKIP
    """

    def __init__(self, kernel: str = "linear", threshold: float = 1.0) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
        self.kernel = kernel
        self.threshold = threshold
        self.num_batches = 0
        self.n = 0
        self._intra: Optional[bool] = None
        self._cross: Optional[torch.Tensor] = None
        self._self_a: Optional[torch.Tensor] = None
        self._self_b: Optional[torch.Tensor] = None

    def _terms(self, layers: List[torch.Tensor]) -> _HsicTerms:
        return _hsic_terms(torch.stack([_gram(x, self.kernel, self.threshold) for x in layers]), debiased=True)

    def update(self, features_a: Layers, features_b: Optional[Layers] = None) -> "MinibatchCKA":
        """Add one minibatch: per layer a ``[b, d]`` matrix of the same ``b`` inputs (``b >= 4``)."""
        a = _layer_list(features_a, "features_a")
        b = a if features_b is None else _layer_list(features_b, "features_b")
        check_same_rows(a[0], b[0], ("features_a[0]", "features_b[0]"))
        check_min_rows(a[0], 4, "features_a[0]", "a minibatch of the debiased HSIC_1")
        intra = features_b is None
        if self._intra is None:
            self._intra = intra
        elif intra != self._intra or len(a) != self._cross.shape[0] or len(b) != self._cross.shape[1]:
            raise ValueError(
                f"this minibatch has {len(a)} x {len(b)} layers ({'intra' if intra else 'inter'}-model), earlier "
                f"ones had {self._cross.shape[0]} x {self._cross.shape[1]} ({'intra' if self._intra else 'inter'})"
            )
        terms_a = self._terms(a)
        terms_b = terms_a if intra else self._terms(b)
        cross = _hsic_cross(terms_a, terms_b)
        self_a = _hsic_self(terms_a)
        self_b = self_a if intra else _hsic_self(terms_b)
        if self._cross is None:
            self._cross, self._self_a, self._self_b = cross, self_a, self_b
        else:
            self._cross += cross
            self._self_a += self_a
            if not intra:
                self._self_b += self_b
        self.num_batches += 1
        self.n += a[0].shape[0]
        return self

    def compute(self) -> torch.Tensor:
        """The ``[len(A), len(B)]`` CKA matrix (``float(m.compute())`` for a single pair)."""
        if self._cross is None:
            raise ValueError("MinibatchCKA: no minibatch seen yet")
        return _normalise(self._cross, self._self_a, self._self_b)


# ---------------------------------------------------------------------------------------------------------------------
# Layer x layer matrices on data that fits


def _linear_matrix(
    a: List[torch.Tensor], b: List[torch.Tensor], intra: bool, debiased: bool, progress: bool
) -> torch.Tensor:
    la = [_CentredLayer.of(x) for x in tqdm(a, desc="centre layers", disable=not progress, leave=False)]
    lb = la if intra else [_CentredLayer.of(y) for y in b]
    pairs = [(i, j) for i in range(len(la)) for j in range(len(lb)) if not intra or j >= i]
    out = torch.empty(len(la), len(lb), dtype=torch.float64)
    for i, j in tqdm(pairs, desc="linear CKA pairs", disable=not progress, leave=False):
        out[i, j] = _cka_from_moments(_pair_moments(la[i], lb[j]), debiased)
        if intra:
            out[j, i] = out[i, j]
    return out


def _kernel_matrix(
    a: List[torch.Tensor], b: List[torch.Tensor], intra: bool, debiased: bool, threshold: float, progress: bool
) -> torch.Tensor:
    def terms(layers: List[torch.Tensor], desc: str) -> _HsicTerms:
        grams = [_gram(x, "rbf", threshold) for x in tqdm(layers, desc=desc, disable=not progress, leave=False)]
        return _hsic_terms(torch.stack(grams), debiased)

    ta = terms(a, "RBF Grams")
    tb = ta if intra else terms(b, "RBF Grams (B)")
    return _normalise(_hsic_cross(ta, tb), _hsic_self(ta), _hsic_self(tb))


def cka_matrix(
    features_a: Sequence[ArrayLike],
    features_b: Optional[Sequence[ArrayLike]] = None,
    method: str = "linear",
    threshold: float = 1.0,
    progress: bool = True,
) -> torch.Tensor:
    """CKA between every layer of A and every layer of B: a ``[len(A), len(B)]`` float64 matrix.

    ``features_*`` are sequences of ``[n, d_l]`` matrices (one per layer) of the same ``n`` inputs. Leave
    ``features_b`` out (or pass A again) for the intra-model matrix, which is symmetric with a unit diagonal.

    ``method``: ``"linear"`` (feature space, memory ``O(n d)`` per layer), ``"debiased"`` (linear, HSIC_1),
    ``"rbf"`` / ``"debiased_rbf"`` (RBF kernel with ``threshold``; holds every layer's ``n x n`` Gram: for large ``n``
    use ``MinibatchCKA``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    a = as_matrix_list(features_a, "features_a")
    intra = features_b is None or features_b is features_a
    b = a if intra else as_matrix_list(features_b, "features_b")
    check_same_rows(a[0], b[0], ("features_a[0]", "features_b[0]"))
    debiased = method.startswith("debiased")
    if method in ("linear", "debiased"):
        return _linear_matrix(a, b, intra, debiased, progress)
    return _kernel_matrix(a, b, intra, debiased, threshold, progress)
