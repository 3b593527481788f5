"""NVFP4 (FP4 E2M1, blocks of 16, E4M3 block scale, optional per-tensor scale): hand-computed
values, the numba path against the torch referee bit for bit, both against torchao's
nvfp4_quantize where torchao is installed, bytes, matmul datapath and bad input."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import mxsim
from mxsim import reference_nvfp4 as RN
from mxsim.nvfp4 import NVFP4Tensor
from mxsim.validate import random_case

NV, NV2 = mxsim.NVFP4, mxsim.NVFP4.with_two_level()


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _adversarial(rng):
    """Rows of 45 (not a multiple of 16): random scales, zeros and -0, NaN/Inf, E2M1 ties for a
    block max of 6 * 2^k, and float32 extremes."""
    rows = [random_case(rng, 6, 45, kind) for kind in ("normal", "scaled_rows", "heavy", "wide")]
    z = np.zeros((3, 45), np.float32)
    z[1] = -0.0
    z[2, 5] = -1e-30
    rows.append(z)
    bad = random_case(rng, 3, 45, "normal")
    bad[0, 3], bad[1, 20], bad[2, 40] = np.nan, np.inf, -np.inf
    rows.append(bad)
    ties = []
    for k in range(-12, 12, 3):
        t = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 6, np.float32)[:45] * np.float32(2.0**k)
        t[::16] = np.float32(6 * 2.0**k)
        ties.append(t * np.where(rng.random(45) < 0.5, -1, 1).astype(np.float32))
    rows.append(np.array(ties, np.float32))
    ext = np.array([[3.4e38, -3e38, 1e-45, 1e-40, 2.0**-126] * 9], np.float32)
    rows.append(ext)
    return np.concatenate(rows).astype(np.float32)


# ----------------------------------------------------------------------------------------
# hand-computed


def test_hand_block_scale_and_reciprocal():
    """Block max 0.17578125 = 6 * 15/512: bs = 15/512 exactly, an E4M3 value (1.875 * 2^-6:
    biased exponent 1, mantissa 7, code 0x0F). x = 2.5 * 15/512 = 0.0732421875 is an exact E2M1
    tie under division (x / sc = 2.5 -> 2.0, code 4) but the recipe multiplies by
    r = fl32(512/15) = 34.133335 > 512/15, and fl32(x * r) = 2.5000002 -> 3.0 (code 5)."""
    sc = np.float32(15 / 512)
    r = np.float32(1.0) / sc
    assert float(r) > 512 / 15 and np.float32(np.float32(0.0732421875) * r) > np.float32(2.5)
    x = np.zeros(16, np.float32)
    x[0], x[1], x[2], x[3] = 0.17578125, 0.0732421875, -0.05, -0.0
    for codes, scales in ((mxsim.quantize(x, NV).codes, mxsim.quantize(x, NV).scales),
                          RN.quantize(torch.from_numpy(x), NV)[:2]):
        codes, scales = np.asarray(codes), np.asarray(scales)
        assert scales.tolist() == [0x0F]
        # 6.0000002 clamps to 6 (code 7); -0.05 * r = -1.71 -> -1.5 (code 8|3); -0.0 keeps its sign
        assert codes[:4].tolist() == [7, 5, 8 | 3, 8]
    fq = mxsim.fake_quantize(x, NV)
    assert fq[:4].tolist() == [6 * 15 / 512, 3 * 15 / 512, -1.5 * 15 / 512, -0.0]
    assert math.copysign(1.0, fq[3]) < 0


def test_hand_zero_nan_and_clamped_scales():
    x = np.zeros((4, 16), np.float32)
    x[1, 0] = np.nan
    x[2, 0] = 6 * 448 * 4  # bs = 1792 clamps to 448 (code 0x7E); elements saturate at 6
    x[3, 0] = 1e-3  # bs = 1.7e-4 clamps up to 2^-6 (code 0x08); 1e-3 * 64 = 0.064 -> 0
    q = mxsim.quantize(x, NV)
    assert q.scales[:, 0].tolist() == [0x08, 0x7F, 0x7E, 0x08]
    assert q.codes[2, 0] == 7 and q.codes[3, 0] == 0
    deq = q.dequantize()
    assert np.all(deq[0] == 0) and np.all(np.isnan(deq[1])) and deq[2, 0] == 6 * 448


def test_two_level_hand():
    """p given: 0.5. Block max 3: bs = 0.5, bs / p = 1 -> sc = 1 (0x38); r = fl32(1/p) / 1 = 2;
    3 * 2 = 6 (code 7); dequantized 6 * fl32(p * sc) = 3."""
    x = np.zeros(16, np.float32)
    x[0], x[1] = 3.0, -0.75
    q = mxsim.quantize(x, NV, per_tensor_scale=0.5)
    assert q.fmt.two_level and q.tensor_scale == 0.5
    assert q.scales.tolist() == [0x38] and q.codes[:2].tolist() == [7, 8 | 3]
    assert q.dequantize()[:2].tolist() == [3.0, -0.75]
    # automatic p = fl32(amax / 2688)
    q2 = mxsim.quantize(x, NV2)
    assert q2.tensor_scale == float(np.float32(np.float32(3.0) / np.float32(2688.0)))


def test_storage_bits_and_bytes():
    assert NV.bits_per_element == 4.5 and NV.element_bits == 4 and NV.scale_bits == 8
    x = np.zeros((2, 40), np.float32)
    x[0, 0] = 6.0
    q = mxsim.quantize(x, NV)
    assert q.nbits == 80 * 4 + 6 * 8
    data = q.to_bytes()
    # scales (C order) then the 4-bit stream, first element in the low nibble
    assert data[:6] == bytes([0x38, 0x08, 0x08, 0x08, 0x08, 0x08]) and data[6] == 0x07
    back = mxsim.MXTensor.from_bytes(data, NV, x.shape)
    assert isinstance(back, NVFP4Tensor)
    np.testing.assert_array_equal(back.codes, q.codes)
    q2 = mxsim.quantize(random_case(np.random.default_rng(1), 5, 33, "normal"), NV2, axis=0)
    back2 = NVFP4Tensor.from_bytes(q2.to_bytes(), NV2, q2.shape, axis=0)
    assert q2.nbits == 5 * 33 * 4 + 1 * 33 * 8 + 32 and len(q2.to_bytes()) == 4 + 33 + (165 * 4 + 7) // 8
    assert back2.tensor_scale == q2.tensor_scale
    np.testing.assert_array_equal(_bits(back2.dequantize()), _bits(q2.dequantize()))
    with pytest.raises(ValueError, match="bytes"):
        NVFP4Tensor.from_bytes(data[:-1], NV, x.shape)


# ----------------------------------------------------------------------------------------
# numba == referee


@pytest.mark.parametrize("fmt", [NV, NV2], ids=["single", "two_level"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_numba_vs_referee(fmt, axis):
    x = _adversarial(np.random.default_rng(3))
    x = np.ascontiguousarray(x.T) if axis == 0 else x
    for inp in (x, x.astype(np.float64), torch.from_numpy(x).to(torch.bfloat16)):
        for p in (None, 0.037) if fmt is NV else (None,):
            got = mxsim.fake_quantize(inp, fmt, axis=axis, per_tensor_scale=p)
            ref = RN.fake_quantize(inp, fmt, axis=axis, per_tensor_scale=p)
            g, r = (np.asarray(v.float() if torch.is_tensor(v) else v) for v in (got, ref))
            np.testing.assert_array_equal(_bits(g), _bits(r))
            q = mxsim.quantize(inp, fmt, axis=axis, per_tensor_scale=p)
            rc, rs, rp = RN.quantize(inp, fmt, axis=axis, per_tensor_scale=p)
            np.testing.assert_array_equal(q.codes, rc.numpy())
            np.testing.assert_array_equal(q.scales, rs.numpy())
            assert q.tensor_scale == rp
            dq = q.dequantize()
            dq = dq.float().numpy() if torch.is_tensor(dq) else dq.astype(np.float32)
            np.testing.assert_array_equal(_bits(dq), _bits(g.astype(np.float32)))


def _e4m3_values():
    """Every positive finite E4M3 value, by its definition (not mxsim's decoder)."""
    v = [m * 2.0**-9 for m in range(1, 8)]  # subnormals: m * 2^-3 * 2^-6
    v += [(1 + m / 8) * 2.0**e for e in range(-6, 9) for m in range(8)]
    return sorted(x for x in v if x <= 448)


def _scale_boundaries(rng):
    """Blocks of 16 whose max puts amax / 6 on or next to every E4M3 rounding boundary (the
    midpoints between neighbours, and the values themselves) and on the clamps (2^-6, 448);
    all-subnormal, all-zero and -0 blocks; NaN/Inf among finite blocks; float32 extremes. The
    other elements are E2M1 ties and near-ties of that block's scale, so every element
    decision boundary is hit under many scales."""
    vals = _e4m3_values()
    mids = [(a + b) / 2 for a, b in zip(vals, vals[1:])]
    maxima = []
    for t in vals + mids + [2.0**-7, 2.0**-10, 449.0, 464.0, 500.0, 1e4]:
        a = np.float32(6 * t)
        maxima += [a, np.nextafter(a, np.float32(0)), np.nextafter(a, np.float32(np.inf))]
    ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.5, 6.5, 0.5, 1.0, 3.0, 4.0, 0.0, -0.0],
                    np.float32)
    rows = []
    for a in maxima:
        sc = np.float32(np.float32(a) / np.float32(6))
        row = np.empty(16, np.float32)
        row[0] = a
        el = ties * max(sc, np.float32(2.0**-6))
        pert = np.where(rng.random(15) < 0.3, np.nextafter(el, np.float32(np.inf)), el)
        row[1:] = pert * np.where(rng.random(15) < 0.5, -1, 1).astype(np.float32)
        rows.append(rng.permutation(row))
    sub = (rng.integers(1, 1 << 23, (8, 16)) * np.where(rng.random((8, 16)) < 0.5, -1, 1)).astype(np.int32)
    rows += list(sub.view(np.float32))  # every element subnormal
    rows += [np.zeros(16, np.float32), np.full(16, -0.0, np.float32)]
    bad = rng.standard_normal((3, 16)).astype(np.float32)
    bad[0, 7], bad[1, 0], bad[2, 15] = np.nan, np.inf, -np.inf
    rows += list(bad)
    rows.append(np.array([3.4028235e38, -3.4e38, 1e-45, -1e-45] * 4, np.float32))
    x = np.concatenate(rows)
    # rows of 16 * 67 + 5: a work item (64 blocks) boundary, an odd block count and a short
    # last block in every row
    n = 16 * 67 + 5
    x = np.concatenate([x, rng.standard_normal((-x.size) % n).astype(np.float32)])
    return x.reshape(-1, n)


