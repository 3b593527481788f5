"""mxsim.matmul: exact / fp32 / fixed-point accumulators, hand cases and bad input."""

from fractions import Fraction

import numpy as np
import pytest

import mxsim
from mxsim import FixedPoint, MXTensor


def mx(codes, scales, fmt, axis):
    fmt = mxsim.get_format(fmt)
    dt = np.uint8 if isinstance(fmt, mxsim.MXFPFormat) else np.int8
    codes = np.asarray(codes, dt)
    return MXTensor(codes, np.asarray(scales, np.uint8), fmt, axis, codes.shape)


def exact_fraction(a, b):
    """sum_j P_j 2^E_j with Python integers and Fractions, straight from the contract."""
    Ai, Bi = a.int_values(), b.int_values()
    ea, eb = a.scale_exponents(), b.scale_exponents()
    k = a.fmt.block_size
    q = a.fmt.quantum_log2 + b.fmt.quantum_log2
    out = np.empty((Ai.shape[0], Bi.shape[1]))
    for m in range(Ai.shape[0]):
        for n in range(Bi.shape[1]):
            tot = Fraction(0)
            for j in range(ea.shape[1]):
                p = sum(int(Ai[m, c]) * int(Bi[c, n]) for c in range(j * k, min(j * k + k, Ai.shape[1])))
                tot += Fraction(p) * Fraction(2) ** int(ea[m, j] + eb[j, n] + q)
            out[m, n] = float(tot)  # float(Fraction) rounds correctly
    return out


@pytest.mark.parametrize("fa,fb", [("MXINT8", "MXINT8"), ("MXINT4", "MXFP8_E4M3"), ("MXFP4_E2M1", "MXFP6_E2M3"),
                                   (mxsim.BlockFP(4, block_size=32), "MXINT8")])
def test_exact_equals_float64_dot_of_dequantized(fa, fb):
    r = np.random.default_rng(0)
    A = r.standard_normal((2, 5, 80)).astype(np.float32)  # batched a, short last block
    B = r.standard_normal((80, 7)).astype(np.float32)
    a, b = mxsim.quantize(A, fa), mxsim.quantize(B, fb, axis=0)
    got = mxsim.matmul(a, b)
    assert got.shape == (2, 5, 7) and got.dtype == np.float64
    # moderate exponents and K: the float64 dot product is exact here
    assert np.array_equal(got, a.dequantize(np.float64) @ b.dequantize(np.float64))


def test_exact_is_correctly_rounded_under_cancellation():
    # MXINT8, block 1: terms +2^80, +2^-30 * 3, -2^80 (codes 64*64 * 2^(s-6 + s-6))
    # naive float64 accumulation gives 0; the exact sum is 3 * 2^-30
    a = mx([[64, 64, 64]], [[127 + 46, 127 - 66, 127 + 46]], mxsim.MXINT8.with_block_size(1), 1)
    b = mx([[64], [48], [-64]], [[127 + 46], [127 + 30], [127 + 46]], mxsim.MXINT8.with_block_size(1), 0)
    # block 0: 4096 * 2^(46+46-12) = 2^92; block 1: 64*48 * 2^(-66+30-12) = 3 * 2^-38; block 2: -2^92
    assert mxsim.matmul(a, b)[0, 0] == 3 * 2.0**-38


def test_exact_wide_exponent_spread_matches_fractions():
    r = np.random.default_rng(1)
    fmt = mxsim.MXINT8.with_block_size(4)
    A = r.standard_normal((3, 12)) * np.repeat(2.0 ** r.integers(-90, 90, (3, 3)), 4, axis=1)
    B = r.standard_normal((12, 4)) * np.repeat(2.0 ** r.integers(-90, 90, (3, 4)), 4, axis=0)
    a, b = mxsim.quantize(A, fmt), mxsim.quantize(B, fmt, axis=0)
    assert np.array_equal(mxsim.matmul(a, b), exact_fraction(a, b))


