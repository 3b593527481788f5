"""Block-scale encodings other than OCP E8M0 (mxsim.ScaleEncoding: bits, bias, NaN = all ones):
hand-computed codes, and the numba path against the torch referee bit for bit. The GPU twin is
tests/mxsim/test_gpu.py::test_other_scale_encodings_match_referee_and_numba."""

import dataclasses

import numpy as np
import pytest
import torch

import mxsim
from mxsim import reference as R
from mxsim.formats import ROUNDING_MODES, ScaleEncoding
from mxsim.validate import _bits_equal, adversarial_batches, random_case

# exponents -15..15, NaN 31 | -254..0, NaN 255 | -3..11, NaN 15
OTHER_SCALES = (ScaleEncoding(5, 15), ScaleEncoding(8, 254), ScaleEncoding(4, 3))
ENCODING_FORMATS = (mxsim.MXINT8, mxsim.MXINT4, mxsim.MXFP8_E4M3, mxsim.MXFP6_E3M2, mxsim.MXFP4_E2M1)


def with_scale(fmt, scale):
    return dataclasses.replace(fmt, scale=scale)


def encoding_inputs(fmt, rng):
    """Adversarial rows plus magnitudes from 2^-60 to 2^60, so blocks clamp at both ends of
    the narrow encodings."""
    wide = random_case(rng, 6, 32, "normal") * np.exp2(rng.integers(-60, 61, (6, 1))).astype(np.float32)
    return np.concatenate([adversarial_batches(fmt, length=32, seed=4)[0][:40], wide.astype(np.float32)])


def test_scale_encoding_hand_codes():
    e5 = with_scale(mxsim.MXINT8.with_block_size(2), ScaleEncoding(5, 15))
    # [2^20, 1]: floor(log2 2^20) - emax 0 = 20 clamps to the largest exponent 2^5 - 2 - 15 = 15;
    # 2^20 / 2^15 = 32 saturates to 127/64 (code 127), 1 / 2^15 is below half the 2^-6 step
    # (code 0); scale code 15 + 15 = 30; values 127/64 * 2^15 = 65024 and 0.
    # [2^-30, 2^-31]: -30 clamps to the smallest exponent -15; both round to 0; scale code 0.
    # An all-zero block: the smallest exponent (code 0); a NaN block: the all-ones code 31.
    x = np.array([[2.0**20, 1.0], [2.0**-30, 2.0**-31], [0.0, 0.0], [np.nan, 1.0]], np.float32)
    q = mxsim.quantize(x, e5)
    np.testing.assert_array_equal(q.scales[:, 0], [30, 0, 0, 31])
    np.testing.assert_array_equal(q.codes[:3], [[127, 0], [0, 0], [0, 0]])
    v = mxsim.fake_quantize(x, e5)
    np.testing.assert_array_equal(v[:3], [[65024.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert np.isnan(v[3]).all()
    # MXFP4 (emax 2, max 6) with exponents -254..0: [12, 1] has floor(log2 12) - 2 = 1, which
    # clamps to 0 (scale code 0 + 254); 12 saturates to 6 (code 0b0111), 1 stays 1 (0b0010)
    e8 = with_scale(mxsim.MXFP4_E2M1.with_block_size(2), ScaleEncoding(8, 254))
    q = mxsim.quantize(np.array([[12.0, 1.0]], np.float32), e8)
    assert int(q.scales[0, 0]) == 254 and q.codes.tolist() == [[7, 2]]
    np.testing.assert_array_equal(q.dequantize(), [[6.0, 1.0]])


@pytest.mark.parametrize("scale", OTHER_SCALES, ids=lambda s: s.name)
def test_other_scale_encodings_numba_matches_referee(scale):
    rng = np.random.default_rng(scale.bits * 1000 + scale.bias)
    for fmt in ENCODING_FORMATS:
        for block in (32, 7):
            f = with_scale(fmt.with_block_size(block), scale)
            x32 = encoding_inputs(f, rng)
            for arr in (x32, x32.astype(np.float64)):
                t = torch.from_numpy(arr)
                for rounding in ROUNDING_MODES:
                    kw = dict(rounding=rounding, seed=5)
                    got = torch.from_numpy(mxsim.fake_quantize(arr, f, **kw))
                    assert _bits_equal(got, R.fake_quantize(t, f, **kw)).all(), f"{f.name} {rounding} {arr.dtype}"
                    q = mxsim.quantize(arr, f, **kw)
                    rc, rs = R.quantize(t, f, **kw)
                    assert (torch.from_numpy(q.codes) == rc).all() and (torch.from_numpy(q.scales) == rs).all()
                    deq = torch.from_numpy(np.asarray(q.dequantize()))
                    assert _bits_equal(deq, R.dequantize(rc, rs, f, dtype=deq.dtype)).all()