@pytest.mark.parametrize("fmt", [NV, NV2], ids=["single", "two_level"])
def test_numba_vs_referee_at_scale_and_element_boundaries(fmt):
    x = _scale_boundaries(np.random.default_rng(7))
    # p: automatic (two level) or given, from 2^-120 (bs / p overflows to the 448 clamp) to
    # values that put subnormal block maxima above E4M3's smallest normal
    for p in (None, 2.0**-120, 1e-30, 0.037, 3.0) if fmt is NV else (None,):
        got = mxsim.fake_quantize(x, fmt, per_tensor_scale=p)
        ref = RN.fake_quantize(x, fmt, per_tensor_scale=p)
        np.testing.assert_array_equal(_bits(got), _bits(ref))
        q = mxsim.quantize(x, fmt, per_tensor_scale=p)
        rc, rs, rp = RN.quantize(x, fmt, per_tensor_scale=p)
        np.testing.assert_array_equal(q.codes, rc.numpy())
        np.testing.assert_array_equal(q.scales, rs.numpy())
        assert q.tensor_scale == rp


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_matches_cpu():
    x = _adversarial(np.random.default_rng(4))
    for fmt in (NV, NV2):
        got = mxsim.fake_quantize(torch.from_numpy(x).cuda(), fmt).cpu().numpy()
        np.testing.assert_array_equal(_bits(got), _bits(mxsim.fake_quantize(x, fmt)))


