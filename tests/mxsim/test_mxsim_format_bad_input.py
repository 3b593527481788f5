"""Bad input to mxsim's formats, quantize/dequantize and bytes (issue 13, section 3): a bit-exact
emulator refuses what it cannot represent, at construction or at the call, with a ValueError
that names the argument.

Expected behaviour comes from the issue and from numpy/torch conventions, not from the code:
numpy integer scalars are integers wherever Python ints are (``np.zeros(np.int64(3))`` works,
``np.zeros(3.0)`` raises), a float where a size is expected is refused rather than truncated, and
an integer output dtype is refused rather than silently truncating values (what numpy's
``astype`` would do)."""

import numpy as np
import pytest
import torch

import mxsim
from mxsim import reference
from mxsim import BlockFP, MXFPFormat, MXIntFormat, Rank, Rounding, ScaleEncoding


# --------------------------------------------------------------------------- formats at construction
@pytest.mark.parametrize("make, names", [
    (lambda: MXIntFormat(4.5), "element_bits"),             # was a numba TypingError deep inside
    (lambda: MXIntFormat(9), "element_bits"),
    (lambda: MXIntFormat(True), "element_bits"),
    (lambda: MXIntFormat("4"), "element_bits"),
    (lambda: MXIntFormat(4, 16.0), "block_size"),
    (lambda: MXIntFormat(4, 0), "block_size"),
    (lambda: BlockFP(4.0), "width"),                        # was a TypeError inside the kernel
    (lambda: BlockFP(4, exponent_bias=1000), "exponent_bias"),  # was all zeros
    (lambda: BlockFP(4, exponent_bias=-1), "exponent_bias"),
    (lambda: BlockFP(4, exponent_width=4, exponent_bias=15), "exponent_bias"),  # 0 must be representable
    (lambda: BlockFP(4, exponent_width=9), "exponent_width"),
    (lambda: BlockFP(4, zero_passthrough="yes"), "zero_passthrough"),
    (lambda: MXFPFormat(0, 0, 0, 0.0), "exponent_bits"),   # was all zeros
    (lambda: MXFPFormat(4, 3, 7, 1e9), "max_normal"),      # fake_quantize and quantize().dequantize() disagreed
    (lambda: MXFPFormat(4, 3, 7, 449.0), "max_normal"),    # not on the E4M3 grid
    (lambda: MXFPFormat(4, 3, 7, -448.0), "max_normal"),
    (lambda: MXFPFormat(4, 3, 7, float("inf")), "max_normal"),
    (lambda: MXFPFormat(5, 3, 15, 448.0), "mantissa_bits"),  # 1 + 5 + 3 = 9 bits > 8
    (lambda: MXFPFormat(4, 3, 7.0, 448.0), "exponent_bias"),
    (lambda: MXFPFormat(4, 3, 7, 448.0, has_inf=1), "has_inf"),
    (lambda: MXIntFormat(4, scale=ScaleEncoding(9, 127)), "bits"),
    (lambda: MXIntFormat(4, scale=ScaleEncoding(8, 255)), "bias"),
    (lambda: MXIntFormat(4, scale="E8M0"), "scale"),
])
def test_formats_validate_every_field(make, names):
    with pytest.raises(ValueError, match=names):
        make()


def test_ocp_formats_are_consistent_with_their_grids():
    # OCP MX v1.0 Table 2: largest normals 448 (E4M3, S.1111.111 = NaN), 57344 (E5M2, IEEE Inf),
    # 28 (E3M2), 7.5 (E2M3), 6 (E2M1) -- each is 2^E (1 + j/2^m) on its own grid, so they construct.
    for e, m, bias, mx, inf in ((4, 3, 7, 448.0, False), (5, 2, 15, 57344.0, True), (3, 2, 3, 28.0, False),
                                (2, 3, 1, 7.5, False), (2, 1, 1, 6.0, False)):
        assert MXFPFormat(e, m, bias, mx, has_inf=inf).max_normal == mx
    # a top value that would need the E5M2 Inf exponent is refused once Inf is reserved
    with pytest.raises(ValueError, match="max_normal"):
        MXFPFormat(5, 2, 15, 114688.0, has_inf=True)


@pytest.mark.parametrize("make, want", [
    (lambda: MXIntFormat(np.int64(4), np.int32(16)), MXIntFormat(4, 16)),
    (lambda: BlockFP(np.int8(4), np.int64(8), np.int64(16)), BlockFP(4)),
    (lambda: mxsim.MXINT8.with_block_size(np.int64(16)), MXIntFormat(8, 16)),
    (lambda: MXFPFormat(np.int64(2), np.int64(1), np.int64(1), np.float32(6.0)), mxsim.MXFP4_E2M1),
])
def test_numpy_integers_are_integers_in_formats(make, want):
    got = make()
    assert got == want and hash(got) == hash(want)
    assert type(got.block_size) is int


def test_numpy_integers_are_integers_at_every_call():
    x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32)
    ref = mxsim.fake_quantize(x, "MXINT8", axis=1, seed=3)
    got = mxsim.fake_quantize(x, "MXINT8", axis=np.int64(1), seed=np.uint32(3))
    assert np.array_equal(ref, got)
    q = mxsim.quantize(x, MXIntFormat(8, np.int64(16)), axis=np.int32(-1))
    t = mxsim.MXTensor.from_bytes(q.to_bytes(), q.fmt, (np.int64(2), np.int64(32)), axis=np.int64(1))
    assert np.array_equal(t.codes, q.codes)
    assert Rank.of(np.int64(5)).resolve(64, 32) == 5
    qb = mxsim.quantize(x.T.copy(), MXIntFormat(8, 16), axis=0)
    assert np.array_equal(mxsim.matmul(q, qb, mxsim.FP32(np.int64(4))), mxsim.matmul(q, qb, mxsim.FP32(4)))


