"""Hand-worked examples for the referee (mxsim/reference.py).

Every expected value below is worked out by hand from docs/mxsim_semantics.md, the OCP MX
v1.0 element tables, or the LQER authors' described BlockFP code; the arithmetic is in the
comments. Nothing here is copied from an implementation's output.
"""

import math

import numpy as np
import pytest
import torch

import mxsim
from mxsim import FP32, Exact, FixedPoint
from mxsim import reference as R
from mxsim.formats import BlockFP

F32 = torch.float32


def t32(*v):
    return torch.tensor([list(v)], dtype=F32)


def fq(x, fmt, **kw):
    return R.fake_quantize(x, fmt, **kw)[0].tolist()


def codes_scales(x, fmt, **kw):
    c, s = R.quantize(x, fmt, **kw)
    return c[0].tolist(), s[0].tolist()


def same_bits(a, b):
    a, b = a.contiguous(), b.contiguous()
    assert a.dtype == b.dtype and a.shape == b.shape
    ib = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
    return torch.equal(a.view(ib[a.dtype]), b.view(ib[b.dtype]))


# ----------------------------------------------------------------------------- MXINT


def test_mxint8_basic_and_ties():
    f = mxsim.MXINT8.with_block_size(4)
    # amax = 1 -> floor(log2) = 0 -> s = 0, scale code 127; q = -6 so v = x * 2^6:
    # [64, 32, -16, 0.5]; 0.5 is a tie: even -> 0, away -> 1, floor -> 0.
    x = t32(1.0, 0.5, -0.25, 2.0**-7)
    assert codes_scales(x, f) == ([64, 32, -16, 0], [127])
    assert fq(x, f) == [1.0, 0.5, -0.25, 0.0]
    assert codes_scales(x, f, rounding="nearest_away") == ([64, 32, -16, 1], [127])
    assert fq(x, f, rounding="nearest_away") == [1.0, 0.5, -0.25, 2.0**-6]
    assert codes_scales(x, f, rounding="floor")[0] == [64, 32, -16, 0]
    # 1.5 steps -> even gives 2, away 2; -2.5 steps -> even -2, away -3, floor -2
    x = t32(1.0, 1.5 * 2**-6, -2.5 * 2**-6, 0.0)
    assert codes_scales(x, f)[0] == [64, 2, -2, 0]
    assert codes_scales(x, f, rounding="nearest_away")[0] == [64, 2, -3, 0]
    assert codes_scales(x, f, rounding="floor")[0] == [64, 1, -2, 0]


def test_mxint8_saturation_symmetric():
    f = mxsim.MXINT8.with_block_size(2)
    # amax = 1.999 -> floor(log2) = 0, s = 0; v = 1.999 * 64 = 127.936 -> 128 -> clamp 127.
    # -1.999 -> -127 (symmetric: -128 is never produced). Value 127/64 = 1.984375.
    x = t32(1.999, -1.999)
    assert codes_scales(x, f) == ([127, -127], [127])
    assert fq(x, f) == [1.984375, -1.984375]
    # amax = 3 -> s = 1: value grid 2^(1-6) = 1/32; 3 * 32 = 96
    assert codes_scales(t32(3.0, -0.015625), f) == ([96, 0], [128])


def test_mxint4_and_mxint2():
    f4 = mxsim.MXINT4.with_block_size(4)
    # amax 3 -> s = 1, q = -2: v = x * 2^(-(1-2)) = 2x = [6, 2.4, -1.2, 0.2] -> [6, 2, -1, 0];
    # value c * 2^(s+q) = c/2.
    x = t32(3.0, 1.2, -0.6, 0.1)
    assert codes_scales(x, f4) == ([6, 2, -1, 0], [128])
    assert fq(x, f4) == [3.0, 1.0, -0.5, 0.0]
    # 3.9 -> v = 7.8 -> 8 -> clamp 7 -> 3.5
    assert fq(t32(3.9, 0, 0, 0), f4)[0] == 3.5
    f2 = mxsim.MXINT2.with_block_size(4)
    # MXINT2: q = 0, codes in {-1, 0, 1}. amax 1.5 -> s = 0: v = x: [1, 0.6, -0.4, -1.5]
    # -> [1, 1, 0, -2 -> clamp -1]
    assert codes_scales(t32(1.0, 0.6, -0.4, -1.5), f2) == ([1, 1, 0, -1], [127])
    assert fq(t32(1.0, 0.6, -0.4, -1.5), f2) == [1.0, 1.0, 0.0, -1.0]


