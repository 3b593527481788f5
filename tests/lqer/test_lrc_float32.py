"""LRC with float32 statistics (LRCOptions.stats_dtype="float32", what a 7B down_proj needs to
stream within its memory bound): the loss it reports is the loss of its result computed from
the data in float64; it stays within a stated margin of the float64 LRC; reading the statistics
exclusively (in place, memory freed early) gives the same bits; GPTQ with a given factor is
GPTQ with the Hessian. Expected values come from the data matrices, not from lqer.lrc."""

import pytest
import torch

import mxsim
from lqer import load_config
from lqer.covariance import CovarianceObserver, CovarianceStats
from lqer.covariance import cholesky_, symmetrize_
from lqer.gptq import gptq
from lqer.lrc import lrc
from lqer.methods import get_method
from lqer.options import LRCOptions

AFMT = mxsim.MXINT4.with_block_size(16)
WFMT = mxsim.MXINT4.with_block_size(16)
F64, F32 = torch.float64, torch.float32


def _data(seed=0, d_in=64, d_out=24, n=2000):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d_in, d_in, generator=g, dtype=F64) / d_in**0.5
    scale = torch.ones(d_in, dtype=F64)
    scale[::7] = 6.0  # outlier channels, as in LLM activations
    X = ((torch.randn(n, d_in, generator=g, dtype=F64) @ (torch.eye(d_in, dtype=F64) + mix)) * scale).float()
    W = (torch.randn(d_out, d_in, generator=g, dtype=F64) * 0.1).float()
    return W, X


def _observed(X, dtype, exclusive=False):
    obs = CovarianceObserver(AFMT, dtype=dtype)
    for part in X.split(250):  # batches, as a calibration run feeds them
        obs.update(part)
    obs.exclusive = exclusive
    return obs


def _data_loss(W, res, X):
    X = X.double()
    Y = torch.as_tensor(mxsim.fake_quantize(X.numpy(), AFMT, axis=-1))
    E = W.double() @ X.T - res.weight.double() @ Y.T - res.U.double() @ (res.V.double().T @ X.T)
    return float((E * E).sum())


def test_float32_observer_sums():
    W, X = _data()
    st = _observed(X, F32).result()
    assert st.sx.dtype == st.sy.dtype == st.sxy.dtype == F32
    X64 = X.double()
    Y64 = torch.as_tensor(mxsim.fake_quantize(X64.numpy(), AFMT, axis=-1))
    # float32 sums of 2000 products: within 1e-5 of the float64 sums (relative to the largest entry)
    for got, want in ((st.sx, X64.T @ X64), (st.sy, Y64.T @ Y64), (st.sxy, X64.T @ Y64)):
        assert float((got.double() - want).abs().max()) <= 1e-5 * float(want.abs().max())
    with pytest.raises(ValueError, match="dtype"):
        CovarianceObserver(AFMT, dtype=torch.float16)


def test_exclusive_observer_hands_over_once():
    W, X = _data()
    obs = _observed(X, F32, exclusive=True)
    st = obs.result()
    assert st.exclusive and obs.sx is None
    with pytest.raises(ValueError, match="handed over"):
        obs.result()


@pytest.mark.parametrize("iterations", [1, 2])
def test_float32_lrc_loss_is_its_data_loss_and_near_float64(iterations):
    W, X = _data(3)
    k = 6
    kw = dict(w_format=WFMT, a_format=AFMT, rank=k, iterations=iterations, lowrank_format="fp16")
    r64 = lrc(W.double(), _observed(X, F64).result(), **kw)
    r32 = lrc(W, _observed(X, F32).result(), **kw)
    got = _data_loss(W, r32, X)
    # the reported loss is a difference of traces of float32 products summed in float64: the
    # data loss to 1e-4 (the traces are ~30x the loss here, each good to ~1e-6)
    assert r32.final_loss == pytest.approx(got, rel=1e-4)
    # float32 statistics cost at most 1 % of the loss against float64 LRC on this layer
    assert got <= 1.01 * _data_loss(W, r64, X)
    assert torch.equal(torch.as_tensor(mxsim.fake_quantize(r32.weight.numpy(), WFMT, axis=-1)), r32.weight)
    steps = [s for s, _ in r32.losses]
    assert steps[-1] == "factors_rounded" and f"uv_step{iterations}" in steps


