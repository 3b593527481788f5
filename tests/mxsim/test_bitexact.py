"""The numba path (mxsim.fake_quantize / mxsim.quantize) against the independent torch
referee (mxsim.reference), bit for bit: float bit patterns (NaN positions equal, signed
zeros equal), element codes and scale codes.

Every format x rounding mode x block size (16, 32, and 7, which divides neither the length
45 nor 70) x axis, on the stacked adversarial batch plus random rows; then hypothesis
random inputs; then dtypes and a 3-D tensor.
"""

import functools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mxsim
from mxsim import reference as R
from mxsim.formats import ROUNDING_MODES
from mxsim.validate import compare_quantize

from adversarial import (
    BLOCKS,
    DEFAULT_FORMATS,
    adversarial_batches,
    blocks,
    float32_arrays,
    formats,
    mx_settings,
    random_case,
    roundings,
)


@functools.lru_cache(maxsize=None)
def _batches(fmt, block, axis):
    f = fmt.with_block_size(block)
    rng = np.random.default_rng(block * 7 + axis)
    batches = adversarial_batches(f, length=45, seed=1)
    batches[-1] = np.concatenate([batches[-1], random_case(rng, 4, 45, "normal"),
                                  random_case(rng, 4, 45, "wide")], axis=0)
    # axis 0: the blocks run down the columns of the transposed batch
    return [np.ascontiguousarray(a.T) if axis == 0 else a for a in batches]


def assert_same(res, ctx):
    msgs = [f"{check}: {bad}/{n} differ, first {msg}" for check, (n, bad, msg) in res.items() if bad]
    assert not msgs, f"{ctx}\n" + "\n".join(msgs)


def _fid(f):
    return f"{f.name}" + (f"e{f.exponent_width}" if isinstance(f, mxsim.BlockFP) and f.exponent_width != 8 else "")


