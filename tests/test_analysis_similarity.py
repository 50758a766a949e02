"""Similarity family of espnet_peft.analysis: CKA (full, streaming, minibatch), SVCCA / PWCCA, neuron-level
MaxCorr / MinCorr / LinReg, and attention-map JS similarity. Definitions: docs/analysis-definitions.md."""

import math

import numpy as np
import pytest
import torch

from espnet_peft.analysis.attention import attention_similarity_matrix, head_similarity, js_divergence, layer_similarity
from espnet_peft.analysis.cca import cca, pwcca, svcca
from espnet_peft.analysis.cka import (
    MinibatchCKA,
    StreamingLinearCKA,
    cka_matrix,
    gram_linear,
    gram_rbf,
    hsic_unbiased,
    kernel_cka,
    linear_cka,
)
from espnet_peft.analysis.neurons import linreg, maxcorr, mincorr

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def related_pair(seed: int = 0, n: int = 400, p: int = 32, q: int = 24, noise: float = 3.0):
    """``Y`` depends linearly on 12 of ``X``'s dims plus noise: a CKA well inside (0, 1)."""
    g = gen(seed)
    x = torch.randn(n, p, generator=g, dtype=F64)
    y = x[:, :12] @ torch.randn(12, q, generator=g, dtype=F64) + noise * torch.randn(n, q, generator=g, dtype=F64)
    return x, y


def orthogonal(d: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, d, generator=gen(seed), dtype=F64)).Q


def all_cka(x, y) -> dict:
    """Every full CKA variant of the module, by name."""
    return {
        "linear": linear_cka(x, y),
        "debiased": linear_cka(x, y, debiased=True),
        "rbf": kernel_cka(gram_rbf(x), gram_rbf(y)),
        "debiased_rbf": kernel_cka(gram_rbf(x), gram_rbf(y), debiased=True),
    }


# ---------------------------------------------------------------------------------------------------------------------
# CKA: properties


def test_cka_of_a_representation_with_itself_is_one():
    x, _ = related_pair()
    for name, value in all_cka(x, x).items():
        assert value == pytest.approx(1.0, abs=1e-12), name
    assert float(MinibatchCKA().update(x, x).compute()) == pytest.approx(1.0, abs=1e-12)
    assert StreamingLinearCKA().update(x, x).compute() == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x, y = related_pair()
    reference = all_cka(x, y)
    transformed = all_cka(3.7 * x @ orthogonal(x.shape[1], 1), y @ orthogonal(y.shape[1], 2) * 0.05)
    for name in reference:
        assert transformed[name] == pytest.approx(reference[name], abs=1e-10), name


