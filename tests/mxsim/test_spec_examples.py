"""Hand-worked examples of docs/mxsim_semantics.md, arithmetic in the comments."""

import math

import numpy as np
import pytest

import mxsim
from mxsim import BlockFP

NAN = float("nan")


def fq(x, fmt, **kw):
    return mxsim.fake_quantize(np.asarray(x, np.float32), fmt, **kw)


def q(x, fmt, **kw):
    return mxsim.quantize(np.asarray(x, np.float32), fmt, **kw)


def test_mxint8_basic_block():
    # amax 3 -> floor(log2 3) = 1 -> s = 1 (code 128); q = -6, v = x * 2^-(1-6) = 32 x
    t = q([1.0, 0.5, -0.25, 3.0], "MXINT8")
    assert t.codes.tolist() == [32, 16, -8, 96]
    assert t.scales.tolist() == [128]
    assert t.dequantize().tolist() == [1.0, 0.5, -0.25, 3.0]


@pytest.mark.parametrize("rounding,codes", [
    # s = 1, q = -2: v = 2x = [2, 1, -0.5, 6]; -0.5 is a tie
    ("nearest_even", [2, 1, 0, 6]),
    ("nearest_away", [2, 1, -1, 6]),
    ("floor", [2, 1, 0, 6]),
])
def test_mxint4_rounding_of_a_tie(rounding, codes):
    t = q([1.0, 0.5, -0.25, 3.0], "MXINT4", rounding=rounding)
    assert t.codes.tolist() == codes
    y = fq([1.0, 0.5, -0.25, 3.0], "MXINT4", rounding=rounding)
    assert y.tolist() == [c * 0.5 for c in codes]  # value = c * 2^(s+q) = c / 2
    assert math.copysign(1.0, y[2]) == (1.0 if codes[2] == 0 else -1.0)  # code 0 is +0.0


@pytest.mark.parametrize("rounding,code", [("nearest_even", 2), ("nearest_away", 3), ("floor", 2)])
def test_mxint8_tie_at_two_and_a_half(rounding, code):
    # amax 1 -> s = 0, v = 64 x; 2.5 * 2^-6 -> v = 2.5
    t = q([1.0, 2.5 * 2**-6, -3.5 * 2**-6, 0.9 * 2**-6], "MXINT8", rounding=rounding)
    # -3.5 -> even -4, away -4, toward zero -3; 0.9 -> 1, 1, 0
    other = {"nearest_even": [-4, 1], "nearest_away": [-4, 1], "floor": [-3, 0]}[rounding]
    assert t.codes.tolist() == [64, code] + other


def test_mxint_clamps_symmetrically():
    # amax 1.99 -> s = 0; MXINT4 v = 4x: 7.96 -> 8 -> clamp 7 (1.75); -7.96 -> -7, never -8
    t = q([1.99, -1.99, 0.1], "MXINT4")
    assert t.codes.tolist() == [7, -7, 0]
    assert t.dequantize().tolist() == [1.75, -1.75, 0.0]


def test_mxint_nan_inf_and_zero_blocks():
    fmt = mxsim.MXINT8.with_block_size(2)
    t = q([1.0, NAN, np.inf, 2.0, 0.0, -0.0], fmt)
    assert t.scales.tolist() == [0xFF, 0xFF, 0]  # NaN, Inf -> NaN scale; zero block s = -127
    assert t.codes.tolist() == [0, 0, 0, 0, 0, 0]
    y = fq([1.0, NAN, np.inf, 2.0, 0.0, -0.0], fmt)
    assert np.isnan(y[:4]).all() and y[4:].tolist() == [0.0, 0.0]
    assert math.copysign(1, y[5]) == 1.0


def test_short_last_block_and_nbits():
    # block 2: [1, .5] s = 0 -> v = 64x; [3] alone s = 1 -> v = 32x
    t = q([1.0, 0.5, 3.0], mxsim.MXINT8.with_block_size(2))
    assert t.codes.tolist() == [64, 32, 96]
    assert t.scales.tolist() == [127, 128]
    assert t.nbits == 3 * 8 + 2 * 8  # the short block stores only its element


