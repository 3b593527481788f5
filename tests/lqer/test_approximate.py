"""LQER / L2QER / QERA on small random layers with hand-checkable truths."""
import math

import pytest
import torch

import mxsim
from lqer.approximate import approximate, approximate_ranks, decompose, randomized_svd, sym_sqrt

W4 = mxsim.MXINT4.with_block_size(16)
I8 = mxsim.MXINT8.with_block_size(16)


def _W(out=48, inp=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, inp, generator=g)


def test_full_rank_unquantized_factors_reconstruct_W_exactly():
    W = _W()
    r = approximate(W, w_format=W4, a_format=None, b_format=None, rank=48)
    assert r.metrics["frobenius_plain"] > 1.0  # the 4-bit error is real
    assert r.metrics["frobenius"] < 1e-4 * r.metrics["frobenius_plain"]
    torch.testing.assert_close(r.reconstruction, W, atol=1e-5, rtol=0)


def test_plain_error_is_W_minus_mxsim_quantized():
    W = _W()
    r = approximate(W, w_format=W4, a_format=None, b_format=None, rank=4)
    wq = mxsim.fake_quantize(W, W4, axis=1)
    assert math.isclose(r.metrics["frobenius_plain"], float(torch.linalg.matrix_norm(W - wq)), rel_tol=1e-6)
    assert math.isclose(r.metrics["mean_abs_plain"], float((W - wq).abs().mean()), rel_tol=1e-6)


def test_lqer_truncation_error_is_tail_singular_values():
    # Eckart-Young: ||E - A_k B_k^T||_F^2 = sum of the squared singular values beyond k
    W = _W()
    r = approximate(W, w_format=W4, a_format=None, b_format=None, rank=10)
    E = W - mxsim.fake_quantize(W, W4, axis=1)
    s = torch.linalg.svdvals(E.double())
    assert math.isclose(r.metrics["frobenius"], float(s[10:].pow(2).sum().sqrt()), rel_tol=1e-4)


def test_l2qer_with_unit_or_constant_scale_equals_lqer():
    W = _W()
    a = approximate(W, w_format=W4, a_format=I8, b_format=I8, rank=8)
    b = approximate(W, w_format=W4, a_format=I8, b_format=I8, rank=8, scale=torch.ones(64))
    torch.testing.assert_close(a.correction, b.correction, atol=0, rtol=0)
    # a global factor on s cancels (A = diag(s)^-1 U, B = Sigma V^T)
    c = approximate(W, w_format=W4, a_format=None, b_format=None, rank=8, scale=torch.full((64,), 4.0))
    d = approximate(W, w_format=W4, a_format=None, b_format=None, rank=8)
    torch.testing.assert_close(c.correction, d.correction, atol=1e-5, rtol=1e-4)


