"""mxsim.matmul (numba path) against reference.matmul, bit for bit, for every accumulator,
lanes options, format mixes (MXINT8 x MXINT4, MXFP incl. the wide MXFP8_E5M2 products that
need split limbs, BlockFP), block sizes
16/32/7 (7: K is not a block multiple), on quantized random inputs and on adversarial
code/scale tensors built directly: full scale range (fp32 overflow to Inf, underflow to
signed zero), NaN scales, cancellation, the hand-worked double-rounding case."""

import numpy as np
import pytest
import torch

import mxsim
from mxsim.tensor import MXTensor
from mxsim import FP32, Exact, FixedPoint
from mxsim.validate import compare_matmul, compare_matmul_tensors, random_case

ACCS = [Exact(), FP32(), FixedPoint(32, 16, "saturate"), FixedPoint(24, 8, "wrap"), FixedPoint(64, 40, "wrap"),
        FixedPoint(16, 0, "saturate"), FixedPoint(8, -2, "saturate"), FixedPoint(20, 30, "wrap")]
PAIRS = [
    (mxsim.MXINT8, mxsim.MXINT8), (mxsim.MXINT8, mxsim.MXINT4), (mxsim.MXINT4, mxsim.MXINT8),
    (mxsim.MXINT2, mxsim.MXINT6), (mxsim.MXFP8_E4M3, mxsim.MXFP8_E4M3), (mxsim.MXFP6_E3M2, mxsim.MXFP6_E2M3),
    (mxsim.MXFP4_E2M1, mxsim.MXFP4_E2M1), (mxsim.MXFP8_E4M3, mxsim.MXINT8), (mxsim.BlockFP(4), mxsim.BlockFP(8)),
    (mxsim.BlockFP(4), mxsim.MXINT8),
    # E5M2 x E5M2 / x E4M3 block sums reach 2^68.6 / 2^54.6 (beyond int64 / float64): limbs
    (mxsim.MXFP8_E5M2, mxsim.MXFP8_E5M2), (mxsim.MXFP8_E5M2, mxsim.MXFP8_E4M3), (mxsim.MXINT8, mxsim.MXFP8_E5M2),
]


def _pid(p):
    return f"{p[0].name}x{p[1].name}"


def _ok(res, ctx):
    n, bad, msg = res
    assert bad == 0, f"{ctx}: {bad}/{n} differ, first {msg}"


def _random_codes(rng, fmt, shape):
    if isinstance(fmt, mxsim.MXFPFormat):
        nbits = fmt.element_bits
        c = rng.integers(0, 2**nbits, size=shape)
        if fmt.exponent_bits == 4:  # E4M3: S.1111.111 is NaN, never produced by quantize
            c = np.where((c & 0x7F) == 0x7F, c ^ 1, c)
        if fmt.exponent_bits == 5:  # E5M2: exponent 11111 is Inf/NaN, never produced (saturation)
            c = np.where((c & 0x7C) == 0x7C, c ^ 0x04, c)
        return c.astype(np.uint8)
    return rng.integers(-fmt.max_code, fmt.max_code + 1, size=shape).astype(np.int8)


def _tensor(codes, scales, fmt, axis):
    return MXTensor(codes=np.ascontiguousarray(codes), scales=np.ascontiguousarray(scales.astype(np.uint8)),
                    fmt=fmt, axis=axis, shape=tuple(codes.shape))


def _scales(rng, fmt, shape, regime):
    top = fmt.nan_code - 1 if isinstance(fmt, mxsim.BlockFP) else 254
    if regime == "narrow":
        s = rng.integers(118, 136, size=shape)
    elif regime == "wide":
        s = rng.integers(0, top + 1, size=shape)
    elif regime == "high":
        s = rng.integers(top - 20, top + 1, size=shape)  # fp32 overflow to Inf
    elif regime == "low":
        s = rng.integers(0, 20, size=shape)  # fp32 underflow, signed zeros
    else:
        raise ValueError(regime)
    return np.minimum(s, top)


def _grid(options):
    """All pairs x options; the default run keeps a covering subset (options cycle across
    pairs, two per pair), the rest is marked slow."""
    out = []
    for pi, pair in enumerate(PAIRS):
        fast = {options[pi % len(options)], options[(pi + 1) % len(options)]}
        for o in options:
            out.append(pytest.param(pair, o, marks=() if o in fast else (pytest.mark.slow,), id=f"{_pid(pair)}-{o}"))
    return out


@pytest.mark.parametrize("pair,block", _grid([16, 32, 7]))
def test_matmul_quantized_random(pair, block):
    fa, fb = pair[0].with_block_size(block), pair[1].with_block_size(block)
    rng = np.random.default_rng(block)
    # rows and columns of three distributions in one call per accumulator
    a = np.concatenate([random_case(rng, 2, 50, kind) for kind in ("normal", "scaled_rows", "wide")])
    b = np.ascontiguousarray(np.concatenate([random_case(rng, 1, 50, kind) for kind in ("normal", "scaled_rows", "wide")]).T)
    for acc in ACCS:
        _ok(compare_matmul(a, b, fa, fb, acc), f"{fa.name}x{fb.name} {acc}")
    for lanes in [d for d in (1, 4) if block % d == 0]:
        _ok(compare_matmul(a, b, fa, fb, FP32(lanes)), f"{fa.name}x{fb.name} fp32 lanes={lanes}")