def test_fp32_is_one_fused_rounding_per_step():
    # MXFP8_E4M3, block 2. Block 0: 1.0 * 1.0 -> acc = 1.0.
    # Block 1: ints 2^17 * 2^17 + 1 * 1 = 2^34 + 1, E = -20 - 20 - 9 - 9 = -58:
    # t = 2^-24 + 2^-58. Fused: fl32(1 + 2^-24 + 2^-58) = 1 + 2^-23 (just above the tie).
    # Two roundings: fl32(t) = 2^-24, then 1 + 2^-24 is a tie -> even -> 1.0.
    fmt = mxsim.MXFP8_E4M3.with_block_size(2)
    a = mx([[0x38, 0x00, 0x78, 0x01]], [[127, 107]], fmt, 1)
    b = mx([[0x38], [0x00], [0x78], [0x01]], [[127], [107]], fmt, 0)
    out = mxsim.matmul(a, b, "fp32")
    assert out.dtype == np.float32 and out[0, 0] == np.float32(1 + 2**-23)
    # one lane per step: 2^-24 alone ties back to 1.0, and 2^-58 is lost
    assert mxsim.matmul(a, b, "fp32", lanes=1)[0, 0] == np.float32(1.0)
    # exact: 1 + 2^-24 + 2^-58 rounded once to float64 -> 1 + 2^-24
    assert mxsim.matmul(a, b)[0, 0] == 1 + 2.0**-24


def test_fp32_overflow_goes_to_inf():
    fmt = mxsim.MXINT8.with_block_size(1)
    a = mx([[64, 64]], [[127 + 127, 127 + 127]], fmt, 1)  # 2^127 each
    b = mx([[64], [64]], [[127 + 1], [127]], fmt, 0)
    # 2^128 does not fit float32
    assert np.isinf(mxsim.matmul(a, b, "fp32")[0, 0])
    assert mxsim.matmul(a, b)[0, 0] == 2.0**128 + 2.0**127


def _ones(vals_a, vals_b, fmt="MXINT8"):
    fmt = mxsim.get_format(fmt).with_block_size(2)
    a = mxsim.quantize(np.array([vals_a], np.float32), fmt)
    b = mxsim.quantize(np.array(vals_b, np.float32)[:, None], fmt, axis=0)
    return a, b


def test_fixed_point_truncates_toward_minus_infinity():
    # block [1, .75]x[1, .75]: codes 64, 48 -> P = 4096 + 2304 = 6400, E = -12 -> 1.5625
    a, b = _ones([1.0, 0.75], [1.0, 0.75])
    assert mxsim.matmul(a, b, FixedPoint(8, 1))[0, 0] == 1.5  # floor(3.125) = 3 -> 3/2
    a, b = _ones([-1.0, -0.75], [1.0, 0.75])
    assert mxsim.matmul(a, b, FixedPoint(8, 1))[0, 0] == -2.0  # floor(-3.125) = -4