# --------------------------------------------------------------------------- names and rounding
@pytest.mark.parametrize("name, want", [
    ("MXINT3", MXIntFormat(3)), ("mxint3/16", MXIntFormat(3, 16)), ("BlockFP4/16", BlockFP(4)),
    ("blockfp3/8", BlockFP(3, block_size=8)), ("MXFP4_E2M1/32", mxsim.MXFP4_E2M1), ("MXFP4", mxsim.MXFP4_E2M1),
])
def test_one_name_parser_with_its_inverse(name, want):
    fmt = mxsim.get_format(name)
    assert fmt == want
    assert mxsim.get_format(mxsim.format_to_str(fmt)) == fmt
    # a format no short name describes round-trips through the json spelling
    odd = BlockFP(4, exponent_width=5, exponent_bias=3, zero_passthrough=False)
    assert mxsim.format_to_str(odd).startswith("json:") and mxsim.get_format(mxsim.format_to_str(odd)) == odd


@pytest.mark.parametrize("name", ["MXINT9", "MXINT1", "BlockFP12", "MXINT4/0", "MXINT4/x", "MXINT4/", "FP8", "",
                                  "json:{}"])
def test_bad_format_names(name):
    with pytest.raises(ValueError, match="format"):
        mxsim.get_format(name)


@pytest.mark.parametrize("bad", ["nearest", "round", 0, None, "NEAREST-EVEN"])
def test_rounding_is_parsed_at_the_boundary(bad):
    x = np.ones((1, 32), np.float32)
    with pytest.raises(ValueError, match="rounding"):
        mxsim.fake_quantize(x, "MXINT8", rounding=bad)
    with pytest.raises(ValueError, match="rounding"):
        reference.fake_quantize(torch.from_numpy(x), "MXINT8", rounding=bad)


def test_rounding_accepts_member_and_name_alike():
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    for r in Rounding:
        assert np.array_equal(mxsim.fake_quantize(x, "MXINT4", rounding=r),
                              mxsim.fake_quantize(x, "MXINT4", rounding=r.value.upper()))


# --------------------------------------------------------------------------- bytes and dequantize
def _q():
    x = np.random.default_rng(1).standard_normal((3, 40)).astype(np.float32)
    return mxsim.quantize(x, BlockFP(4, exponent_width=4, block_size=16))


@pytest.mark.parametrize("shape", [(3.0, 40), (3, 40.5), "3x40", (True, 40), None])
def test_from_bytes_refuses_non_integer_shapes(shape):
    q = _q()
    with pytest.raises(ValueError, match="shape"):
        mxsim.MXTensor.from_bytes(q.to_bytes(), q.fmt, shape)  # 3.0 was silently truncated


def test_from_bytes_refuses_scale_codes_outside_the_exponent_range():
    q = _q()  # BlockFP with 4-bit exponents: scale codes 0..15 (15 = NaN)
    data = bytearray(q.to_bytes())
    data[2] = 0x40
    with pytest.raises(ValueError, match="data.*scale"):  # was an Inf block on dequantize
        mxsim.MXTensor.from_bytes(bytes(data), q.fmt, (3, 40))
    data[2] = q.fmt.nan_code  # the NaN code itself is a valid scale code
    t = mxsim.MXTensor.from_bytes(bytes(data), q.fmt, (3, 40))
    assert np.isnan(t.dequantize()[0, 32:]).all()


def test_from_bytes_refuses_mxfp_nan_element_codes():
    x = np.ones((1, 32), np.float32)
    q = mxsim.quantize(x, mxsim.MXFP8_E4M3)
    data = bytearray(q.to_bytes())
    data[1 + 5] = 0x7F  # S.1111.111 is E4M3's NaN pattern (OCP MX v1.0 Table 3): never produced
    with pytest.raises(ValueError, match="data.*element"):
        mxsim.MXTensor.from_bytes(bytes(data), mxsim.MXFP8_E4M3, (1, 32))


@pytest.mark.parametrize("dtype", [np.int32, np.int8, np.bool_, np.complex64, "float128x", torch.float32])
def test_dequantize_refuses_non_float_dtypes_for_numpy(dtype):
    with pytest.raises(ValueError, match="dtype"):
        _q().dequantize(dtype=dtype)  # int32 used to truncate silently


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, np.float32])
def test_dequantize_refuses_non_float_dtypes_for_torch(dtype):
    q = mxsim.quantize(torch.ones(2, 32), "MXINT8")
    with pytest.raises(ValueError, match="dtype"):
        q.dequantize(dtype=dtype)


def test_dequantize_float_dtypes_still_work():
    q = _q()
    assert q.dequantize(dtype=np.float64).dtype == np.float64
    assert q.dequantize(dtype="float16").dtype == np.float16
    t = mxsim.quantize(torch.ones(2, 32), "MXINT8")
    assert t.dequantize(dtype=torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("shape", [(16.0,), 16.5, ("16",)])
def test_nvfp4_from_bytes_refuses_non_integer_shapes(shape):
    # an NVFP4 tensor of 16 elements is 1 E4M3 scale + 16 x 4 bits = 9 bytes; a float
    # shape must be refused as for the MX formats, not truncated by int()
    with pytest.raises(ValueError, match="shape"):
        mxsim.MXTensor.from_bytes(bytes(9), "NVFP4", shape)