def test_mxint_scale_clamps_at_minus_127():
    # float32 subnormal amax 2^-130: floor(log2) = -130 -> clamped to s = -127; MXINT8 v = x * 2^133
    t = q([2.0**-130, 2.0**-131], "MXINT8")
    assert t.scales.tolist() == [0]
    assert t.codes.tolist() == [8, 4]


def test_mxfp4_e2m1_codes():
    # amax 3: floor(log2 3) - emax(2) = -1 -> v = 2x = [2, 1, -0.5, 6]
    # 2 = 1.0*2^1 -> 0|10|0 = 4; 1 -> 0|01|0 = 2; -0.5 subnormal (step 0.5) -> 1|00|1 = 9; 6 = 1.5*2^2 -> 0|11|1 = 7
    t = q([1.0, 0.5, -0.25, 3.0], "MXFP4_E2M1")
    assert t.codes.tolist() == [4, 2, 9, 7]
    assert t.scales.tolist() == [126]
    assert t.dequantize().tolist() == [1.0, 0.5, -0.25, 3.0]


@pytest.mark.parametrize("rounding,val", [("nearest_even", 6.0), ("floor", 6.0)])
def test_mxfp4_saturates(rounding, val):
    # amax 7 -> s = 2 - 2 = 0; 7 in binade 4 (step 2): 3.5 -> 4 -> 8 > 6 -> saturate 6; floor 3 -> 6
    t = q([7.0, 6.0], "MXFP4_E2M1", rounding=rounding)
    assert t.codes.tolist() == [7, 7]
    assert fq([7.0, 6.0], "MXFP4_E2M1", rounding=rounding).tolist() == [val, 6.0]


def test_mxfp8_e4m3_codes_and_subnormal():
    # amax 3 -> s = 1 - 8 = -7, v = 128 x: 128 = 2^7 -> exp 7+7 = 14 -> 0x70; 384 = 1.5*2^8 -> 0x7C
    assert q([1.0, 3.0], "MXFP8_E4M3").codes.tolist() == [0x70, 0x7C]
    # amax 256 -> s = 0; 2^-9 is the smallest subnormal (step 2^(-6-3)) -> code 1; 256 -> exp 15 -> 0x78
    t = q([256.0, 2.0**-9, 2.0**-11], "MXFP8_E4M3")
    assert t.codes.tolist() == [0x78, 0x01, 0x00]
    assert t.dequantize().tolist() == [256.0, 2.0**-9, 0.0]


def test_mxfp_negative_zero_keeps_sign():
    # semantics clarification: -0.0 in a non-zero block keeps the sign bit (code 0x80)
    # amax 1 -> s = 0 - 8 = -8; v = 2^8 -> biased exponent 8 + 7 = 15 -> 0x78
    assert q([1.0, -0.0], "MXFP8_E4M3").codes.tolist() == [0x78, 0x80]
    # s = 0 - 8 = -8; -2^-30 * 2^8 = -2^-22, below half the subnormal step 2^-9 -> rounds to -0
    y = fq([1.0, -0.0, -(2.0**-30)], "MXFP8_E4M3")
    assert y[1] == 0 and math.copysign(1, y[1]) == -1 and math.copysign(1, y[2]) == -1


def test_blockfp_basic_block():
    # e = ceil(log2 3) = 2; m = round(|x| * 2^(3-2)): 2, 1, round(0.5) = 0 (0.25 + 1e-9 == 0.25 in float32), 6
    t = q([1.0, 0.5, -0.25, 3.0], BlockFP(4))
    assert t.codes.tolist() == [2, 1, 0, 6]
    assert t.scales.tolist() == [2 + 127]
    y = fq([1.0, 0.5, -0.25, 3.0], BlockFP(4))
    assert y.tolist() == [1.0, 0.5, 0.0, 3.0] and math.copysign(1, y[2]) == -1.0  # sgn -1, m 0 -> -0.0


def test_blockfp_power_of_two_max_is_clipped():
    # max 1.0: e = 0, m = round(8) = 8 -> clamp 7 -> 7/8 (lqer_facts)
    assert fq([1.0, 0.5], BlockFP(4)).tolist() == [0.875, 0.5]