@pytest.mark.parametrize("iterations", [1, 2])
def test_exclusive_statistics_give_the_same_bits_and_are_consumed(iterations):
    W, X = _data(4)
    kw = dict(w_format=WFMT, a_format=AFMT, rank=5, iterations=iterations, lowrank_format="fp16")
    a = lrc(W, _observed(X, F32).result(), **kw)
    st = _observed(X, F32, exclusive=True).result()
    b = lrc(W, st, **kw)
    assert st.sx is None and st.sy is None and st.sxy is None  # the problem took (and freed) them
    assert torch.equal(a.weight, b.weight) and torch.equal(a.U, b.U) and torch.equal(a.V, b.V)
    assert a.losses == b.losses


def test_gptq_with_a_factor_is_gptq_with_the_hessian():
    g = torch.Generator().manual_seed(7)
    X = torch.randn(300, 64, generator=g, dtype=F64)
    W = torch.randn(16, 64, generator=g, dtype=F64) * 0.1
    H = X.T @ X
    lam = 0.01 * float(torch.diagonal(H).mean())
    want = gptq(W, H, WFMT, damp=0.01)
    Hd = symmetrize_(H.clone())
    torch.diagonal(Hd).add_(lam)
    L, info = cholesky_(Hd)
    assert info.item() == 0
    got, inf = gptq(W, None, WFMT, factor=L, lam=lam, return_info=True, hessian_trace=True)
    assert torch.equal(got, want)  # the same factor and column loop: the same bits
    Hl = H + lam * torch.eye(64, dtype=F64)
    assert inf["hessian_trace"] == pytest.approx(float(torch.trace(got @ Hl @ got.T)), rel=1e-10)
    with pytest.raises(ValueError, match="either H or factor"):
        gptq(W, H, WFMT, factor=L)


def test_options_and_statistics_key():
    with pytest.raises(ValueError, match="stats_dtype"):
        LRCOptions(stats_dtype="float16")
    with pytest.raises(ValueError, match="act_order"):
        LRCOptions(stats_dtype="float32", act_order=True)
    m = get_method("lrc")
    c64 = load_config("W4A8", method="lrc")
    c32 = load_config("W4A8", method="lrc", options={"stats_dtype": "float32"})
    assert m.stats_key(c64) != m.stats_key(c32)  # float32 statistics are not shared with float64 ones
    assert m.stats_key(c64) == get_method("gptq").stats_key(load_config("W4A8", method="gptq"))
    lin = torch.nn.Linear(32, 8)
    assert m.observer("l", lin, c32).dtype == F32 and m.observer("l", lin, c64).dtype == F64


def test_float32_lrc_through_quantize_model_equals_direct_call():
    """The method builds from float32 statistics (no float64 copy of the weight or statistics)."""
    W, X = _data(5, d_in=32, d_out=16, n=400)
    cfg = load_config("W4A8", method="lrc", rank=3, options={"stats_dtype": "float32"})
    lin = torch.nn.Linear(32, 16, bias=False)
    with torch.no_grad():
        lin.weight.copy_(W)
    obs = get_method("lrc").observer("l", lin, cfg)
    obs.update(X)
    q = get_method("lrc").build("l", lin, obs, cfg)
    ref = lrc(W, CovarianceStats(obs.sx, obs.sy, obs.sxy, obs.n, obs.a_format), w_format=cfg.w_format,
              a_format=cfg.x_format, rank=3, lowrank_format="fp16")
    assert q.metrics["lrc_losses"] == ref.losses
