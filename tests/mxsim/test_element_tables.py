"""Exhaustive element code tables against ml_dtypes (an independent implementation of the
OCP element formats), in the numba path, the torch referee and the GPU path.

For every MXFP element format and every code: the decoded value, and the round-to-nearest-
even encoding of every representable value, of every midpoint between two neighbouring
values and of the float32 neighbours of both. Encoding is tested inside a block whose
scale is 2^0 (the block's first element is the format's max_normal, which fixes
floor(log2 amax) = emax_elem), so the element code is the format's plain RNE cast, which
is what ml_dtypes computes. ml_dtypes turns E4M3 overflow into NaN while MX saturates, so
values above max_normal are checked by hand at the end.
"""

import os

import numpy as np
import pytest
import torch

ml_dtypes = pytest.importorskip("ml_dtypes")

import mxsim  # noqa: E402
from mxsim import reference as R  # noqa: E402
from mxsim.tensor import MXTensor  # noqa: E402

ELEMENT_DTYPES = {
    "MXFP8_E4M3": ml_dtypes.float8_e4m3fn,
    "MXFP8_E5M2": ml_dtypes.float8_e5m2,
    "MXFP6_E2M3": ml_dtypes.float6_e2m3fn,
    "MXFP6_E3M2": ml_dtypes.float6_e3m2fn,
    "MXFP4_E2M1": ml_dtypes.float4_e2m1fn,
}
NAMES = list(ELEMENT_DTYPES)


def _table(name):
    """(codes uint8, values float64 as ml_dtypes decodes them) for every code of the format."""
    fmt = mxsim.get_format(name)
    codes = np.arange(2**fmt.element_bits, dtype=np.uint8)
    return codes, codes.view(ELEMENT_DTYPES[name]).astype(np.float64)


def _encode_inputs(name):
    """Every finite value, the midpoints of neighbouring values and the float32 neighbours of
    both, with both signs, all within [-max_normal, max_normal]."""
    fmt = mxsim.get_format(name)
    _, vals = _table(name)
    grid = np.unique(np.abs(vals[np.isfinite(vals)]))  # 0 .. max_normal, sorted
    assert grid[-1] == fmt.max_normal
    mids = (grid[:-1] + grid[1:]) / 2  # exact: few significant bits
    base = np.concatenate([grid, mids]).astype(np.float32)
    assert np.array_equal(base.astype(np.float64), np.concatenate([grid, mids]))
    up = np.nextafter(base, np.float32(np.inf))
    down = np.nextafter(base, np.float32(-np.inf))
    mags = np.concatenate([base, up, down[down >= 0]])
    mags = mags[mags <= fmt.max_normal]
    return np.concatenate([mags, -mags, [np.float32(-0.0)]]).astype(np.float32)


def _blocks(name, x):
    """Rows [max_normal, x_i]: blocks of 2 whose scale is 2^0."""
    fmt = mxsim.get_format(name)
    rows = np.empty((x.size, 2), np.float32)
    rows[:, 0] = fmt.max_normal
    rows[:, 1] = x
    return fmt.with_block_size(2), rows


def _expected_codes(name, x):
    return x.astype(ELEMENT_DTYPES[name]).view(np.uint8)


def _assert_same_values(got, want):
    """Bit for bit on the numbers (signed zeros and Infs too); NaN where want is NaN (any payload)."""
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint64), want[~nan].view(np.uint64))


@pytest.mark.parametrize("name", NAMES)
def test_decode_every_code_numba(name):
    """Every code, the non-finite ones included (issue 16: they decoded as finite numbers)."""
    codes, want = _table(name)
    fmt = mxsim.get_format(name).with_block_size(1)
    t = MXTensor(codes.copy(), np.full(codes.size, 127, np.uint8), fmt, 0, (codes.size,))
    _assert_same_values(t.dequantize(np.float64), want)


@pytest.mark.parametrize("name", NAMES)
def test_int_values_of_every_code(name):
    """The integer view of every finite code is ml_dtypes' value / 2^quantum_log2; every code
    ml_dtypes decodes as Inf or NaN has no integer (it was a finite number): ValueError naming
    the code, alone or among finite ones, and naming every special code of a mixed tensor."""
    codes, want = _table(name)
    fmt = mxsim.get_format(name).with_block_size(1)
    finite = np.isfinite(want)

    def tensor(c):
        return MXTensor(c.copy(), np.full(c.size, 127, np.uint8), fmt, 0, (c.size,))

    got = tensor(codes[finite]).int_values()
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.astype(np.float64) * 2.0**fmt.quantum_log2, want[finite])
    for c in codes[~finite]:
        for mixed in (np.array([c], np.uint8), np.array([0, c, 1], np.uint8)):
            with pytest.raises(ValueError, match=f"int_values: {name} element codes {int(c):#04x} are Inf/NaN"):
                tensor(mixed).int_values()
    if (~finite).any():
        with pytest.raises(ValueError) as e:
            tensor(codes).int_values()
        assert all(f"{int(c):#04x}" in str(e.value) for c in codes[~finite]), str(e.value)