def _grid():
    """Every format x rounding x block x axis. The default (fast) run takes a covering subset:
    for each format all roundings, all blocks and both axes appear, and block/axis cycle
    across formats; the full product runs with -m slow (and in mxsim.validate)."""
    out = []
    for fi, fmt in enumerate(DEFAULT_FORMATS):
        for ri, rounding in enumerate(ROUNDING_MODES):
            i = 4 * fi + ri
            fast = (BLOCKS[i % 3], (i // 3) % 2)
            for block in BLOCKS:
                for axis in (0, 1):
                    marks = () if (block, axis) == fast else (pytest.mark.slow,)
                    out.append(pytest.param(fmt, rounding, block, axis, marks=marks,
                                            id=f"{_fid(fmt)}-{rounding}-{block}-ax{axis}"))
    return out


@pytest.mark.parametrize("fmt,rounding,block,axis", _grid())
def test_adversarial_and_random(fmt, rounding, block, axis):
    f = fmt.with_block_size(block)
    for i, arr in enumerate(_batches(fmt, block, axis)):
        x = torch.from_numpy(arr)
        assert_same(compare_quantize(x, f, axis=axis, rounding=rounding, seed=i + 3),
                    f"{f} {rounding} axis={axis} batch {i}")


@mx_settings(60)
@given(a=float32_arrays(), fmt=formats, rounding=roundings, block=blocks, axis=st.sampled_from([0, 1, -1]),
       seed=st.integers(0, 2**40))
def test_hypothesis_random(a, fmt, rounding, block, axis, seed):
    f = fmt.with_block_size(block)
    assert_same(compare_quantize(torch.from_numpy(a), f, axis=axis, rounding=rounding, seed=seed),
                f"{f} {rounding} axis={axis} seed={seed} x={a.tolist()}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("fmt", [mxsim.MXINT8, mxsim.MXINT4, mxsim.MXFP8_E4M3, mxsim.MXFP4_E2M1, mxsim.BlockFP(4)], ids=_fid)
def test_other_dtypes(fmt, dtype):
    rng = np.random.default_rng(5)
    a = np.concatenate([random_case(rng, 3, 40, k) for k in ("normal", "scaled_rows", "uniform_int")])
    if dtype != torch.float64:
        a = np.clip(a, -6e4, 6e4)  # keep float16 finite
    x = torch.from_numpy(a).to(dtype)
    for rounding in ("nearest_even", "stochastic"):
        assert_same(compare_quantize(x, fmt.with_block_size(16), axis=-1, rounding=rounding), f"{fmt} {dtype}")
    if dtype == torch.float64:
        # float64 beyond float32 precision and range, and tiny values
        y = torch.tensor([[1e300, 1.0 + 2.0**-40, 1e-300, -3e-8, 2.0**-1070, 7.0, 0.1, -1e200]], dtype=torch.float64)
        assert_same(compare_quantize(y, fmt.with_block_size(4), axis=-1), f"{fmt} float64 extremes")


@pytest.mark.parametrize("fmt", [mxsim.MXINT8, mxsim.MXFP6_E3M2, mxsim.BlockFP(4)], ids=_fid)
@pytest.mark.parametrize("axis", [0, 1, 2, -2])
def test_3d_any_axis(fmt, axis):
    rng = np.random.default_rng(9)
    x = torch.from_numpy(random_case(rng, 6 * 5, 9, "scaled_rows").reshape(6, 5, 9))
    for rounding in ROUNDING_MODES:
        assert_same(compare_quantize(x, fmt.with_block_size(4), axis=axis, rounding=rounding, seed=2),
                    f"{fmt} axis={axis} {rounding}")


def test_fake_quantize_equals_dequantized_codes_reference():
    """Within the referee: dequantize(quantize(x)) == fake_quantize(x) bit for bit, except
    BlockFP pass-through elements and BlockFP -0.0 (code 0 has no sign)."""
    rng = np.random.default_rng(3)
    x = torch.from_numpy(np.concatenate([random_case(rng, 4, 45, k) for k in ("normal", "wide", "heavy")]))
    for fmt in DEFAULT_FORMATS:
        f = fmt.with_block_size(16)
        c, s = R.quantize(x, f)
        d = R.dequantize(c, s, f, axis=-1)
        fq = R.fake_quantize(x, f)
        ok = (d.view(torch.int32) == fq.view(torch.int32)) | (torch.isnan(d) & torch.isnan(fq))
        if isinstance(f, mxsim.BlockFP):
            ok |= x.abs() <= np.float32(1e-8)
            ok |= (fq == 0) & (d == 0)
        assert ok.all(), f


def test_run_validation_counts():
    from mxsim.validate import run_validation

    df = run_validation(n_random=1, formats=["MXINT4"], roundings=("nearest_even",), blocks=(7,), axes=(1,), matmul=False)
    assert set(df.check) == {"fake_quantize", "codes", "scales"}
    assert (df.n_values > 0).all() and int(df.n_mismatch.sum()) == 0, df.first_mismatch.dropna().tolist()


@pytest.mark.parametrize("fmt", [mxsim.MXFP8_E5M2, mxsim.MXFP8_E4M3, mxsim.MXFP4_E2M1], ids=_fid)
def test_mxfp_zeros_beside_tiny_values(fmt):
    # found by hypothesis: +-0 in a block whose scale is near the bottom of E8M0 (amax ~2^-111)
    # must code 0 / the sign bit (the float32 fast kernel once derived a wrong element
    # exponent for them); also a float32 subnormal element (the generic-arithmetic block)
    x = torch.tensor([[0.0, 3.4665746257256777e-34, -0.0], [-0.0, 2.0**-140, 2.0**-126]], dtype=torch.float32)
    for rounding in ("nearest_even", "nearest_away", "floor"):
        assert_same(compare_quantize(x, fmt.with_block_size(3), axis=1, rounding=rounding), f"{fmt} {rounding}")


@pytest.mark.parametrize("width", [4, 8])
@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_blockfp_scale_extremes_and_ties(width, rounding):
    """BlockFP blocks of 16 whose exponent e runs over [-127, 127] (clamps included; the CPU
    kernel works in float32 while 2^(e - width + 1) and its inverse are normal float32 and in
    float64 beyond, so e near -127 + width and 127 are both sides of that switch), each with
    elements on every rounding tie of its quantum and one float32 ulp either side, signs
    mixed, values under the 1e-8 passthrough and subnormals, next to a finite block (pairs)."""
    rng = np.random.default_rng(width)
    top = 2 ** (width - 1) - 1
    halves = np.arange(0, 2 * top + 2) * 0.5  # 0, 0.5, ..., top + 0.5 in quantum units
    rows = []
    for e in list(range(-150, -110)) + list(range(-20, 20, 3)) + list(range(110, 128)):
        amax = np.float32(2.0**e) if e >= -149 else np.float32(0)
        q = 2.0 ** (min(max(e, -127), 127) - (width - 1))
        for sel in range(2):
            el = (halves[sel::2][:15] * q).astype(np.float32)
            el = np.where(rng.random(el.size) < 0.4, np.nextafter(el, np.float32(np.inf)), el)
            el = np.where(rng.random(el.size) < 0.2, np.nextafter(el, np.float32(0)), el)
            row = np.zeros(16, np.float32)
            row[0] = amax
            row[1:1 + el.size] = np.minimum(el, amax) if amax > 0 else el
            row *= np.where(rng.random(16) < 0.5, -1, 1).astype(np.float32)
            rows.append(rng.permutation(row))
    x = np.concatenate(rows)
    x[5:9] = [3e-9, -9e-9, 1e-45, -1e-40]
    x = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 48)))
    f = mxsim.BlockFP(width).with_block_size(16)
    assert_same(compare_quantize(x, f, axis=-1, rounding=rounding, seed=11), f"{f} {rounding}")