# ----------------------------------------------------------------------------------------
# torchao, the independent reference

from torchao_ref import load as _load_torchao  # noqa: E402

_ao = _load_torchao()
if _ao:
    unpack_uint4 = _ao["kernels"].unpack_uint4
    AoNVFP4Tensor = _ao["nvfp4_tensor"].NVFP4Tensor
    nvfp4_quantize = _ao["nvfp4_tensor"].nvfp4_quantize
    per_tensor_amax_to_scale = _ao["nvfp4_tensor"].per_tensor_amax_to_scale
else:
    nvfp4_quantize = None


@pytest.mark.skipif(nvfp4_quantize is None, reason="torchao (optional) is not installed")
@pytest.mark.parametrize("two_level", [False, True])
def test_against_torchao(two_level):
    """Codes, scales and dequantized values equal torchao 0.18's nvfp4_quantize and
    NVFP4Tensor.dequantize (finite input; torchao keeps a finite block for Inf)."""
    rng = np.random.default_rng(5)
    x = _adversarial(rng)[:, :32]
    x = x[np.isfinite(x).all(axis=1)]
    x = np.concatenate([x, random_case(rng, 64, 32, "normal"), random_case(rng, 64, 32, "scaled_rows")])
    xt = torch.from_numpy(x)
    pts = per_tensor_amax_to_scale(xt.abs().max()) if two_level else None
    s, d = nvfp4_quantize(xt, 16, pts)
    q = mxsim.quantize(x, NV2 if two_level else NV)
    if two_level:
        assert q.tensor_scale == float(pts)
    np.testing.assert_array_equal(q.scales, s.view(torch.uint8).numpy())
    np.testing.assert_array_equal(q.codes, unpack_uint4(d).numpy().reshape(x.shape))
    ao = AoNVFP4Tensor.to_nvfp4(xt, per_tensor_scale=pts).dequantize(torch.float32).numpy()
    np.testing.assert_array_equal(_bits(mxsim.fake_quantize(x, NV2 if two_level else NV)), _bits(ao))