@pytest.mark.parametrize("name", NAMES)
def test_decode_every_code_referee(name):
    codes, want = _table(name)
    fmt = mxsim.get_format(name).with_block_size(1)
    c = torch.from_numpy(codes.copy())
    got = R.dequantize(c, torch.full((c.numel(),), 127, dtype=torch.uint8), fmt, axis=0, dtype=torch.float64)
    _assert_same_values(got.numpy(), want)


# OCP MX v1.0 Tables 2/3 by hand: (code, value) of the FP8 special codes beside their neighbours
FP8_SPECIALS = {
    "MXFP8_E4M3": [(0x7E, 448.0), (0x7F, np.nan), (0xFE, -448.0), (0xFF, np.nan)],
    "MXFP8_E5M2": [(0x7B, 57344.0), (0x7C, np.inf), (0x7D, np.nan), (0x7E, np.nan), (0x7F, np.nan),
                   (0xFB, -57344.0), (0xFC, -np.inf), (0xFD, np.nan), (0xFF, np.nan)],
}


@pytest.mark.parametrize("name", list(FP8_SPECIALS))
@pytest.mark.parametrize("path", ["numba", "referee"])
def test_fp8_special_codes_by_hand(name, path):
    """Inf and NaN element codes stay Inf and NaN under any finite block scale (here 2^3 and
    2^-100: Inf * 2^s = Inf, NaN * 2^s = NaN), and every element of a NaN-scale block is NaN;
    the finite neighbours scale exactly. dtype float32 too (the NaN must survive the cast)."""
    codes = np.array([c for c, _ in FP8_SPECIALS[name]], np.uint8)
    vals = np.array([v for _, v in FP8_SPECIALS[name]])
    fmt = mxsim.get_format(name).with_block_size(codes.size)
    for scode, f in ((130, 8.0), (27, 2.0**-100), (255, np.nan)):
        want = vals * f
        for dtype in (np.float64, np.float32):
            if path == "numba":
                got = MXTensor(codes.copy(), np.array([scode], np.uint8), fmt, 0, (codes.size,)).dequantize(dtype)
            else:
                td = torch.float64 if dtype == np.float64 else torch.float32
                got = R.dequantize(torch.from_numpy(codes.copy()), torch.tensor([scode], dtype=torch.uint8), fmt,
                                   axis=0, dtype=td).numpy()
            assert got.dtype == dtype
            _assert_same_values(got.astype(np.float64), want.astype(dtype).astype(np.float64))


def test_non_finite_codes_are_the_ones_mx_never_produces():
    """OCP MX v1.0 Tables 2/3 by hand: E4M3 has only the two S.1111.111 NaN codes; E5M2 has
    Inf at S.11111.00 and NaN at S.11111.{01,10,11}; the FP6/FP4 formats have neither."""
    for name, special in {"MXFP8_E4M3": {0x7F, 0xFF}, "MXFP8_E5M2": {0x7C, 0x7D, 0x7E, 0x7F, 0xFC, 0xFD, 0xFE, 0xFF},
                          "MXFP6_E2M3": set(), "MXFP6_E3M2": set(), "MXFP4_E2M1": set()}.items():
        codes, vals = _table(name)
        assert set(codes[~np.isfinite(vals)].tolist()) == special, name


