"""GPTQ on mxsim formats: hand-checked examples, grid membership, and beating round-to-nearest."""

import numpy as np
import pytest
import torch

import mxsim
from lqer.gptq import block_pins, gptq

FMT2 = mxsim.MXINT4.with_block_size(2)


def _corr_layer(seed=0, d_out=24, d_in=64, n=1024):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d_in, d_in, generator=g, dtype=torch.float64) / d_in**0.5
    X = torch.randn(n, d_in, generator=g, dtype=torch.float64) @ (torch.eye(d_in, dtype=torch.float64) + 2 * mix)
    W = torch.randn(d_out, d_in, generator=g, dtype=torch.float64) * 0.05
    return W, X


def test_hand_example_error_feedback():
    # One row w = [0.3, 0.8], H = [[1, .9], [.9, 1]], MXINT4 blocks of 2: amax 0.8 -> scale
    # exponent floor(log2 .8) = -1, step 2^(-1-2) = 1/8. Column 0: 0.3/0.125 = 2.4 -> 2 -> 0.25,
    # error 0.05; GPTQ moves column 1 to 0.8 - e*Hinv01/Hinv00 = 0.8 + 0.9*0.05 = 0.845
    # -> 6.76 -> 7 -> 0.875. Round-to-nearest would give 0.75.
    W = torch.tensor([[0.3, 0.8]], dtype=torch.float64)
    H = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)
    q = gptq(W, H, FMT2, damp=0.0)
    assert q.tolist() == [[0.25, 0.875]]
    # its H-weighted error is below RTN's (hand: 0.001375 vs 0.0095)
    for wq, want in ((q, 0.001375), (torch.tensor([[0.25, 0.75]], dtype=torch.float64), 0.0095)):
        e = W - wq
        assert float(e @ H @ e.T) == pytest.approx(want, abs=1e-12)


def test_block_exponent_fixed_at_first_column():
    # w = [0.3, 0.98]: exponent fixed from amax 0.98 (step 1/8, largest element 7/8). The update
    # pushes column 1 to 0.98 + 0.045 = 1.025, which keeps the fixed exponent and clamps to
    # 0.875 (re-deriving the exponent from the updated value would have given 1.0).
    W = torch.tensor([[0.3, 0.98]], dtype=torch.float64)
    H = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)
    assert gptq(W, H, FMT2, damp=0.0).tolist() == [[0.25, 0.875]]


@pytest.mark.parametrize("act_order", [False, True])
def test_identity_hessian_equals_rtn(act_order):
    W, _ = _corr_layer(1)
    I = torch.eye(W.shape[1], dtype=torch.float64)
    rtn = torch.as_tensor(mxsim.fake_quantize(W.numpy(), mxsim.MXINT4, axis=-1))
    assert torch.equal(gptq(W, I, mxsim.MXINT4, act_order=act_order, block=16), rtn)
    T = W.flip(0) * 3
    rtn_t = torch.as_tensor(mxsim.fake_quantize(T.numpy(), mxsim.MXINT4, axis=-1))
    assert torch.equal(gptq(W, I, mxsim.MXINT4, target=T), rtn_t)


@pytest.mark.parametrize("fmt,act_order,block", [
    (mxsim.MXINT4, False, 128),
    (mxsim.MXINT4, True, 16),
    (mxsim.MXINT4.with_block_size(16), False, 24),   # lazy batch not a multiple of the block
    (mxsim.MXINT8, False, 128),
])
def test_beats_rtn_and_on_grid(fmt, act_order, block):
    W, X = _corr_layer(2, d_in=80)  # 80: a short last block for block size 32
    H = X.T @ X
    q = gptq(W, H, fmt, act_order=act_order, block=block)
    rtn = torch.as_tensor(mxsim.fake_quantize(W.numpy(), fmt, axis=-1))
    err_g = torch.linalg.norm((W - q) @ X.T)
    err_r = torch.linalg.norm((W - rtn) @ X.T)
    assert err_g < 0.9 * err_r
    again = torch.as_tensor(mxsim.fake_quantize(q.numpy(), fmt, axis=-1))
    assert torch.equal(again, q)


def test_float32_in_float32_out_and_target():
    W, X = _corr_layer(3)
    H = X.T @ X
    T = W + 0.01
    q = gptq(W.float(), H, mxsim.MXINT4, target=T)
    assert q.dtype == torch.float32
    rtn_t = torch.as_tensor(mxsim.fake_quantize(T.numpy(), mxsim.MXINT4, axis=-1))
    assert torch.linalg.norm((T - q.double()) @ X.T) < torch.linalg.norm((T - rtn_t) @ X.T)


def test_bad_inputs():
    W = torch.zeros(4, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="d_in x d_in"):
        gptq(W, torch.eye(4), mxsim.MXINT4)
    with pytest.raises(ValueError, match="finite"):
        gptq(W, torch.full((8, 8), float("nan")), mxsim.MXINT4)
    with pytest.raises(ValueError, match="positive definite"):
        H = -torch.ones(8, 8, dtype=torch.float64)  # indefinite: diag < 0 -> dead, off-diag -1
        H.fill_diagonal_(1.0)
        gptq(W, H, mxsim.MXINT4, damp=0.0)


@pytest.mark.parametrize("fmt", [mxsim.MXINT4.with_block_size(16).with_scale_rule(r) for r in ("ceil", "even", "rceil")]
                         + [mxsim.MXFP4_E2M1.with_block_size(16).with_scale_rule(r) for r in ("floor", "even", "rceil")]
                         + [mxsim.NVFP4], ids=lambda f: mxsim.format_to_str(f))
def test_block_pins_keep_the_scale_under_every_rule(fmt):
    """The pinned 2-element block [pin, clip(w)] gets exactly the scale code mxsim chose for
    the whole block, for the non-OCP scale rules and NVFP4's E4M3 scale too, whatever w is."""
    rng = np.random.default_rng(0)
    v = torch.from_numpy(rng.standard_normal((300, 16)) * np.exp(rng.uniform(-5, 5, (300, 1))))
    pin, cap = block_pins(v, fmt)
    want = np.asarray(mxsim.quantize(v.numpy(), fmt).scales)[:, 0]
    for w in (v[:, 3], v[:, 3] * 3, v[:, 0] * 0.01, -v[:, 0] * 1.7):
        vv = torch.maximum(torch.minimum(w, cap), -cap)
        got = np.asarray(mxsim.quantize(torch.stack([pin, vv], 1).numpy(), fmt).scales)[:, 0]
        np.testing.assert_array_equal(got, want)