# (format, ebits, mbits, bias) of OCP MX v1.0's element formats
MXFP_STANDARD = [pytest.param(f, e, m, b, id=n) for f, e, m, b, n in [
    (mxsim.MXFP8_E4M3, 4, 3, 7, "E4M3"), (mxsim.MXFP8_E5M2, 5, 2, 15, "E5M2"), (mxsim.MXFP6_E3M2, 3, 2, 3, "E3M2"),
    (mxsim.MXFP6_E2M3, 2, 3, 1, "E2M3"), (mxsim.MXFP4_E2M1, 2, 1, 1, "E2M1")]]


def _mxfp_grid_and_midpoints(ebits, mbits, bias):
    """Every non-negative element value of an MXFP format with IEEE-style subnormals (OCP v1.0
    Table 1: E4M3's top code is NaN, so its largest normal is 1.75 * 2^8), written out from
    the field definitions, and the midpoint of each pair of neighbours (the rounding ties)."""
    sub = [m * 2.0 ** (1 - bias - mbits) for m in range(2**mbits)]
    normal = [(1 + m / 2**mbits) * 2.0 ** (e - bias) for e in range(1, 2**ebits) for m in range(2**mbits)]
    grid = np.array(sorted(set(sub + normal)))
    if (ebits, mbits) == (4, 3):
        grid = grid[grid <= 448.0]
    elif ebits == 5:
        grid = grid[grid <= 57344.0]  # E5M2's top exponent is Inf/NaN
    return grid, (grid[:-1] + grid[1:]) / 2