def test_mxint_scale_clamps_and_tiny():
    f = mxsim.MXINT8.with_block_size(1)
    # float32 max ~ 2^128: floor(log2) = 127 = SCALE_EXP_MAX -> code 254
    assert codes_scales(t32(3.0e38), f)[1] == [254]
    # 2^-149 (smallest subnormal): floor(log2) = -149 -> clamp to -127 (code 0);
    # v = 2^-149 * 2^(127+6) = 2^-16 -> 0. A block max of 2^-120 keeps s = -120.
    assert codes_scales(t32(2.0**-149), f) == ([0], [0])
    assert codes_scales(t32(2.0**-120), f) == ([64], [7])
    # s = -127 and v = 2^-127 * 2^133 = 64 exactly: subnormal float32 input, exact result
    assert codes_scales(t32(2.0**-127), f) == ([64], [0])
    assert fq(t32(2.0**-127), f) == [2.0**-127]


# ----------------------------------------------------------------------------- MXFP


def test_e2m1_grid_ties_and_codes():
    f = mxsim.MXFP4_E2M1.with_block_size(4)
    # amax 6 -> floor(log2 6) = 2, emax 2 -> s = 0, v = x.
    # 2.5: E = 1, step 2^(1-1) = 1 -> 2.5 tie: even 2, away 3, floor 2
    # 0.25: E = emin = 0, step 0.5 -> 0.5 steps tie: even 0, away 0.5 (subnormal), floor 0
    # -5: E = 2, step 2 -> 2.5 tie: even -4, away -6, floor -4
    x = t32(6.0, 2.5, 0.25, -5.0)
    # codes: 6 = 0 11 1 = 7; 2 = 0 10 0 = 4; 0 = 0; -4 = 1 11 0 = 14; 3 = 0 10 1 = 5;
    # 0.5 = 0 00 1 = 1; -6 = 1 11 1 = 15
    assert codes_scales(x, f) == ([7, 4, 0, 14], [127])
    assert fq(x, f) == [6.0, 2.0, 0.0, -4.0]
    assert codes_scales(x, f, rounding="nearest_away") == ([7, 5, 1, 15], [127])
    assert fq(x, f, rounding="nearest_away") == [6.0, 3.0, 0.5, -6.0]
    assert codes_scales(x, f, rounding="floor") == ([7, 4, 0, 14], [127])


def test_e2m1_negative_rounds_to_zero_keeps_sign():
    f = mxsim.MXFP4_E2M1.with_block_size(2)
    # block [4, -0.2]: s = 0; -0.2 / 0.5 = 0.4 steps -> 0, sign kept: code 1 00 0 = 8, -0.0
    c, s = codes_scales(t32(4.0, -0.2), f)
    assert c == [6, 8]
    out = R.fake_quantize(t32(4.0, -0.2), f)
    assert same_bits(out, torch.tensor([[4.0, -0.0]]))
    # -0.0 input in a non-zero block keeps its sign too; a zero block gives +0.0 codes 0
    out = R.fake_quantize(t32(4.0, -0.0, -0.0, 0.0), f)
    assert same_bits(out, torch.tensor([[4.0, -0.0, 0.0, 0.0]]))
    assert R.quantize(t32(4.0, -0.0, -0.0, 0.0), f)[0][0].tolist() == [6, 8, 0, 0]


def test_e4m3_ocp_table_values():
    f = mxsim.MXFP8_E4M3.with_block_size(2)
    # amax 256 = 2^8 -> s = 8 - 8 = 0. 256 = 1.0 * 2^8, biased exponent 8 + 7 = 15 -> 0 1111 000 = 0x78.
    # 1.0: biased exponent 7 -> 0 0111 000 = 0x38.
    assert codes_scales(t32(256.0, 1.0), f) == ([0x78, 0x38], [127])
    # smallest subnormal (OCP table: 2^-9): code 0x01; 0.75 * 2^-9 -> 1; 0.5 * 2^-9 -> tie -> 0
    assert codes_scales(t32(256.0, 2.0**-9), f)[0] == [0x78, 0x01]
    assert codes_scales(t32(256.0, 0.75 * 2**-9), f)[0] == [0x78, 0x01]
    assert codes_scales(t32(256.0, 0.5 * 2**-9), f)[0] == [0x78, 0x00]
    # 3 * 2^-10 = 1.5 subnormal steps -> even 2: code 0x02
    assert codes_scales(t32(256.0, 3 * 2.0**-10), f)[0] == [0x78, 0x02]
    # saturation: 500 -> E = 8, step 2^5 = 32 -> 15.625 -> 16 -> 512 > 448 -> 448 (0 1111 110 = 0x7E)
    # -470 -> 14.6875 -> 15 -> 480 -> -448 (0xFE). Never the NaN code 0x7F.
    assert codes_scales(t32(500.0, -470.0), f) == ([0x7E, 0xFE], [127])
    assert fq(t32(500.0, -470.0), f) == [448.0, -448.0]
    # 400 = 12.5 * 32: tie -> even 12 -> 384; away -> 13 -> 416
    assert fq(t32(400.0, 0.0), f) == [384.0, 0.0]
    assert fq(t32(400.0, 0.0), f, rounding="nearest_away") == [416.0, 0.0]