def test_linear_cka_is_not_invariant_to_a_general_invertible_linear_map():
    # Y only sees X's first 12 dims; stretching X's other 20 dims (an invertible diagonal map) makes X's geometry
    # dominated by directions unrelated to Y, so linear CKA must drop, while CCA (invariant to any invertible map of
    # X) keeps its canonical correlations.
    x, y = related_pair()
    stretch = torch.ones(x.shape[1], dtype=F64)
    stretch[12:] = 10.0
    assert linear_cka(x * stretch, y) < linear_cka(x, y) - 0.2
    torch.testing.assert_close(cca(x * stretch, y).correlations, cca(x, y).correlations, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", [300, 20])  # n > p: feature space through X^T Y; n < p: through the n x n Grams
def test_feature_space_and_gram_space_linear_cka_agree(n):
    x, y = related_pair(n=n)
    for debiased in (False, True):
        feature = linear_cka(x, y, debiased=debiased)
        gram = kernel_cka(gram_linear(x), gram_linear(y), debiased=debiased)
        assert feature == pytest.approx(gram, abs=1e-12), debiased


def test_linear_cka_known_answer_in_two_dimensions():
    # By hand. Rows of X are (a u_i, b v_i) and Y = u, with u = (1, 1, -1, -1)/2 and v = (1, -1, 1, -1)/2: both
    # centred, unit norm and orthogonal. Then X^T Y = (a, 0), X^T X = diag(a^2, b^2), Y^T Y = 1, so
    #   CKA = ||Y^T X||^2 / (||X^T X||_F ||Y^T Y||_F) = a^2 / sqrt(a^4 + b^4),
    # which is 4 / sqrt(17) for a = 2, b = 1.
    u = np.array([1.0, 1.0, -1.0, -1.0]) / 2
    v = np.array([1.0, -1.0, 1.0, -1.0]) / 2
    x = np.stack([2 * u, 1 * v], axis=1)  # numpy input on purpose: both array libraries are accepted
    y = u[:, None]
    assert linear_cka(x, y) == pytest.approx(4 / math.sqrt(17), abs=1e-14)
    assert kernel_cka(gram_linear(x), gram_linear(y)) == pytest.approx(4 / math.sqrt(17), abs=1e-14)
    # and one column each: linear CKA is the squared Pearson correlation
    a, b = np.array([1.0, 2.0, 3.0, 5.0]), np.array([2.0, 1.0, 4.0, 3.0])
    assert linear_cka(a[:, None], b[:, None]) == pytest.approx(np.corrcoef(a, b)[0, 1] ** 2, abs=1e-14)


@pytest.mark.parametrize("n", [5, 7])  # 10 pairs (even: mean of the middle two) and 21 pairs (odd)
def test_gram_rbf_is_the_median_heuristic_over_pairs(n):
    x = np.random.default_rng(n).normal(size=(n, 3))
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    median = np.median(d2[np.triu_indices(n, k=1)])
    expected = np.exp(-d2 / (2 * 0.5**2 * median))
    np.testing.assert_allclose(gram_rbf(x, threshold=0.5).numpy(), expected, rtol=1e-12, atol=1e-14)


def test_hsic_unbiased_is_the_formula_of_the_notes():
    # the notes' formula written out term by term, against the stacked / vectorised implementation
    x, y = related_pair(n=30)
    k, l = gram_rbf(x), gram_linear(y)
    n = k.shape[0]
    kt, lt = k.clone().fill_diagonal_(0), l.clone().fill_diagonal_(0)
    one = torch.ones(n, dtype=F64)
    trace = torch.trace(kt @ lt)
    sums = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    rows = 2 / (n - 2) * (one @ kt @ lt @ one)
    expected = (trace + sums - rows) / (n * (n - 3))
    assert hsic_unbiased(k, l) == pytest.approx(float(expected), rel=1e-12)


def test_debiased_cka_approaches_biased_cka_for_large_n_and_removes_the_small_n_bias():
    x, y = related_pair(n=4000)
    assert abs(linear_cka(x, y, debiased=True) - linear_cka(x, y)) < 0.01
    # independent 50-dim representations of 20 inputs: biased CKA is far from 0, debiased is not
    g = gen(3)
    xi, yi = torch.randn(20, 50, generator=g, dtype=F64), torch.randn(20, 50, generator=g, dtype=F64)
    assert linear_cka(xi, yi) > 0.5
    assert abs(linear_cka(xi, yi, debiased=True)) < 0.15


# ---------------------------------------------------------------------------------------------------------------------
# CKA: streaming and minibatch


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_streaming_linear_cka_equals_full_linear_cka(offset):
    # offset 1e4 against unit spread: accumulating X^T X and subtracting n mu mu^T afterwards would lose ~8 digits
    # (and the debiased fourth moments ~16); the first-batch shift keeps both at 1e-10
    x, y = related_pair(n=1000)
    x, y = x + offset, y - offset / 3
    s = StreamingLinearCKA()
    for start, stop in [(0, 7), (7, 300), (300, 301), (301, 1000)]:  # uneven batches, one of a single row
        s.update(x[start:stop], y[start:stop])
    assert s.n == 1000
    assert s.compute() == pytest.approx(linear_cka(x, y), abs=1e-10)
    assert s.compute(debiased=True) == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-10)


def test_minibatch_cka_with_one_batch_is_exactly_the_full_debiased_cka():
    x, y = related_pair()
    for kernel, full in [
        ("linear", linear_cka(x, y, debiased=True)),
        ("rbf", kernel_cka(gram_rbf(x), gram_rbf(y), debiased=True)),
    ]:
        assert float(MinibatchCKA(kernel).update(x, y).compute()) == pytest.approx(full, abs=1e-12), kernel


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_cka_agrees_with_full_debiased_cka(kernel):
    # Tolerance 0.015: over 20 seeds of this set-up (n = 2000 in 8 batches of 250, CKA ~ 0.39) the largest deviation
    # was 0.0038 for either kernel (0.0018 with n = 4000 in batches of 500). The minibatch value is a ratio of sums
    # of per-batch HSIC_1 estimates (and, for RBF, of per-batch bandwidths): consistent with the full debiased CKA but
    # not identical to it.
    x, y = related_pair(n=2000)
    full = linear_cka(x, y, debiased=True) if kernel == "linear" else kernel_cka(gram_rbf(x), gram_rbf(y), True)
    m = MinibatchCKA(kernel)
    for start in range(0, 2000, 250):
        m.update(x[start : start + 250], y[start : start + 250])
    assert m.num_batches == 8
    assert float(m.compute()) == pytest.approx(full, abs=0.015)