# ----------------------------------------------------------------------------------------
# matmul


def _pair(rng, M, K, N, fa, fb):
    a = random_case(rng, M, K, "normal")
    b = random_case(rng, K, N, "scaled_rows") if N > 1 else random_case(rng, K, 1, "normal")
    return mxsim.quantize(a, fa), mxsim.quantize(np.ascontiguousarray(b), fb, axis=0)


ACCS = ["exact", "fp32", "fp32:4", "fp32:1", mxsim.FixedPoint(24, 8), mxsim.FixedPoint(16, 4, "wrap"),
        mxsim.FixedPoint(64, 40)]


@pytest.mark.parametrize("two", [False, True])
def test_matmul_numba_vs_referee(two):
    rng = np.random.default_rng(6)
    qa, qb = _pair(rng, 5, 70, 4, NV2 if two else NV, NV2 if two else NV)
    qa.scales[0, 1] = 0x7F  # a NaN block: row 0 becomes NaN
    for acc in ACCS:
        got = mxsim.matmul(qa, qb, acc)
        ref = RN.matmul(torch.from_numpy(qa.codes), torch.from_numpy(qa.scales), torch.from_numpy(qb.codes),
                        torch.from_numpy(qb.scales), 16, acc, pa=qa.tensor_scale, pb=qb.tensor_scale).numpy()
        assert got.dtype == ref.dtype, acc
        np.testing.assert_array_equal(_bits(got), _bits(ref), err_msg=str(acc))
        assert np.all(np.isnan(got[0]))