def test_e5m2_saturates_never_inf():
    f = mxsim.MXFP8_E5M2.with_block_size(1)
    # 57344 = 1.75 * 2^15: floor(log2) = 15, emax 15 -> s = 0; code 0 11110 11 = 0x7B
    assert codes_scales(t32(57344.0), f) == ([0x7B], [127])
    # 63000 -> s = 0, E = 15, step 2^13 -> 7.69 -> 8 -> 65536 > max -> 57344 (not Inf)
    assert codes_scales(t32(63000.0), f) == ([0x7B], [127])
    # smallest subnormal 2^-16 relative to the scale: block [57344, 2^-16]
    f2 = f.with_block_size(2)
    assert codes_scales(t32(57344.0, 2.0**-16), f2)[0] == [0x7B, 0x01]


def test_fp6_tables():
    # E3M2: bias 3, emin -2, max 28 = 1.75 * 2^4 (emax 4). amax 28 -> s = 0.
    f = mxsim.MXFP6_E3M2.with_block_size(2)
    # 28 = 0 111 11 = 31; subnormal step 2^(-2-2) = 2^-4: 0.0625 -> code 1
    assert codes_scales(t32(28.0, 0.0625), f) == ([31, 1], [127])
    # E2M3: bias 1, emin 0, max 7.5 = 1.875 * 2^2. amax 7.5 -> s = 0.
    g = mxsim.MXFP6_E2M3.with_block_size(3)
    # 7.5 = 0 11 111 = 31; 0.125 = one subnormal step -> 1; 0.1875 = 1.5 steps -> even 2
    assert codes_scales(t32(7.5, 0.125, 0.1875), g) == ([31, 1, 2], [127])
    # -0.1875 with away: -2 steps -> 1 00 010 = 0b100010 = 34
    assert codes_scales(t32(7.5, 0.125, -0.1875), g, rounding="nearest_away")[0] == [31, 1, 34]
    # carry into the next binade: 1.9375 in E2M3 (E = 0, step 1/8: 15.5 steps -> even 16) -> 2.0
    assert fq(t32(7.5, 1.9375, 0.0), g) == [7.5, 2.0, 0.0]


def test_mxfp_scale_from_block_max():
    f = mxsim.MXFP4_E2M1.with_block_size(2)
    # amax 100: floor(log2 100) = 6, s = 6 - 2 = 4, scale code 131. v = x / 16:
    # 100/16 = 6.25 -> E = 2, step 2 -> 3.125 -> 3 -> 6 -> 96; 20/16 = 1.25 -> E = 0,
    # step 0.5 -> 2.5 -> even 2 -> 1.0 -> 16.
    c, s = codes_scales(t32(100.0, 20.0), f)
    assert s == [131] and c == [7, 2]
    assert fq(t32(100.0, 20.0), f) == [96.0, 16.0]


# ----------------------------------------------------------------------------- BlockFP


def test_blockfp_clipped_top_code():
    f = BlockFP(4, block_size=4)
    # amax 1: log2 = 0, e = 0 (code 127). m = round((|x| + 1e-9) * 2^3):
    # 1.0 -> 8 -> clamp 7: 7/8 (the clipped top code); 0.5 -> 4; 0.3 -> 2.4 -> 2: 0.25
    # 0.0: m = round(1e-9 * 8) = 0, sgn = sign(0 + 1e-9) = +1: code 0; fake_quantize
    # passes it through.
    x = t32(1.0, 0.5, -0.3, 0.0)
    assert codes_scales(x, f) == ([7, 4, -2, 0], [127])
    assert fq(x, f) == [0.875, 0.5, -0.25, 0.0]


def test_blockfp_ceil_exponent():
    f = BlockFP(4, block_size=2)
    # amax 3: log2 3 = 1.58 -> e = 2 (code 129); step 2^(2-3) = 0.5: 3 -> 6, 1.1 -> 2.2 -> 2
    assert codes_scales(t32(3.0, 1.1), f) == ([6, 2], [129])
    assert fq(t32(3.0, 1.1), f) == [3.0, 1.0]