def test_cka_matrix_and_minibatch_layer_matrix():
    x, y = related_pair(n=200)
    layers_a = [x, y, x[:, :12]]
    layers_b = [y, x @ orthogonal(32, 5)]
    intra = cka_matrix(layers_a, progress=False)
    torch.testing.assert_close(intra, intra.T, rtol=0, atol=0)
    torch.testing.assert_close(intra.diagonal(), torch.ones(3, dtype=F64), rtol=0, atol=1e-12)
    inter = cka_matrix(layers_a, layers_b, method="debiased", progress=False)
    assert inter.shape == (3, 2)
    for i, a in enumerate(layers_a):
        for j, b in enumerate(layers_b):
            assert float(inter[i, j]) == pytest.approx(linear_cka(a, b, debiased=True), abs=1e-12)
    # one minibatch of everything reproduces the full debiased matrices, intra (Grams shared) and inter
    torch.testing.assert_close(
        MinibatchCKA().update(layers_a).compute(), cka_matrix(layers_a, method="debiased", progress=False),
        rtol=0, atol=1e-12,
    )
    torch.testing.assert_close(
        MinibatchCKA("rbf").update(layers_a, layers_b).compute(),
        cka_matrix(layers_a, layers_b, method="debiased_rbf", progress=False),
        rtol=0, atol=1e-12,
    )


def test_minibatch_intra_matrix_over_several_batches_equals_the_inter_path():
    # intra shares one Gram stack (and one self-HSIC accumulator) for both sides; passing the layers as B again
    # takes the general path
    x, y = related_pair(n=600)
    layers = [x, y, x[:, :12]]
    intra, inter = MinibatchCKA(), MinibatchCKA()
    for start in range(0, 600, 150):
        batch = [layer[start : start + 150] for layer in layers]
        intra.update(batch)
        inter.update(batch, [b.clone() for b in batch])
    torch.testing.assert_close(intra.compute(), inter.compute(), rtol=0, atol=1e-12)
    torch.testing.assert_close(intra.compute().diagonal(), torch.ones(3, dtype=F64), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="earlier ones"):
        intra.update(batch, batch)