def test_fixed_point_saturate_and_wrap():
    # two blocks, each [1, 1].[1, 1] = 2.0 -> aligned 4 with 1 fraction bit; 4 + 4 = 8
    a, b = _ones([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    assert mxsim.matmul(a, b, FixedPoint(5, 1))[0, 0] == 4.0  # 8 fits in [-16, 15]
    assert mxsim.matmul(a, b, FixedPoint(4, 1, "saturate"))[0, 0] == 3.5  # 8 -> 7
    assert mxsim.matmul(a, b, FixedPoint(4, 1, "wrap"))[0, 0] == -4.0  # 8 - 16 = -8
    # a single block already out of range: aligned itself is clamped (saturate) or wrapped
    a, b = _ones([1.0, 1.0], [1.0, 1.0])
    assert mxsim.matmul(a, b, FixedPoint(3, 1, "saturate"))[0, 0] == 1.5  # 4 -> 3
    assert mxsim.matmul(a, b, FixedPoint(3, 1, "wrap"))[0, 0] == -2.0  # 4 - 8 = -4
    # 64-bit accumulator, huge shift: saturates at 2^63 - 1
    big = mxsim.matmul(a, b, FixedPoint(64, 70))[0, 0]
    assert big == float(2**63 - 1) * 2.0**-70


def test_nan_scale_gives_nan_row_and_column():
    r = np.random.default_rng(2)
    A = r.standard_normal((3, 64)).astype(np.float32)
    A[1, 40] = np.nan
    B = r.standard_normal((64, 2)).astype(np.float32)
    B[3, 1] = np.inf
    a, b = mxsim.quantize(A, "MXINT8"), mxsim.quantize(B, "MXINT8", axis=0)
    for acc in ("exact", "fp32", FixedPoint(32, 16)):
        out = mxsim.matmul(a, b, acc)
        assert np.isnan(out[1]).all() and np.isnan(out[:, 1]).all()
        assert np.isfinite(out[[0, 2], 0]).all()


def test_datapath_widths():
    w = mxsim.datapath_widths("MXINT8", "MXINT8", 32)
    # 8 + 8 - 1 = 15-bit products, 5 levels of +1 bit, two 8-bit exponents -> 9-bit adder
    assert (w["product_bits"], w["adder_tree_widths"], w["exponent_adder_bits"]) == (15, [16, 17, 18, 19, 20], 9)
    w = mxsim.datapath_widths("MXINT4", mxsim.MXINT4, 8)
    assert (w["product_bits"], w["adder_tree_widths"]) == (7, [8, 9, 10])
    assert w["operand_bits"] == [4, 4]
    # E2M1 ints up to 6 / 2^-1 = 12 (4 magnitude bits + sign = 5); 144 -> 8 magnitude bits + sign
    assert mxsim.datapath_widths("MXFP4_E2M1", "MXFP4_E2M1", 1) == {
        "operand_bits": [5, 5], "product_bits": 9, "adder_tree_levels": 0, "adder_tree_widths": [], "sum_bits": 9,
        "exponent_adder_bits": 9, "lanes": 1}
    assert mxsim.datapath_widths("MXINT8", "MXINT8", 10 // 5 * 8)["adder_tree_levels"] == 4


def test_bad_matmul_input():
    x = np.ones((4, 64), np.float32)
    a = mxsim.quantize(x, "MXINT8")
    b = mxsim.quantize(x.T.copy(), "MXINT8", axis=0)
    cases = [
        (lambda: mxsim.matmul(a, mxsim.quantize(x.T.copy(), "MXINT8/16", axis=0)), "block size"),
        (lambda: mxsim.matmul(a, mxsim.quantize(np.ones((32, 4), np.float32), "MXINT8", axis=0)), "K"),
        (lambda: mxsim.matmul(a, mxsim.quantize(x.T.copy(), "MXINT8", axis=1)), "axis 0"),
        (lambda: mxsim.matmul(mxsim.quantize(x, "MXINT8", axis=0), b), "last axis"),
        (lambda: mxsim.matmul(a, b, "fp32", lanes=5), "lanes"),
        (lambda: mxsim.matmul(a, b, "fp16"), "accumulator"),
        (lambda: mxsim.matmul(x, b), "MXTensor"),
        (lambda: FixedPoint(65, 3), "total_bits"),
        (lambda: FixedPoint(1, 0), "total_bits"),
        (lambda: FixedPoint(32, 1.5), "frac_bits"),
        (lambda: FixedPoint(32, 8, "clip"), "overflow"),
        (lambda: mxsim.datapath_widths("MXINT8", "MXINT8", 3), "lanes"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_limb_plan_and_split_by_hand():
    from mxsim.datapath import limb_plan, split_limbs

    # MXINT8 block of 32: 127 * 127 * 32 = 516128 < 2^24 -> float32 GEMM
    assert limb_plan(127, 127, 32) == (np.float32, 1, 0)
    # E4M3 x E4M3: 229376^2 * 32 ~ 2^40.6 < 2^53 -> float64, one limb
    assert limb_plan(229376, 229376, 32) == (np.float64, 1, 0)
    # E5M2 x E5M2: max int 7 * 2^29; 7 * 2^29 * 32 has 37 bits -> limbs of 53 - 37 = 16 bits, 2 of them
    e5 = 7 * 2**29
    assert mxsim.MXFP8_E5M2.max_int == e5
    assert limb_plan(e5, e5, 32) == (np.float64, 2, 16)
    # -70000 = -(1 * 2^16 + 4464): sign-magnitude limbs
    assert split_limbs(np.array([[-70000, 5]]), 2, 16).tolist() == [[[-4464, 5]], [[-1, 0]]]