@pytest.mark.parametrize("pair,regime", _grid(["narrow", "wide", "high", "low"]))
def test_matmul_adversarial_codes(pair, regime):
    k = 16
    fa, fb = pair[0].with_block_size(k), pair[1].with_block_size(k)
    rng = np.random.default_rng(hash((pair[0].name, pair[1].name, regime)) % 2**32)
    M, K, N = 4, 3 * k + 5, 3
    nb = -(-K // k)
    ac = _random_codes(rng, fa, (M, K))
    bc = _random_codes(rng, fb, (K, N))
    # cancellation: row 0 block 1 = -(block 0) with equal scales (MXINT/BlockFP codes)
    asc = _scales(rng, fa, (M, nb), regime)
    bsc = _scales(rng, fb, (nb, N), regime)
    if not isinstance(fa, mxsim.MXFPFormat):
        ac[0, k:2 * k] = -ac[0, :k]
        asc[0, 1] = asc[0, 0]
        bc[k:2 * k] = bc[:k]
        bsc[1] = bsc[0]
    # a NaN scale in one block of row 3 and one column of b
    nan_a = fa.nan_code if isinstance(fa, mxsim.BlockFP) else 255
    nan_b = fb.nan_code if isinstance(fb, mxsim.BlockFP) else 255
    asc[3, 1] = nan_a
    bsc[2, 2] = nan_b
    qa, qb = _tensor(ac, asc, fa, 1), _tensor(bc, bsc, fb, 0)
    for acc in ACCS:
        _ok(compare_matmul_tensors(qa, qb, acc), f"{regime} {acc}")
    for lanes in (1, 4):
        _ok(compare_matmul_tensors(qa, qb, FP32(lanes)), f"{regime} fp32 lanes={lanes}")


def test_matmul_fused_rounding_case():
    # the hand-worked case of test_reference: exact 2^40 + 2^16 (float64), fused fp32 2^40 + 2^17
    f = mxsim.MXFP8_E4M3.with_block_size(2)
    ac = np.array([[0x78, 0, 0x78, 0x01]], np.uint8)
    asc = np.array([[139, 127]], np.uint8)
    qa = _tensor(ac, asc, f, 1)
    qb = _tensor(ac.T.copy(), asc.T.copy(), f, 0)
    assert float(mxsim.matmul(qa, qb, accumulator=Exact())[0, 0]) == 2.0**40 + 2.0**16
    assert float(mxsim.matmul(qa, qb, accumulator=FP32())[0, 0]) == 2.0**40 + 2.0**17
    for acc in ACCS:
        _ok(compare_matmul_tensors(qa, qb, acc), f"{acc}")


def test_matmul_e5m2_largest_products_exact():
    # every element at E5M2's max normal 57344 = 7 * 2^13 (int 7 * 2^29 in units of 2^-16):
    # a block of 32 sums to 32 * 49 * 2^58 = 49 * 2^63, beyond int64. Hand value of the
    # dequantized dot product: 32 * 57344^2 * 2^(2s) with both scales s = 0.
    f = mxsim.MXFP8_E5M2
    a = MXTensor(np.full((1, 32), 0x7B, np.uint8), np.full((1, 1), 127, np.uint8), f, 1, (1, 32))
    b = MXTensor(np.full((32, 1), 0x7B, np.uint8), np.full((1, 1), 127, np.uint8), f, 0, (32, 1))
    want = 32 * 57344.0**2
    assert mxsim.matmul(a, b)[0, 0] == want
    assert mxsim.matmul(a, b, "fp32")[0, 0] == np.float32(want)
    assert mxsim.matmul(a, b, mxsim.FixedPoint(64, 0))[0, 0] == want  # 2^36.6 fits
    assert mxsim.matmul(a, b, mxsim.FixedPoint(32, 0))[0, 0] == 2.0**31 - 1  # saturates
    for acc in ACCS:
        _ok(compare_matmul_tensors(a, b, acc), f"{acc}")


@pytest.mark.parametrize("acc,want_row1", [(mxsim.FixedPoint(9, 0), 255.0), (mxsim.FixedPoint(9, 0, "wrap"), -256.0),
                                           (mxsim.FixedPoint(8, 0), 127.0)], ids=str)
def test_return_overflow_by_hand(acc, want_row1):
    """Rows of 32 x 1.0, 32 x 8.0 and 32 x -4.0 (exact in MXINT8) times a column of ones: sums
    32, 256 and -128. 256 is beyond every accumulator here: saturated to 2^(W-1) - 1 or wrapped
    to 256 - 512 (W = 9), so row 1 is overflowed; -128 is the 8-bit minimum itself, so row 2 is
    not (nor row 0)."""
    a = np.array([[1.0] * 32, [8.0] * 32, [-4.0] * 32])
    qa, qb = mxsim.quantize(a, "MXINT8", axis=1), mxsim.quantize(np.ones((32, 2)), "MXINT8", axis=0)
    out, over = mxsim.matmul(qa, qb, acc, return_overflow=True)
    assert np.array_equal(out, [[32.0] * 2, [want_row1] * 2, [-128.0] * 2])
    assert over.dtype == bool and np.array_equal(over, [[False] * 2, [True] * 2, [False] * 2])


def test_return_overflow_needs_a_fixed_point():
    q = mxsim.quantize(np.ones((2, 32)), "MXINT8", axis=1)
    qb = mxsim.quantize(np.ones((32, 2)), "MXINT8", axis=0)
    for acc in ("exact", "fp32", mxsim.FP32(4)):
        with pytest.raises(ValueError, match="return_overflow needs a FixedPoint accumulator.*allowed: fixed"):
            mxsim.matmul(q, qb, acc, return_overflow=True)