def test_cka_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(9, 3\)"):
        linear_cka(torch.zeros(10, 3), torch.zeros(9, 3))
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(torch.zeros(10), torch.zeros(10, 3))
    s = StreamingLinearCKA().update(torch.randn(5, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="earlier batches"):
        s.update(torch.randn(5, 4), torch.randn(5, 2))
    assert math.isnan(linear_cka(torch.ones(10, 3), torch.randn(10, 2)))  # a constant layer has no CKA


# ---------------------------------------------------------------------------------------------------------------------
# SVCCA / PWCCA


def known_cca_pair(rho=(0.9, 0.5), scales=(1.0, 1.0, 1.0), n: int = 500, seed: int = 0):
    """X and Y whose canonical correlations are exactly ``rho`` and 0, plus a tiny shared direction.

    ``q_1..q_7`` are orthonormal centred columns (QR of centred noise). X = [s1 q1, s2 q2, s3 q3, 1e-3 q7] and
    Y = [rho1 q1 + sqrt(1 - rho1^2) q4, rho2 q2 + sqrt(1 - rho2^2) q5, q6, 1e-3 q7]. Without the q7 columns the
    cross-products of the two orthonormal bases are diag(rho1, rho2, 0), so CCA gives exactly (rho1, rho2, 0). The
    shared q7 adds a correlation of 1, but it holds 1e-6 / 3 of the variance, below SVCCA's 1% cut.
    """
    g = gen(seed)
    z = torch.randn(n, 7, generator=g, dtype=F64)
    q = torch.linalg.qr(z - z.mean(dim=0)).Q
    c1, c2 = math.sqrt(1 - rho[0] ** 2), math.sqrt(1 - rho[1] ** 2)
    x = torch.stack([scales[0] * q[:, 0], scales[1] * q[:, 1], scales[2] * q[:, 2], 1e-3 * q[:, 6]], dim=1)
    y = torch.stack([rho[0] * q[:, 0] + c1 * q[:, 3], rho[1] * q[:, 1] + c2 * q[:, 4], q[:, 5], 1e-3 * q[:, 6]], 1)
    return x, y


def test_svcca_recovers_known_canonical_correlations_after_the_pca_cut():
    x, y = known_cca_pair()
    # rotations mix the columns (CCA is invariant to them) and the offset checks centring
    x, y = x @ orthogonal(4, 1) + 5.0, y @ orthogonal(4, 2)
    full = cca(x, y).correlations
    torch.testing.assert_close(full, torch.tensor([1.0, 0.9, 0.5, 0.0], dtype=F64), rtol=0, atol=1e-8)
    result = svcca(x, y)
    assert (result.dims_x, result.dims_y) == (3, 3)
    torch.testing.assert_close(result.correlations, torch.tensor([0.9, 0.5, 0.0], dtype=F64), rtol=0, atol=1e-8)
    assert result.value == pytest.approx(1.4 / 3, abs=1e-8)


def test_pwcca_weights_correlations_by_the_share_of_x_they_account_for():
    # Unrotated X = [3 q1, 2 q2, 1 q3] (no tiny column): the canonical variates of X are q1, q2, q3 (correlations
    # 0.9, 0.5, 0), and sum_j |<h_i, x_j>| = 3, 2, 1. So PWCCA = (3 * 0.9 + 2 * 0.5 + 1 * 0) / 6 = 3.7 / 6.
    x, y = known_cca_pair(scales=(3.0, 2.0, 1.0))
    x, y = x[:, :3], y[:, :3]
    result = pwcca(x, y)
    torch.testing.assert_close(result.weights, torch.tensor([3.0, 2.0, 1.0], dtype=F64) / 6, rtol=0, atol=1e-10)
    assert result.value == pytest.approx(3.7 / 6, abs=1e-10)
    # the ridge shrinks the correlations a little and keeps the weights normalised
    ridge = pwcca(x, y, epsilon=1e-3)
    assert ridge.value < result.value and ridge.value == pytest.approx(result.value, abs=1e-2)
    assert float(ridge.weights.sum()) == pytest.approx(1.0)


def test_cca_warns_when_dimensions_saturate_the_inputs():
    g = gen(4)
    with pytest.warns(RuntimeWarning, match="by construction"):
        cca(torch.randn(20, 12, generator=g), torch.randn(20, 12, generator=g))


# ---------------------------------------------------------------------------------------------------------------------
# Neuron level


def test_maxcorr_finds_a_planted_permuted_copy():
    g = gen(5)
    a = torch.randn(300, 16, generator=g, dtype=F64)
    perm = torch.randperm(16, generator=g)
    signs = torch.where(torch.rand(16, generator=g) < 0.5, -1.0, 1.0).to(F64)
    b = a[:, perm] * signs * 2.5 + 7.0  # affine and sign changes leave |r| = 1
    result = maxcorr(a, b, chunk_size=5, progress=False)  # chunk smaller than p: the chunked path
    torch.testing.assert_close(result.values, torch.ones(16, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(result.partner, torch.argsort(perm))  # neuron i of A sits at column perm^-1[i] of B
    # one planted neuron among unrelated ones: found, ranked first, matched to its column
    b2 = torch.randn(300, 10, generator=g, dtype=F64)
    b2[:, 6] = -3.0 * a[:, 11] + 1.0
    single = maxcorr(a, b2, progress=False)
    assert float(single.values[11]) == pytest.approx(1.0, abs=1e-12)
    assert int(single.partner[11]) == 6 and int(single.ranking[0]) == 11
    assert float(single.values[torch.arange(16) != 11].max()) < 0.5


def test_mincorr_keeps_only_neurons_every_other_model_shares():
    g = gen(6)
    a = torch.randn(300, 4, generator=g, dtype=F64)
    b1 = torch.cat([a[:, :2], torch.randn(300, 3, generator=g, dtype=F64)], dim=1)  # copies neurons 0 and 1
    b2 = torch.cat([a[:, :1], torch.randn(300, 3, generator=g, dtype=F64)], dim=1)  # copies neuron 0 only
    result = mincorr(a, [b1, b2], progress=False)
    assert float(result.values[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(result.values[1]) < 0.3 and int(result.partner[1]) == 1  # b2 lacks it
    assert int(result.ranking[0]) == 0


def test_linreg_r2_is_one_for_an_exact_linear_function_and_small_for_noise():
    g = gen(7)
    a = torch.randn(500, 8, generator=g, dtype=F64)
    b = a @ torch.randn(8, 5, generator=g, dtype=F64) + 3.0
    b = torch.cat([b, torch.randn(500, 1, generator=g, dtype=F64), torch.full((500, 1), 2.0, dtype=F64)], dim=1)
    result = linreg(a, b, chunk_size=2, progress=False)
    torch.testing.assert_close(result.values[:5], torch.ones(5, dtype=F64), rtol=0, atol=1e-10)
    assert float(result.values[5]) < 0.1  # independent noise: R^2 ~ p / n
    assert math.isnan(float(result.values[6])) and int(result.ranking[-1]) == 6  # a constant neuron has no R^2
    with pytest.warns(RuntimeWarning, match="by construction"):
        linreg(torch.randn(10, 9, generator=g), torch.randn(10, 2, generator=g), progress=False)


# ---------------------------------------------------------------------------------------------------------------------
# Attention maps


def softmax_maps(heads: int, seed: int, queries: int = 12, keys: int = 12) -> torch.Tensor:
    return torch.softmax(2 * torch.randn(heads, queries, keys, generator=gen(seed)), dim=-1)


def test_js_similarity_identical_disjoint_and_symmetric():
    a, b = softmax_maps(4, 0), softmax_maps(3, 1)
    torch.testing.assert_close(head_similarity(a, a).diagonal(), torch.ones(4, dtype=F64), rtol=0, atol=1e-12)
    assert layer_similarity(a, a) == pytest.approx(1.0, abs=1e-12)
    # disjoint supports for every query: mass on the first half of the keys vs on the second half
    left = torch.zeros(2, 12, 12)
    left[..., :6] = 1 / 6
    right = torch.zeros(2, 12, 12)
    right[..., 6:] = 1 / 6
    torch.testing.assert_close(head_similarity(left, right), torch.zeros(2, 2, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(head_similarity(a, b), head_similarity(b, a).T, rtol=0, atol=1e-14)
    s = head_similarity(a, b)
    assert bool(((s >= 0) & (s <= 1)).all())
    assert float(js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))) == pytest.approx(1.0)


def test_attention_masks_ignore_padding():
    a, b = softmax_maps(2, 2, 8, 8), softmax_maps(3, 3, 8, 8)
    # the same maps padded to 10 frames with garbage rows and keys (zero mass on padded keys, as after softmax masking)
    def pad(x):
        out = torch.rand(x.shape[0], 10, 10, generator=gen(9))
        out[:, :, 8:] = 0.0
        out[:, :8, :8] = x
        return out

    mask = torch.arange(10) < 8
    torch.testing.assert_close(head_similarity(pad(a), pad(b), mask, mask), head_similarity(a, b), rtol=0, atol=1e-12)
    # batched [batch, heads, queries, keys] with a per-utterance mask gives the mean over all valid queries
    batch = torch.stack([pad(a), pad(a)])
    masks = torch.stack([mask, torch.ones(10, dtype=torch.bool)])
    assert head_similarity(batch, batch, masks, masks).diagonal().min() == pytest.approx(1.0, abs=1e-12)


def test_attention_similarity_matrix_intra_and_inter():
    layers = [softmax_maps(4, s) for s in range(3)]
    intra = attention_similarity_matrix(layers, progress=False)
    torch.testing.assert_close(intra.diagonal(), torch.ones(3, dtype=F64), rtol=0, atol=1e-12)
    inter = attention_similarity_matrix(layers, layers[::-1], progress=False)
    for i in range(3):
        for j in range(3):
            assert float(intra[i, j]) == pytest.approx(layer_similarity(layers[i], layers[j]), abs=1e-14)
            assert float(inter[i, j]) == pytest.approx(float(intra[i, 2 - j]), abs=1e-14)
    with pytest.raises(ValueError, match=r"\(12, 12\).*\(10, 12\)"):
        head_similarity(layers[0], layers[1][:, :10])