def test_matmul_exact_is_the_dot_product_of_dequantized_values():
    """Single level, the exact accumulator: the exact sum of dequantized products (Fractions)
    rounded once to float64 (independent of the integer view)."""
    rng = np.random.default_rng(8)
    qa, qb = _pair(rng, 3, 48, 3, NV, NV)
    A, B = qa.dequantize().astype(np.float64), qb.dequantize().astype(np.float64)
    got = mxsim.matmul(qa, qb, "exact")
    for m in range(3):
        for n in range(3):
            want = sum(Fraction(float(A[m, i])) * Fraction(float(B[i, n])) for i in range(48))
            assert got[m, n] == float(want)


def test_matmul_fp32_is_fused_per_block():
    """Two blocks: 2^24 (block 1) then 1 + 2^-20 ... the second block's product 1.0 is lost
    to float32 rounding at 2^24 (ulp 2), so acc stays 2^24; ties to even."""
    a = np.zeros((1, 32), np.float32)
    b = np.zeros((32, 1), np.float32)
    a[0, 0], b[0, 0] = 6.0 * 448, 6.0 * 448 * (2**24 / (6 * 448) ** 2)  # exact in E2M1 x E4M3? build via codes
    qa, qb = mxsim.quantize(a, NV), mxsim.quantize(b, NV, axis=0)
    qa.codes[0, 16], qb.codes[16, 0], qa.scales[0, 1], qb.scales[1, 0] = 2, 2, 0x38, 0x38  # 1.0 * 1.0
    hi = float(mxsim.matmul(qa, qb, "exact")[0, 0]) - 1.0  # the first block's exact value
    got = mxsim.matmul(qa, qb, "fp32")[0, 0]
    want = np.float32(np.float32(hi) + np.float32(1.0))  # two float32 steps, each one rounding
    assert got == want


def test_matmul_bad_input():
    rng = np.random.default_rng(9)
    qa, qb = _pair(rng, 2, 32, 2, NV, NV)
    with pytest.raises(ValueError, match="both operands in NVFP4"):
        mxsim.matmul(qa, mxsim.quantize(np.ones((32, 2), np.float32), mxsim.MXINT4.with_block_size(16), axis=0))
    with pytest.raises(ValueError, match="lanes"):
        mxsim.matmul(qa, qb, "fp32:3")


# ----------------------------------------------------------------------------------------
# bad input


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="block_size: NVFP4 blocks are 16"):
        NV.with_block_size(32)
    with pytest.raises(ValueError, match="block_size"):
        mxsim.get_format("NVFP4/32")
    ext = mxsim.NVFP4Format(block_size=32, allow_any_block_size=True)
    assert mxsim.quantize(np.ones((1, 64), np.float32), ext).scales.shape == (1, 2)
    assert mxsim.get_format(mxsim.format_to_str(ext)) == ext
    x = np.ones(16, np.float32)
    for bad in (0.0, -1.0, float("nan"), float("inf"), 1e-40, "1"):
        with pytest.raises(ValueError, match="per_tensor_scale"):
            mxsim.quantize(x, NV, per_tensor_scale=bad)
    with pytest.raises(ValueError, match="per_tensor_scale applies to NVFP4 only"):
        mxsim.fake_quantize(x, mxsim.MXINT4, per_tensor_scale=1.0)
    with pytest.raises(ValueError, match="rounding"):
        mxsim.fake_quantize(x, NV, rounding="stochastic")
    assert mxsim.get_format("nvfp4_2l") == NV2 and mxsim.get_format("NVFP4/16") == NV


def test_host_copy_keeps_the_nvfp4_tensor_and_its_per_tensor_scale():
    """.cpu() of NVFP4 codes held as torch tensors (the device layout) stays an NVFP4Tensor with
    the same per-tensor scale: it came back a plain MXTensor without it, so a saved two-level
    layer would have lost its scale."""
    x = np.linspace(-3.0, 3.0, 64, dtype=np.float32).reshape(2, 32)
    q = mxsim.quantize(x, mxsim.NVFP4, axis=1, per_tensor_scale=0.5)
    dev = q._replace(torch.from_numpy(q.codes), torch.from_numpy(q.scales))
    host = dev.cpu()
    assert type(host) is type(q) and host.tensor_scale == 0.5
    assert np.array_equal(host.codes, q.codes) and np.array_equal(host.scales, q.scales)