@pytest.mark.parametrize("name", NAMES)
def test_rne_encode_numba(name):
    x = _encode_inputs(name)
    fmt, rows = _blocks(name, x)
    q = mxsim.quantize(rows, fmt)
    assert np.all(q.scales == 127)
    np.testing.assert_array_equal(q.codes[:, 1], _expected_codes(name, x))
    # fake_quantize gives the value ml_dtypes' cast gives, sign of zero included
    fq = mxsim.fake_quantize(rows, fmt)[:, 1]
    want = x.astype(ELEMENT_DTYPES[name]).astype(np.float32)
    np.testing.assert_array_equal(fq.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("name", NAMES)
def test_rne_encode_referee(name):
    x = _encode_inputs(name)
    fmt, rows = _blocks(name, x)
    codes, scales = R.quantize(torch.from_numpy(rows), fmt)
    assert bool((scales == 127).all())
    np.testing.assert_array_equal(codes[:, 1].numpy(), _expected_codes(name, x))
    fq = R.fake_quantize(torch.from_numpy(rows), fmt)[:, 1].numpy()
    want = x.astype(ELEMENT_DTYPES[name]).astype(np.float32)
    np.testing.assert_array_equal(fq.view(np.uint32), want.view(np.uint32))


# the GPU path (mxsim.gpu, Triton): on CUDA, or on CPU tensors in Triton's interpreter when
# TRITON_INTERPRET=1 (as tests/mxsim/test_gpu.py); skipped otherwise
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
GPU_DEV = "cuda" if torch.cuda.is_available() and not _INTERPRET else ("cpu" if _INTERPRET else None)


@pytest.mark.skipif(GPU_DEV is None, reason="needs CUDA (or TRITON_INTERPRET=1 for the interpreter)")
@pytest.mark.parametrize("name", NAMES)
def test_rne_encode_and_decode_gpu(name):
    """The GPU path on the same tables: fake_quantize of a device tensor (the Triton quantize
    kernel), and every code decoded by MXTensor.dequantize of device codes (the Triton dequantize
    kernel), non-finite codes included, under scale 2^0, 2^3 and a NaN scale."""
    pytest.importorskip("triton")
    x = _encode_inputs(name)
    fmt, rows = _blocks(name, x)
    fq = mxsim.fake_quantize(torch.from_numpy(rows).to(GPU_DEV), fmt)[:, 1].cpu().numpy()
    want = x.astype(ELEMENT_DTYPES[name]).astype(np.float32)
    np.testing.assert_array_equal(fq.view(np.uint32), want.view(np.uint32))
    codes, vals = _table(name)
    f1 = fmt.with_block_size(1)
    host = MXTensor(codes.copy(), np.full(codes.size, 127, np.uint8), f1, 0, (codes.size,))
    for scode, factor in ((127, 1.0), (130, 8.0), (255, np.nan)):
        dev = host._replace(torch.from_numpy(codes.copy()).to(GPU_DEV),
                            torch.full((codes.size,), scode, dtype=torch.uint8, device=GPU_DEV))
        for dtype in (torch.float64, torch.float32):
            got = dev.dequantize(dtype)
            assert isinstance(got, torch.Tensor) and got.device.type == GPU_DEV and got.dtype == dtype
            _assert_same_values(got.cpu().numpy().astype(np.float64),
                                (vals * factor).astype(dtype == torch.float32 and np.float32 or np.float64)
                                .astype(np.float64))


@pytest.mark.parametrize("name", NAMES)
def test_above_max_normal_saturates(name):
    """MX saturates (never Inf/NaN): max_normal's float32 successor, the midpoint to the next
    binade step and 2*max_normal all give the max code (by hand: 0x7E for E4M3 = 448,
    0x7B for E5M2 = 57344, 0x1F for the six-bit formats, 0x7 for E2M1), with their signs."""
    fmt = mxsim.get_format(name)
    top = {"MXFP8_E4M3": 0x7E, "MXFP8_E5M2": 0x7B, "MXFP6_E2M3": 0x1F, "MXFP6_E3M2": 0x1F, "MXFP4_E2M1": 0x7}[name]
    sign = 1 << (fmt.element_bits - 1)
    m = np.float32(fmt.max_normal)
    big = np.array([np.nextafter(m, np.float32(np.inf)), m * np.float32(1.0625), m * 2 * 0.999], np.float32)
    # the block max must stay in max_normal's binade for the scale to stay 2^0
    big = big[big < 2.0 ** (fmt.emax_elem + 1)]
    x = np.concatenate([big, -big])
    fmt2, rows = _blocks(name, x)
    for codes in (mxsim.quantize(rows, fmt2).codes[:, 1], R.quantize(torch.from_numpy(rows), fmt2)[0][:, 1].numpy()):
        np.testing.assert_array_equal(codes, [top] * big.size + [top | sign] * big.size)


def test_e8m0_scale_decode_every_code():
    """Every E8M0 scale code against ml_dtypes.float8_e8m0fnu (2^(c-127), 0xFF NaN), through
    an element of value 1 (MXINT8 code 64 = 1.0 * 2^0)."""
    codes = np.arange(256, dtype=np.uint8)
    want = codes.view(ml_dtypes.float8_e8m0fnu).astype(np.float64)
    fmt = mxsim.MXINT8.with_block_size(1)
    t = MXTensor(np.full(256, 64, np.int8), codes.copy(), fmt, 0, (256,))
    np.testing.assert_array_equal(t.dequantize(np.float64), want)
    got = R.dequantize(torch.full((256,), 64, dtype=torch.int8), torch.from_numpy(codes.copy()), fmt, axis=0,
                       dtype=torch.float64)
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_decode_every_code_gpu_kernel(name):
    """MXTensor.dequantize of device codes (mxsim.gpu's dequant kernel), every code including
    the FP8 Inf/NaN ones, against ml_dtypes."""
    codes, want = _table(name)
    fmt = mxsim.get_format(name).with_block_size(1)
    t = MXTensor(codes.copy(), np.full(codes.size, 127, np.uint8), fmt, 0, (codes.size,)).to("cuda")
    _assert_same_values(t.dequantize(torch.float64).cpu().numpy(), want)