def test_blockfp_zero_block_borrows_smallest_max():
    # block 2: maxima [0, 0.5] -> the zero block uses 0.5 -> e = -1 for both (codes 126)
    t = q([0.0, 0.0, 0.5, 0.25], BlockFP(4, block_size=2))
    assert t.scales.tolist() == [126, 126]
    # 0.5 * 2^(3+1) = 8 -> clamp 7 -> 7 * 2^-4; 0.25 -> 4 -> 0.25
    assert t.dequantize().tolist() == [0.0, 0.0, 0.4375, 0.25]
    # every block max 0 -> all maxima 1 -> e = 0 (code 127)
    assert q([0.0, 0.0, 0.0], BlockFP(4, block_size=2)).scales.tolist() == [127, 127]


def test_blockfp_log2_quirk_above_power_of_two():
    # amax = 16 (1 + 2^-23): log2 = 4 + 1.72e-7 < 4 + half an ulp (2^-22) -> fl32 gives 4.0 -> e = 4 (not 5)
    a = np.float32(16.0) * np.float32(1 + 2**-23)
    t = q([a], BlockFP(4))
    assert t.scales.tolist() == [4 + 127]
    assert t.codes.tolist() == [7]  # m = round(8.000001) = 8 -> clamp 7
    # but just above 2 (|k| < 4) the float32 log2 stays above the integer -> e = 2
    assert q([np.float32(2.0) * np.float32(1 + 2**-23)], BlockFP(4)).scales.tolist() == [2 + 127]


def test_blockfp_tiny_values_pass_through():
    x = [1.0, 5e-9, -1e-8]
    y = fq(x, BlockFP(4))
    assert y[1] == np.float32(5e-9) and y[2] == np.float32(-1e-8)
    assert q(x, BlockFP(4)).codes.tolist() == [7, 0, 0]
    y = fq(x, BlockFP(4, zero_passthrough=False))
    assert y[1] == 0.0 and y[2] == 0.0


def test_blockfp_nan_block():
    t = q([1.0, NAN], BlockFP(4))
    assert t.scales.tolist() == [255] and np.isnan(t.dequantize()).all()
    assert np.isnan(fq([np.inf, 1.0], BlockFP(4))).all()


def _lowbias32(x):
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 + 7])
def test_stochastic_rounding_follows_the_hash(seed):
    # MXINT8, amax 1 -> s = 0, v = 64 x; element 1 has v = 0.5 and element 2 v = -1.25:
    # up iff f >= 1 - u, u = (h >> 8) / 2^24, h = lowbias32(lowbias32(seed ^ 0x9E3779B9) ^ i)
    def u(i):
        h = _lowbias32(_lowbias32((seed & 0xFFFFFFFF) ^ 0x9E3779B9) ^ i)
        return (h >> 8) * 2.0**-24

    t = q([1.0, 0.5 * 2**-6, -1.25 * 2**-6], "MXINT8", rounding="stochastic", seed=seed)
    assert t.codes[1] == (1 if 0.5 >= 1 - u(1) else 0)
    assert t.codes[2] == (-2 if 0.25 >= 1 - u(2) else -1)


def test_stochastic_rounding_is_unbiased_and_reproducible():
    x = np.full(20000, 0.3 * 2**-6, np.float32)
    x[::32] = 1.0  # every block has amax 1 -> v = 0.3 elsewhere
    a = mxsim.quantize(x, "MXINT8", rounding="stochastic", seed=3).codes
    b = mxsim.quantize(x, "MXINT8", rounding="stochastic", seed=3).codes
    c = mxsim.quantize(x, "MXINT8", rounding="stochastic", seed=4).codes
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    rest = np.ones(x.size, bool)
    rest[::32] = False
    assert abs(a[rest].mean() - 0.3) < 0.02


def test_blockfp_tiny_block_codes_saturate_from_the_nudge():
    # amax ~5.5e-31 -> e = ceil(log2) = -100; v = fl32(|x| + 1e-9) = 1e-9 (x is lost),
    # m = round(1e-9 * 2^(3+100)) ~ 1e22 -> clamp 7 (the authors' nudge dominates tiny blocks)
    t = q([5.522026e-31, 1e-31], BlockFP(4))
    assert t.scales.tolist() == [127 - 100]
    assert t.codes.tolist() == [7, 7]