def test_blockfp_nudge_turns_small_ties_up():
    f = BlockFP(4, block_size=2)
    # amax 2^-8: e = -8, step 2^(e-3) = 2^-11. 5 * 2^-12 = 2.5 steps, a tie.
    # fl32(5*2^-12 + 1e-9): ulp of 5*2^-12 is 2^-33 ~ 1.2e-10 < 1e-9, so the nudge survives
    # and the tie rounds up: m = 3 (torch.round alone would give 2).
    x = t32(2.0**-8, 5 * 2.0**-12)
    assert codes_scales(x, f) == ([7, 3], [119])  # 2^-8 * 2^11 = 8 -> clamp 7
    assert fq(x, f)[1] == 3 * 2.0**-11
    # floor: m = floor(2.5 + tiny) = 2
    assert codes_scales(x, f, rounding="floor")[0] == [7, 2]
    # large values: amax 16 -> e = 4, step 2: 5 = 2.5 steps; fl32(5 + 1e-9) = 5 (the nudge
    # is below half an ulp, 2^-22), so round half even gives 2 -> 4.
    x = t32(16.0, 5.0)
    assert codes_scales(x, f) == ([7, 2], [131])
    assert fq(x, f) == [14.0, 4.0]
    # negative tie: sign(x + 1e-9) = -1, magnitude nudged the same way: -5*2^-12 -> -3
    assert codes_scales(t32(2.0**-8, -5 * 2.0**-12), f)[0] == [7, -3]


def test_blockfp_log2_quirk_just_above_power_of_two():
    f = BlockFP(4, block_size=1)
    # amax = 16 * (1 + 2^-23): log2 = 4 + 2^-23 / ln 2 = 4 + 1.7e-7, below half an ulp of 4.0
    # in float32 (2.4e-7), so fl32(log2) = 4.0 and e = 4 (code 131), not 5. m = round(8.000001)
    # = 8 -> clamp 7.
    x = torch.tensor([[16.0 * (1 + 2.0**-23)]], dtype=F32)
    assert codes_scales(x, f) == ([7], [131])
    # amax = 2 * (1 + 2^-23): log2 = 1 + 1.7e-7 > half an ulp of 1.0 (6e-8): fl32 rounds
    # above 1, e = 2.
    x = torch.tensor([[2.0 * (1 + 2.0**-23)]], dtype=F32)
    assert codes_scales(x, f)[1] == [129]


def test_blockfp_zero_block_borrowing_and_passthrough():
    f = BlockFP(4, block_size=2)
    # blocks: [0, 0] and [2^-40, 0]. The zero block borrows the smallest non-zero block max
    # 2^-40 -> e = -40 (code 87). Its zeros: m = round(1e-9 * 2^(3+40)) = round(8796) -> 7,
    # sgn = sign(0 + 1e-9) = +1 -> code 7. 2^-40: m = round((2^-40 + 1e-9) 2^43) -> 7.
    x = t32(0.0, 0.0, 2.0**-40, 0.0)
    c, s = codes_scales(x, f)
    assert s == [87, 87] and c == [7, 7, 7, 7]
    # fake_quantize passes |x| <= fl32(1e-8) through unchanged (all four here)
    assert same_bits(R.fake_quantize(x, f), x)
    g = BlockFP(4, block_size=2, zero_passthrough=False)
    assert fq(x, g) == [7 * 2.0**-43] * 4
    # every block max zero -> all maxima become 1 -> e = 0, codes round(1e-9 * 8) = 0
    c, s = codes_scales(t32(0.0, 0.0, 0.0), f)
    assert s == [127, 127] and c == [0, 0, 0]


def test_blockfp_passthrough_keeps_tiny_values():
    f = BlockFP(4, block_size=4)
    # 5e-9 <= 1e-8 comes back bit for bit; 2e-8 does not (block max 1 -> step 1/8 -> 0)
    x = t32(1.0, 5e-9, 2e-8, -5e-9)
    out = R.fake_quantize(x, f)
    assert same_bits(out[:, 1:2], x[:, 1:2]) and same_bits(out[:, 3:4], x[:, 3:4])
    assert out[0, 2].item() == 0.0


def test_blockfp_negative_to_zero_sign_and_width8():
    f = BlockFP(8, block_size=2, zero_passthrough=False)
    # width 8: m = round(v * 2^(7-e)). amax 1 -> e = 0 -> step 2^-7; -0.001 -> 0.128 -> 0,
    # sgn = -1 -> the float product gives -0.0
    out = R.fake_quantize(t32(1.0, -0.001), f)
    assert same_bits(out, torch.tensor([[127 / 128, -0.0]]))


