"""Property tests (hypothesis, bounded) on both paths: the referee (mxsim.reference) and the
numba path (mxsim.fake_quantize / quantize / matmul).

Idempotence, what holds exactly:
* MX formats (MXINT, MXFP), every rounding mode: Q(Q(x)) == Q(x) bit for bit. The block max
  rounds to a value with the same floor(log2) (MXINT codes stay below 2^(b-1) but at least
  2^(b-2); MXFP saturates below 2^(emax+1)), so the scale is unchanged and every value is
  already on the grid. One exception, found by hypothesis: when the scale is clamped at
  2^-127 an MXFP block can round entirely to zero, keeping signs (-0.0); the second pass
  sees an all-zero block and returns +0.0. Values stay equal; only the sign of such zeros
  changes.
* BlockFP is NOT idempotent in general, for two reasons shown by the counterexamples below:
  (1) the clipped top code: a block max that rounds to exactly 2^(e-1) gets e' = e - 1 and
  then clips to (2^(w-1)-1) 2^(e-w); (2) the 1e-9 nudge is added again, and moves a grid
  value up when the step 2^(e-(w-1)) is at most about 2e-9. What holds (tested): if every
  block keeps its exponent (ceil(log2(max|Q(x)|)) == e) and every block's step exceeds
  4e-9, then Q(Q(x)) == Q(x) under nearest_even.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import mxsim
from mxsim import reference as R
from mxsim.formats import MXFPFormat

from adversarial import DEFAULT_FORMATS, float32_arrays, mx_settings, random_case

MX_FORMATS = [f for f in DEFAULT_FORMATS if not isinstance(f, mxsim.BlockFP)]
BFP_FORMATS = [f for f in DEFAULT_FORMATS if isinstance(f, mxsim.BlockFP)]


def bits_equal(a, b):
    a, b = torch.as_tensor(a).contiguous(), torch.as_tensor(b).contiguous()
    return bool(((a.view(torch.int32) == b.view(torch.int32)) | (torch.isnan(a) & torch.isnan(b))).all())


PATHS = {"reference": R.fake_quantize, "numba": mxsim.fake_quantize}


@mx_settings(30)
@given(a=float32_arrays(), fmt=st.sampled_from(MX_FORMATS), rounding=st.sampled_from(mxsim.ROUNDING_MODES),
       block=st.sampled_from([1, 7, 16, 32]), axis=st.sampled_from([0, 1]), path=st.sampled_from(list(PATHS)))
def test_mx_idempotent(a, fmt, rounding, block, axis, path):
    fq = PATHS[path]
    f = fmt.with_block_size(block)
    x = torch.from_numpy(a)
    q1 = fq(x, f, axis=axis, rounding=rounding, seed=1)
    q2 = fq(q1, f, axis=axis, rounding=rounding, seed=2)
    if bits_equal(q1, q2):
        return
    # the one exception (MXFP): a block whose scale is clamped at 2^-127 can round entirely
    # to +-0; the second pass sees an all-zero block and returns +0.0 (contract: zero blocks
    # have codes 0). Values are still equal, and only such all-zero blocks differ.
    assert isinstance(f, MXFPFormat)
    q1t, q2t = torch.as_tensor(q1), torch.as_tensor(q2)
    differ = ~((q1t.view(torch.int32) == q2t.view(torch.int32)) | (torch.isnan(q1t) & torch.isnan(q2t)))
    assert (q1t[differ] == 0).all() and (q2t[differ] == 0).all()
    moved = q1t.movedim(axis, -1)
    nb = -(-moved.shape[-1] // block)
    padded = torch.nn.functional.pad(moved, (0, nb * block - moved.shape[-1])).reshape(*moved.shape[:-1], nb, block)
    zero_blocks = (padded == 0).all(-1, keepdim=True).expand_as(padded).reshape(*moved.shape[:-1], nb * block)
    assert zero_blocks[..., : moved.shape[-1]].movedim(-1, axis)[differ].all()


def test_blockfp_not_idempotent_counterexamples():
    f = mxsim.BlockFP(4, block_size=1)
    # (1) x = 0.5 + 2^-10: e = ceil(log2 0.500977) = 0, m = round(4.0078) = 4 -> 0.5.
    #     Q(0.5): e = -1, m = round(0.5 * 2^4) = 8 -> clamp 7 -> 7/16.
    x = torch.tensor([[0.5 + 2.0**-10]])
    q1 = R.fake_quantize(x, f)
    assert q1.item() == 0.5 and R.fake_quantize(q1, f).item() == 7 / 16
    # (2) width 8, e = -22 (block max 0.6 * 2^-22): step 2^-29 ~ 1.86e-9, and the nudge
    #     1e-9 ~ 0.54 step: x = 0.6 * 2^-22 -> (76.8 + 0.54) -> 77; then 77 + 0.54 -> 78.
    g = mxsim.BlockFP(8, block_size=1)
    x = torch.tensor([[0.6 * 2.0**-22]])
    q1 = R.fake_quantize(x, g)
    q2 = R.fake_quantize(q1, g)
    assert q1.item() == 77 * 2.0**-29 and q2.item() == 78 * 2.0**-29
    # both paths agree on this
    assert bits_equal(mxsim.fake_quantize(q1, g), q2)


def _bfp_block_exp(x, f):
    """Per-block e as the contract computes it (float32 torch.log2, ceil), zero blocks None."""
    xb = x.reshape(-1)
    out = []
    for i in range(0, xb.numel(), f.block_size):
        m = xb[i:i + f.block_size].abs().max().to(torch.float32)
        out.append(None if m == 0 else int(torch.ceil(torch.log2(m))))
    return out


@mx_settings(30)
@given(a=float32_arrays(max_rows=1, finite=True), fmt=st.sampled_from(BFP_FORMATS),
       block=st.sampled_from([1, 7, 16]), path=st.sampled_from(list(PATHS)))
def test_blockfp_idempotent_where_it_holds(a, fmt, block, path):
    f = fmt.with_block_size(block)
    x = torch.from_numpy(a)
    q1 = PATHS[path](x, f)
    e1, e2 = _bfp_block_exp(x, f), _bfp_block_exp(q1, f)
    for ea, eb in zip(e1, e2):
        if ea is None:
            continue
        ea = min(max(ea, f.exp_min), f.exp_max)
        assume(eb is not None and ea == min(max(eb, f.exp_min), f.exp_max))
        assume(2.0 ** (ea - (f.width - 1)) > 4e-9)
    assert bits_equal(q1, PATHS[path](q1, f))


def _grid_step(x, f):
    """Per-element grid step (float64) under the contract, and an in-range mask."""
    xd = x.double()
    k = f.block_size
    L = xd.shape[-1]
    nb = -(-L // k)
    pad = torch.nn.functional.pad(xd, (0, nb * k - L)).reshape(*xd.shape[:-1], nb, k)
    amax = pad.abs().amax(-1, keepdim=True).expand_as(pad).reshape(*xd.shape[:-1], nb * k)[..., :L]
    fl = torch.floor(torch.log2(torch.where(amax > 0, amax, torch.ones_like(amax))))
    if isinstance(f, mxsim.BlockFP):
        e = torch.ceil(torch.log2(torch.where(amax > 0, amax, torch.ones_like(amax)).float())).double()
        step = 2.0 ** (e - (f.width - 1))
        ok = (e >= f.exp_min) & (e <= f.exp_max) & (xd.abs() <= f.max_code * step) & (amax > 0)
        return step, ok
    if isinstance(f, MXFPFormat):
        s = fl - f.emax_elem
        v = xd.abs() * 2.0**-s
        E = torch.clamp(torch.floor(torch.log2(torch.where(v > 0, v, torch.ones_like(v)))), min=f.emin)
        step = 2.0 ** (E - f.mantissa_bits + s)
        ok = (s >= -127) & (s <= 127) & (v <= f.max_normal)
        return step, ok
    s = fl
    step = 2.0 ** (s + f.quantum_log2)
    ok = (s >= -127) & (s <= 127) & (xd.abs() <= f.max_code * step)
    return step, ok


@mx_settings(40)
@given(a=float32_arrays(finite=True), fmt=st.sampled_from(DEFAULT_FORMATS),
       rounding=st.sampled_from(["nearest_even", "nearest_away", "floor", "stochastic"]),
       block=st.sampled_from([1, 7, 16, 32]), path=st.sampled_from(list(PATHS)))
def test_error_bound(a, fmt, rounding, block, path):
    """nearest: |x - Q(x)| <= step/2 for in-range values (BlockFP: + the 1e-9 nudge and the
    float32 rounding of |x| + 1e-9); floor and stochastic: < one step."""
    f = fmt.with_block_size(block)
    x = torch.from_numpy(a)
    q = PATHS[path](x, f, rounding=rounding, seed=3)
    step, ok = _grid_step(x, f)
    err = (x.double() - q.double()).abs()
    if rounding.startswith("nearest"):
        bound = step / 2
        if isinstance(f, mxsim.BlockFP):
            bound = bound + 1e-9 + x.double().abs() * 2.0**-23
    else:
        bound = step
    assert (err[ok] <= bound[ok]).all()
    if not rounding.startswith("nearest"):
        assert (err[ok] < step[ok]).all()


@mx_settings(25)
@given(data=st.data(), pair=st.sampled_from([(mxsim.MXINT8, mxsim.MXINT8), (mxsim.MXINT8, mxsim.MXINT4),
                                             (mxsim.MXFP8_E4M3, mxsim.MXFP6_E2M3), (mxsim.BlockFP(4), mxsim.MXINT8)]),
       block=st.sampled_from([4, 16, 7]), path=st.sampled_from(["reference", "numba"]))
def test_matmul_exact_equals_float64_dot_when_exact(data, pair, block, path):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    M, K, N = 3, data.draw(st.integers(1, 40)), 2
    fa, fb = pair[0].with_block_size(block), pair[1].with_block_size(block)
    # narrow magnitudes (scales close together) so that the float64 dot is exact
    a = random_case(rng, M, K, "normal")
    b = random_case(rng, K, N, "normal")
    qa, qb = mxsim.quantize(a, fa, axis=1), mxsim.quantize(b, fb, axis=0)
    da = torch.from_numpy(np.asarray(qa.dequantize(dtype=np.float64)))
    db = torch.from_numpy(np.asarray(qb.dequantize(dtype=np.float64)))
    # exactness: each product has at most 16 significant bits (<= 8-bit significands), so it
    # is an integer multiple of 2^(top bit - 20); with unit = the smallest such power, every
    # partial sum in any order is exact in float64 while sum |a||b| < 2^(unit + 53)
    prods = da.abs()[:, :, None] * db.abs()[None, :, :]
    nz = prods[prods > 0]
    if nz.numel():
        unit = min(math.frexp(v)[1] - 1 - 20 for v in nz.tolist())
        assume(prods.sum(dim=1).max().item() < 2.0 ** (unit + 53))
    want = da @ db
    if path == "reference":
        got = R.matmul(torch.from_numpy(qa.codes), torch.from_numpy(qa.scales), fa, torch.from_numpy(qb.codes),
                       torch.from_numpy(qb.scales), fb, accumulator="exact")
    else:
        got = torch.as_tensor(mxsim.matmul(qa, qb, accumulator="exact"))
    assert torch.equal(got.double(), want)


@mx_settings(40)
@given(a=float32_arrays(max_rows=1), fmt=st.sampled_from(DEFAULT_FORMATS), rounding=st.sampled_from(mxsim.ROUNDING_MODES),
       block=st.sampled_from([3, 7, 16, 32]), path=st.sampled_from(["reference", "numba"]))
def test_zero_padding_changes_nothing(a, fmt, rounding, block, path):
    """A short last block equals the same block zero padded: values, codes and scales of the
    first L elements agree (one row, so stochastic indices are unchanged)."""
    f = fmt.with_block_size(block)
    L = a.shape[1]
    padded = np.zeros((1, -(-L // block) * block), np.float32)
    padded[:, :L] = a
    assume(padded.shape[1] > L)
    x, xp = torch.from_numpy(a), torch.from_numpy(padded)
    if path == "reference":
        q, qp = R.fake_quantize(x, f, rounding=rounding), R.fake_quantize(xp, f, rounding=rounding)
        (c, s), (cp, sp) = R.quantize(x, f, rounding=rounding), R.quantize(xp, f, rounding=rounding)
    else:
        q, qp = mxsim.fake_quantize(x, f, rounding=rounding), mxsim.fake_quantize(xp, f, rounding=rounding)
        t, tp = mxsim.quantize(x, f, rounding=rounding), mxsim.quantize(xp, f, rounding=rounding)
        c, s, cp, sp = (torch.from_numpy(v) for v in (t.codes, t.scales, tp.codes, tp.scales))
    assert bits_equal(q, qp[:, :L])
    assert torch.equal(c, cp[:, :L]) and torch.equal(s, sp)