def test_l2qer_factors_follow_the_recipe():
    W = _W()
    s = torch.linspace(0.5, 2.0, 64)
    r = approximate(W, w_format=W4, a_format=None, b_format=None, rank=5, scale=s)
    E = W - mxsim.fake_quantize(W, W4, axis=1)
    U, S, Vh = torch.linalg.svd(s[:, None] * E.T, full_matrices=False)
    torch.testing.assert_close(r.A_deq, U[:, :5] / s[:, None], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(r.B_deq, S[:5, None] * Vh[:5], atol=1e-5, rtol=1e-4)


def _correlated_inputs(n=4000, d=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(d, d, generator=g) * torch.logspace(0, -2, d)[None, :]
    X = torch.randn(n, d, generator=g) @ L.T
    X[:, :4] *= 20  # a few large channels
    return X.double()


def test_qera_output_error_is_tail_of_scaled_svd_and_beats_lqer_and_l2qer():
    W = _W()
    X = _correlated_inputs()
    R = X.T @ X / X.shape[0]
    k = 6
    q = approximate(W, w_format=W4, a_format=None, b_format=None, rank=k, xtx=R)
    lq = approximate(W, w_format=W4, a_format=None, b_format=None, rank=k)
    s = X.abs().mean(0).float()
    l2 = approximate(W, w_format=W4, a_format=None, b_format=None, rank=k, scale=s)
    E = (W - mxsim.fake_quantize(W, W4, axis=1)).double()

    def out_err2(res):  # E||x (E - C)^T||^2 per token
        D = E - res.correction.double()
        return float((X @ D.T).pow(2).sum() / X.shape[0])

    # closed form: the optimum is the tail of the SVD of R^{1/2} E^T
    lam, Q = torch.linalg.eigh(R)
    S = (Q * lam.sqrt()) @ Q.T
    sv = torch.linalg.svdvals(S @ E.T)
    assert math.isclose(out_err2(q), float(sv[k:].pow(2).sum()), rel_tol=1e-4)
    assert out_err2(q) < out_err2(l2) < out_err2(lq)


def test_sym_sqrt_is_symmetric_root():
    X = _correlated_inputs(n=500, d=16)
    R = X.T @ X / 500
    S, Sinv = sym_sqrt(R)
    torch.testing.assert_close(S @ S, R, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(S @ Sinv, torch.eye(16, dtype=torch.float64), atol=1e-6, rtol=0)


def test_randomized_svd_close_to_full_on_random_layer():
    W = _W(96, 128)
    full = approximate(W, w_format=W4, a_format=None, b_format=None, rank=16)
    rnd = approximate(W, w_format=W4, a_format=None, b_format=None, rank=16, svd="randomized")
    assert rnd.metrics["frobenius"] <= full.metrics["frobenius"] * 1.01
    M = torch.randn(50, 40)
    U, S, Vh = randomized_svd(M, 40, oversample=0, niter=2)  # full range: exact
    torch.testing.assert_close(S, torch.linalg.svdvals(M), atol=1e-4, rtol=1e-4)


def test_many_ranks_from_one_svd_match_single_calls():
    W = _W()
    many = approximate_ranks(W, [2, 8, 16], w_format=W4, a_format=I8, b_format=I8)
    for k in (2, 8, 16):
        one = approximate(W, w_format=W4, a_format=I8, b_format=I8, rank=k)
        torch.testing.assert_close(many[k].correction, one.correction, atol=0, rtol=0)
    errs = [many[k].metrics["frobenius"] for k in (2, 8, 16)]
    assert errs[0] > errs[1] > errs[2]
    dec = decompose(W, w_format=W4)
    assert dec.max_rank == 48


@pytest.mark.parametrize("axis,ax_a,ax_b", [("last", 1, 1), ("reduction", 0, 0)])
def test_factor_blocking_axes(axis, ax_a, ax_b):
    W = _W()
    r = approximate(W, w_format=W4, a_format=I8, b_format=I8, rank=32, factor_axis=axis)
    assert r.A.axis == ax_a and r.B.axis == ax_b
    assert tuple(r.A.shape) == (64, 32) and tuple(r.B.shape) == (32, 48)
    A, B = decompose(W, w_format=W4).factors(32)
    torch.testing.assert_close(r.A_deq, mxsim.fake_quantize(A, I8, axis=ax_a))
    torch.testing.assert_close(r.B_deq, mxsim.fake_quantize(B, I8, axis=ax_b))


def test_quantized_factors_still_help():
    W = _W()
    r = approximate(W, w_format=W4, a_format=I8, b_format=I8, rank=16)
    assert r.metrics["frobenius"] < 0.9 * r.metrics["frobenius_plain"]
    assert r.metrics["mean_abs"] < r.metrics["mean_abs_plain"]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("rank", [0, -1, 49, 1000])
def test_rank_out_of_range(rank):
    with pytest.raises(ValueError, match="rank"):
        approximate(_W(), w_format=W4, a_format=I8, b_format=I8, rank=rank)


@pytest.mark.parametrize("scale,msg", [
    (torch.ones(63), "length"),
    (torch.zeros(64), "positive"),
    (torch.tensor([1.0] * 63 + [float("nan")]), "NaN"),
    (torch.tensor([1.0] * 63 + [-1.0]), "positive"),
])
def test_bad_scale(scale, msg):
    with pytest.raises(ValueError, match=msg):
        approximate(_W(), w_format=W4, a_format=I8, b_format=I8, rank=4, scale=scale)


def test_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        approximate(torch.randn(4, 4, 4), w_format=W4, a_format=I8, b_format=I8, rank=2)
    with pytest.raises(ValueError, match="xtx"):
        approximate(_W(), w_format=W4, a_format=I8, b_format=I8, rank=2, xtx=torch.eye(10))
    with pytest.raises(ValueError, match="NaN"):
        W = _W()
        W[0, 0] = float("nan")
        approximate(W, w_format=W4, a_format=I8, b_format=I8, rank=2)