# ----------------------------------------------------------------------------- specials


@pytest.mark.parametrize("fmt", [mxsim.MXINT8, mxsim.MXFP8_E4M3, mxsim.MXFP4_E2M1, BlockFP(4)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_inf_blocks(fmt, bad):
    f = fmt.with_block_size(4)
    x = t32(1.0, bad, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0)
    c, s = R.quantize(x, f)
    nan_code = f.nan_code if isinstance(f, BlockFP) else 0xFF
    assert s[0, 0].item() == nan_code and s[0, 1].item() != nan_code
    assert c[0, :4].tolist() == [0, 0, 0, 0]
    out = R.fake_quantize(x, f)
    assert torch.isnan(out[0, :4]).all() and torch.isfinite(out[0, 4:]).all()
    d = R.dequantize(c, s, f, axis=-1)
    assert torch.isnan(d[0, :4]).all() and torch.equal(d[0, 4:], out[0, 4:])


def test_zero_block_mx():
    f = mxsim.MXINT4.with_block_size(3)
    c, s = R.quantize(torch.zeros(1, 5), f)
    assert s.tolist() == [[0, 0]] and c.tolist() == [[0] * 5]


def test_short_block_and_axis():
    f = mxsim.MXINT4.with_block_size(4)
    # length 5: blocks [0.5, 0.25, 0.125, 0.0625] (amax 0.5 -> s = -1, grid 2^-3) and [3.0]
    # (s = 1, 3 * 2^(-(1-2)) = 6 -> value 3).
    x = t32(0.5, 0.25, 0.125, 0.0625, 3.0)
    c, s = codes_scales(x, f)
    assert s == [126, 128] and c == [4, 2, 1, 0, 6]
    # same along axis 0 of the transpose
    c0, s0 = R.quantize(x.t().contiguous(), f, axis=0)
    assert c0[:, 0].tolist() == c and s0[:, 0].tolist() == s and s0.shape == (2, 1)


def test_dtypes_roundtrip():
    f = mxsim.MXINT8.with_block_size(2)
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        x = torch.tensor([[1.0, 0.3]], dtype=dt)
        out = R.fake_quantize(x, f)
        assert out.dtype == dt and out.shape == x.shape
        # 0.3 (as dt) * 64 ~ 19.2 -> 19 -> 19/64 = 0.296875, exact in all three dtypes
        assert out[0, 1].item() == 19 / 64
    xn = np.array([[1.0, 0.3]], dtype=np.float32)
    assert isinstance(R.fake_quantize(xn, f), np.ndarray)
    with pytest.raises(ValueError):
        R.fake_quantize(torch.tensor([[1, 2]]), f)


def test_float16_output_rounding():
    # MXINT8 value 127 * 2^-16 (block max 2^-10... s = -10, grid 2^-16) is a float16
    # subnormal with 7 significant bits -> exact; a float64 input 1 + 2^-20 in a block of
    # max 1 rounds to code 64 -> 1.0.
    f = mxsim.MXINT8.with_block_size(1)
    x = torch.tensor([[127 * 2.0**-16]], dtype=torch.float16)
    assert R.fake_quantize(x, f).item() == 127 * 2.0**-16


# ----------------------------------------------------------------------------- stochastic


def _np_lowbias32(x):
    x = np.uint32(x)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x = np.uint32(x * np.uint32(0x7FEB352D))
        x ^= x >> np.uint32(15)
        x = np.uint32(x * np.uint32(0x846CA68B))
        x ^= x >> np.uint32(16)
    return int(x)


def test_lowbias32_against_uint32_arithmetic():
    assert R.lowbias32(0) == 0  # every step maps 0 to 0
    vals = [1, 2, 0x9E3779B9, 0xFFFFFFFF, 123456789, 2**31]
    got = R.lowbias32(torch.tensor(vals, dtype=torch.int64)).tolist()
    assert got == [_np_lowbias32(v) for v in vals] == [R.lowbias32(v) for v in vals]


def test_stochastic_threshold_per_element():
    # MXINT8 block of 1, x = 1 + f * 2^-6 (s = 0, v = 64 + f): rounds up iff f >= 1 - u,
    # u = (h >> 8) 2^-24 with h = lowbias32(lowbias32(seed ^ 0x9E3779B9) ^ i).
    f = mxsim.MXINT8.with_block_size(1)
    frac = 0.375
    x = torch.full((1, 64), 1.0 + frac * 2**-6, dtype=F32)
    for seed in (0, 7):
        c, _ = R.quantize(x, f, rounding="stochastic", seed=seed)
        s = _np_lowbias32(seed ^ 0x9E3779B9)
        want = [64 + (frac >= 1 - (_np_lowbias32(s ^ i) >> 8) * 2.0**-24) for i in range(64)]
        assert c[0].tolist() == want


def test_stochastic_reproducible_and_unbiased():
    f = mxsim.MXINT4.with_block_size(32)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 64, generator=g)
    a = R.fake_quantize(x, f, rounding="stochastic", seed=3)
    assert same_bits(a, R.fake_quantize(x, f, rounding="stochastic", seed=3))
    assert not torch.equal(a, R.fake_quantize(x, f, rounding="stochastic", seed=4))
    # mean over 400 seeds: E[Q(x)] = x (exact for 2^-24 multiples of the fraction); the
    # per-element std of one draw is <= step/2, so the mean's std is <= step/40; allow 5x
    # that over the block's grid step.
    xs = x[:4, :32]
    acc = torch.zeros_like(xs, dtype=torch.float64)
    for seed in range(400):
        acc += R.fake_quantize(xs, f, rounding="stochastic", seed=seed).double()
    mean = acc / 400
    amax = xs.abs().amax(dim=1, keepdim=True).double()
    step = 2.0 ** (torch.floor(torch.log2(amax)) - 2)
    inrange = xs.abs().double() <= 7 * step  # not clamped
    err = ((mean - xs.double()).abs() / step)[inrange]
    assert err.max().item() < 5 / 40
    # and the rounding is never more than one step away, always to a neighbour
    one = R.fake_quantize(xs, f, rounding="stochastic", seed=11).double()
    assert (((one - xs.double()).abs() / step)[inrange] < 1).all()


def test_stochastic_index_is_original_flat_index():
    # the same values along axis 0 and along axis 1 of the transpose get different u
    # (index = C-order position in the ORIGINAL tensor), so quantize(x, axis=0) must equal
    # quantize(x.T, axis=1).T only where the hash agrees; check directly against the formula.
    f = mxsim.MXINT8.with_block_size(2)
    x = torch.full((2, 3), 1.0 + 0.5 * 2**-6, dtype=F32)  # blocks along axis 0: v = 64.5
    c, _ = R.quantize(x, f, axis=0, rounding="stochastic", seed=5)
    s = _np_lowbias32(5 ^ 0x9E3779B9)
    want = [[64 + (0.5 >= 1 - (_np_lowbias32(s ^ (r * 3 + q)) >> 8) * 2.0**-24) for q in range(3)] for r in range(2)]
    assert c.tolist() == want


# ----------------------------------------------------------------------------- matmul


def _mx(codes, scales):
    return torch.tensor(codes), torch.tensor(scales, dtype=torch.uint8)


def test_matmul_exact_and_fp32_fused_single_rounding():
    f = mxsim.MXFP8_E4M3.with_block_size(2)
    # E4M3 codes: 0x78 = 256 (int view 256 / 2^-9 = 2^17), 0x01 = 2^-9 (int view 1).
    # a = [0x78, 0, 0x78, 0x01] with scales [139, 127]; b the same column.
    # block 0: P = 2^34, E = 12 + 12 - 18 = 6 -> 2^40.
    # block 1: P = 2^34 + 1, E = 0 + 0 - 18 -> 2^16 + 2^-18.
    # exact = 2^40 + 2^16 + 2^-18 -> float64 (53 bits from 2^40 reach 2^-12) = 2^40 + 2^16.
    # fp32 fused: acc = 2^40; 2^40 + 2^16 + 2^-18 is just above the float32 midpoint (ulp 2^17)
    # -> 2^40 + 2^17. (float64 add then cast would hit the tie and give 2^40.)
    ac = torch.tensor([[0x78, 0, 0x78, 0x01]], dtype=torch.uint8)
    asc = torch.tensor([[139, 127]], dtype=torch.uint8)
    bc = ac.t().contiguous()
    bsc = asc.t().contiguous()
    ex = R.matmul(ac, asc, f, bc, bsc, f, accumulator=Exact())
    assert ex.dtype == torch.float64 and ex.item() == 2.0**40 + 2.0**16
    fp = R.matmul(ac, asc, f, bc, bsc, f, accumulator=FP32())
    assert fp.dtype == F32 and fp.item() == 2.0**40 + 2.0**17


def test_matmul_fp32_per_step_rounding_and_lanes():
    f = mxsim.MXINT8.with_block_size(2)
    # a values [2^24, 0 | 1, 1]: codes [64, 0, 64, 64], scales [151, 127]; b all 1.0
    # (code 64, scale 127). Products 64*64 = 4096, E = sa + sb - 12.
    # exact = 2^24 + 2. fp32, lanes 2: 2^24, then 2^24 + 2 (exact in float32).
    # lanes 1: 2^24 + 1 is a tie -> even 2^24, twice -> 2^24.
    ac = torch.tensor([[64, 0, 64, 64]], dtype=torch.int8)
    asc = torch.tensor([[151, 127]], dtype=torch.uint8)
    bc = torch.full((4, 1), 64, dtype=torch.int8)
    bsc = torch.full((2, 1), 127, dtype=torch.uint8)
    assert R.matmul(ac, asc, f, bc, bsc, f, Exact()).item() == 2.0**24 + 2
    assert R.matmul(ac, asc, f, bc, bsc, f, FP32()).item() == 2.0**24 + 2
    assert R.matmul(ac, asc, f, bc, bsc, f, FP32(1)).item() == 2.0**24
    with pytest.raises(ValueError):
        R.matmul(ac, asc, f, bc, bsc, f, FP32(3))


def test_matmul_fixed_point():
    f = mxsim.MXINT8.with_block_size(1)
    # a codes [48, -96], scales [127, 125] -> values 48/64 = 0.75, -96 * 2^-8 = -0.375
    # b = [1, 1]: codes 64, scales 127. P = [3072, -6144], E = [-12, -14].
    # frac 2: aligned = floor(3072 * 2^-10) = 3, floor(-6144 * 2^-12) = floor(-1.5) = -2
    # -> acc 1 -> 0.25 (truncation toward -inf; the exact sum is 0.375).
    ac = torch.tensor([[48, -96]], dtype=torch.int8)
    asc = torch.tensor([[127, 125]], dtype=torch.uint8)
    bc = torch.tensor([[64], [64]], dtype=torch.int8)
    bsc = torch.tensor([[127], [127]], dtype=torch.uint8)
    assert R.matmul(ac, asc, f, bc, bsc, f, FixedPoint(16, 2, "saturate")).item() == 0.25
    assert R.matmul(ac, asc, f, bc, bsc, f, FixedPoint(16, 3, "saturate")).item() == 0.375
    assert R.matmul(ac, asc, f, bc, bsc, f, Exact()).item() == 0.375
    # a = [0.75, 0.75]: aligned 3 + 3 = 6 in a 3-bit accumulator [-4, 3]:
    # saturate -> 3 -> 0.75; wrap -> 6 - 8 = -2 -> -0.5
    ac2 = torch.tensor([[48, 48]], dtype=torch.int8)
    asc2 = torch.tensor([[127, 127]], dtype=torch.uint8)
    assert R.matmul(ac2, asc2, f, bc, bsc, f, FixedPoint(3, 2, "saturate")).item() == 0.75
    assert R.matmul(ac2, asc2, f, bc, bsc, f, FixedPoint(3, 2, "wrap")).item() == -0.5


def test_matmul_nan_scale_and_mixed_formats():
    fa, fb = mxsim.MXINT8.with_block_size(2), mxsim.MXINT4.with_block_size(2)
    # MXINT8 x MXINT4: a = [1, 0.5] (codes 64, 32, s=0), b = [1.5, -1] in MXINT4 (q = -2,
    # amax 1.5 -> s = 0, codes 6, -4). Products 384 - 128 = 256, E = 0 + 0 - 6 - 2 -> 1.0
    ac = torch.tensor([[64, 32]], dtype=torch.int8)
    asc = torch.tensor([[127]], dtype=torch.uint8)
    bc = torch.tensor([[6], [-4]], dtype=torch.int8)
    bsc = torch.tensor([[127]], dtype=torch.uint8)
    for acc in (Exact(), FP32(), FixedPoint(32, 8, "wrap")):
        assert R.matmul(ac, asc, fa, bc, bsc, fb, acc).item() == 1.0
    bad = torch.tensor([[255]], dtype=torch.uint8)
    for acc in (Exact(), FP32(), FixedPoint(32, 8, "wrap")):
        assert math.isnan(R.matmul(ac, bad, fa, bc, bsc, fb, acc).item())
    # MXFP8_E5M2 block sums beyond int64: 32 products of the max normal 57344 (code 0x7B)
    e5 = torch.full((1, 32), 0x7B, dtype=torch.uint8)
    one = torch.full((1, 1), 127, dtype=torch.uint8)
    f5 = mxsim.MXFP8_E5M2
    assert R.matmul(e5, one, f5, e5.T.contiguous(), one, f5).item() == 32 * 57344.0**2
    with pytest.raises(ValueError):
        R.matmul(ac, asc, fa, bc, bsc, fb.with_block_size(4))


def test_round_to_f32_helper():
    # hand cases of RNE to float32: 1 + 2^-24 tie -> 1; 1 + 3*2^-24 -> 1 + 2^-22;
    # subnormal 2^-150 tie -> 0 (even), 3 * 2^-150 -> 2^-148; overflow at max + half ulp
    assert R.round_to_f32(2**24 + 1, -24) == 1.0
    assert R.round_to_f32(2**24 + 3, -24) == 1.0 + 2.0**-22
    assert R.round_to_f32(1, -150) == 0.0
    assert R.round_to_f32(3, -150) == 2.0**-148
    assert R.round_to_f32(-1, -151) == 0.0 and math.copysign(1, R.round_to_f32(-1, -151)) == -1
    assert R.round_to_f32((2**25 - 1), 103) == math.inf  # (2^24 - 0.5) * 2^104 = max + half ulp
    # (2^24 - 0.75) * 2^104 rounds down to max = (2^24 - 1) * 2^104
    assert R.round_to_f32((2**26 - 3), 102) == float(np.finfo(np.float32).max)


def test_matmul_fp32_signed_zero_and_overflow():
    f = mxsim.MXINT8.with_block_size(1)
    b = torch.tensor([[64], [64]], dtype=torch.int8)
    bs = torch.tensor([[0], [0]], dtype=torch.uint8)
    # a = [-64 (scale 0), 0]: -64 * 2^(-127-6) = -2^-127; b = 2^-127 -> product -2^-254,
    # which underflows float32 to -0.0 (sign kept); the next step adds S = 0 (+0.0):
    # (-0.0) + (+0.0) = +0.0 under RNE.
    a = torch.tensor([[-64, 0]], dtype=torch.int8)
    as_ = torch.tensor([[0, 0]], dtype=torch.uint8)
    one = R.matmul(a[:, :1], as_[:, :1], f, b[:1], bs[:1], f, FP32())
    assert one.item() == 0.0 and math.copysign(1, one.item()) == -1
    two = R.matmul(a, as_, f, b, bs, f, FP32())
    assert two.item() == 0.0 and math.copysign(1, two.item()) == 1
    assert R.matmul(a, as_, f, b, bs, f, Exact()).item() == -(2.0**-254)
    # scales 254 on both sides: 2^127 * 2^127 = 2^254 -> fp32 Inf, exact 2^254
    big = torch.tensor([[254]], dtype=torch.uint8)
    a1 = torch.tensor([[64]], dtype=torch.int8)
    assert R.matmul(a1, big, f, b[:1], big, f, FP32()).item() == math.inf
    assert R.matmul(a1, big, f, b[:1], big, f, Exact()).item() == 2.0**254


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fmt", [mxsim.MXINT8, mxsim.MXINT4, mxsim.MXFP8_E4M3, mxsim.MXFP4_E2M1, BlockFP(4)])
def test_cuda_matches_cpu(fmt):
    # The referee is the GPU path: same bits on CUDA as on CPU (random inputs; BlockFP's
    # exponent follows torch.log2 of the device, which could differ only right at powers of 2).
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 100, generator=g) * 2.0 ** torch.randint(-20, 20, (64, 1), generator=g)
    # adversarial rows: exact powers of two and their float32 neighbours, where a device's log2
    # rounding could move a BlockFP/MX exponent by one
    p2 = 2.0 ** torch.arange(-50, 50, dtype=torch.float32)
    edge = torch.cat([p2, torch.nextafter(p2, torch.zeros(())), torch.nextafter(p2, torch.full((), math.inf))])
    x = torch.cat([x, edge[: (edge.numel() // 100) * 100].reshape(-1, 100)])
    x[-1, ::2] *= -1
    for rounding in mxsim.ROUNDING_MODES:
        for axis in (0, 1):
            a = R.fake_quantize(x, fmt, axis=axis, rounding=rounding, seed=1)
            b = R.fake_quantize(x.cuda(), fmt, axis=axis, rounding=rounding, seed=1)
            assert b.device.type == "cuda" and same_bits(a, b.cpu())
            ca, sa = R.quantize(x, fmt, axis=axis, rounding=rounding, seed=1)
            cb, sb = R.quantize(x.cuda(), fmt, axis=axis, rounding=rounding, seed=1)
            assert torch.equal(ca, cb.cpu()) and torch.equal(sa, sb.cpu())