def _blocks_at_scale_extremes(rng, exponents, values_at):
    """Blocks of 32 float32s, two per amax 2^e (e in ``exponents``): amax itself and 31
    values_at(e) (exact multiples of the block's element step, scaled), each nudged one float32
    ulp up (30%) or down (20%), capped at amax, signs mixed, shuffled; then float32 subnormals,
    the smallest normal and -0.0 written over five of them. Rows of 64 (two blocks)."""
    rows = []
    for e in exponents:
        amax = np.float32(2.0**e)
        for _ in range(2):
            el = values_at(e).astype(np.float32)  # rounds only where the scale leaves float32 (subnormals)
            el = np.where(rng.random(31) < 0.3, np.nextafter(el, np.float32(np.inf)), el)
            el = np.where(rng.random(31) < 0.2, np.nextafter(el, np.float32(0)), el)
            row = np.concatenate([[amax], np.minimum(el, amax)]).astype(np.float32)
            row *= np.where(rng.random(32) < 0.5, -1, 1).astype(np.float32)
            rows.append(rng.permutation(row))
    x = np.concatenate(rows)
    x[3:8] = [1e-45, -1e-40, 2.0**-126, -0.0, 3e-39]
    return torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 64)))


@pytest.mark.parametrize("fmt,ebits,mbits,bias", MXFP_STANDARD)
@pytest.mark.parametrize("rounding", ["nearest_even", "nearest_away", "floor"])
@pytest.mark.parametrize("rule", ["floor", "rceil"])
def test_mxfp_scale_extremes_and_ties(fmt, ebits, mbits, bias, rounding, rule):
    """MXFP blocks of 32 whose amax 2^e runs over float32's whole range, both sides of the
    CPU kernel's float32/float64 switch (it takes a block's elements in float32 where 2^s and
    2^-s are normal float32s: scale exponents |s| <= 126), each holding element grid values
    and rounding ties (midpoints) at that scale, one float32 ulp either side, mixed signs,
    float32 subnormals and -0.0, against the referee bit for bit."""
    rng = np.random.default_rng(ebits * 10 + mbits)
    grid, mids = _mxfp_grid_and_midpoints(ebits, mbits, bias)
    emax = int(np.floor(np.log2(grid[-1])))  # the largest normal's binade
    # grid values and ties (midpoints) in equal shares, at the floor rule's scale 2^(e - emax)
    pool = np.concatenate([grid, mids])
    x = _blocks_at_scale_extremes(rng, list(range(-149, -100, 2)) + list(range(-12, 12, 5)) + list(range(110, 128)),
                                  lambda e: rng.choice(pool, 31) * 2.0 ** (e - emax))
    f = fmt.with_scale_rule(rule)
    assert_same(compare_quantize(x, f, axis=-1, rounding=rounding), f"{f} {rounding}")


@pytest.mark.parametrize("bits", [8, 6, 4, 2])
@pytest.mark.parametrize("rounding", ["nearest_even", "nearest_away", "floor"])
@pytest.mark.parametrize("rule", ["floor", "ceil"])
def test_mxint_scale_extremes_and_ties(bits, rounding, rule):
    """MXINT blocks of 32 whose amax 2^e runs over float32's range, both sides of the CPU
    kernel's float32/float64 switch (float32 where the element step 2^(s - bits + 2) and its
    inverse are normal float32s), holding every integer k and tie k + 1/2 of the element step
    (OCP MX v1.0: elements are two's-complement integers k * 2^(2 - bits), |k| <= 2^(bits-1) - 1)
    at that scale, one float32 ulp either side, mixed signs, subnormals and -0.0, against the
    referee bit for bit."""
    rng = np.random.default_rng(bits)
    top = 2 ** (bits - 1) - 1
    units = np.concatenate([np.arange(top + 1), np.arange(top) + 0.5])
    # at the floor rule's element step 2^(e - (bits - 2)) for amax 2^e
    x = _blocks_at_scale_extremes(rng, list(range(-149, -110, 2)) + list(range(-12, 12, 5)) + list(range(110, 128)),
                                  lambda e: rng.choice(units, 31) * 2.0 ** (e - (bits - 2)))
    f = mxsim.parse_format(f"MXINT{bits}").with_scale_rule(rule)
    assert_same(compare_quantize(x, f, axis=-1, rounding=rounding), f"{f} {rounding}")
