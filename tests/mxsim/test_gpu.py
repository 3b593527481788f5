"""The Triton path (mxsim.gpu, CUDA tensors) against the torch referee and the numba path,
bit for bit: fake_quantize values, codes, scales, dequantize, and matmul for every
accumulator, on the adversarial batches, random inputs and adversarial code/scale tensors.

Runs on a CUDA device. Without one it runs on CPU tensors through Triton's interpreter when
TRITON_INTERPRET=1 is set (``TRITON_INTERPRET=1 pytest tests/mxsim/test_gpu.py``: checks the
kernels' logic on numpy, not their compiled code); otherwise (CI: no GPU, Triton is not a
dependency of the CPU install) every test skips.
"""

import os

import numpy as np
import pytest
import torch

import mxsim
from mxsim import reference as R
from mxsim.formats import ROUNDING_MODES
from mxsim.tensor import MXTensor
from mxsim.validate import _bits_equal, adversarial_batches, random_case, scale_rule_batch

triton = pytest.importorskip("triton")
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
if torch.cuda.is_available() and not INTERPRET:
    DEV = torch.device("cuda")
elif INTERPRET:
    DEV = torch.device("cpu")
    import triton.runtime.interpreter as _ti

    if not getattr(_ti, "_mxsim_index_shim", False):
        # Triton 3.6's interpreter makes scalar kernel arguments 1-element arrays and indexes
        # them with int(array), which numpy >= 2.4 refuses for 1-d arrays (a loop bound like
        # range(0, NB) then fails); take the element instead. Interpreter only: compiled code
        # never sees this.
        _orig_patch = _ti._patch_lang_tensor

        def _patch_lang_tensor(tensor, scope):
            _orig_patch(tensor, scope)
            scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

        _ti._patch_lang_tensor = _patch_lang_tensor
        _ti._mxsim_index_shim = True
else:
    pytestmark = pytest.mark.skip(reason="needs CUDA (or TRITON_INTERPRET=1 for the interpreter)")
    DEV = None

from test_bitexact_matmul import ACCS, PAIRS, _random_codes, _scales, _tensor  # noqa: E402

MX_FORMATS = [mxsim.MXINT8, mxsim.MXINT6, mxsim.MXINT4, mxsim.MXINT2, mxsim.MXFP8_E4M3, mxsim.MXFP8_E5M2,
              mxsim.MXFP6_E3M2, mxsim.MXFP6_E2M3, mxsim.MXFP4_E2M1]


def on_dev(q):
    """q with its codes/scales on the test device (torch CPU tensors for the interpreter)."""
    if DEV.type != "cpu":
        return q.to(DEV)
    host = q.cpu()
    return host._replace(torch.from_numpy(host.codes), torch.from_numpy(host.scales))


def same(a, b):
    a, b = a.cpu(), b.cpu()
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool((_bits_equal(a, b) if a.dtype.is_floating_point else a == b).all())


def _grid():
    out = []
    for fi, fmt in enumerate(MX_FORMATS):
        for ri, rounding in enumerate(ROUNDING_MODES):
            for block in (32, 7) if not INTERPRET else ((16, 7)[(fi + ri) % 2],):
                out.append(pytest.param(fmt, rounding, block, id=f"{fmt.name}-{rounding}-{block}"))
    return out


@pytest.mark.parametrize("fmt,rounding,block", _grid())
def test_quantize_matches_referee_and_numba(fmt, rounding, block):
    f = fmt.with_block_size(block)
    rng = np.random.default_rng(block)
    batches = adversarial_batches(f, length=45, seed=1)
    batches.append(np.concatenate([random_case(rng, 4, 45, k) for k in ("normal", "wide", "heavy")]))
    for i, arr in enumerate(batches):
        for axis in (0, 1):
            x = torch.from_numpy(np.ascontiguousarray(arr.T) if axis == 0 else arr)
            xd = x.to(DEV)
            kw = dict(axis=axis, rounding=rounding, seed=i + 3)
            got = mxsim.fake_quantize(xd, f, **kw)
            assert got.device == xd.device
            ref = R.fake_quantize(x, f, **kw)
            assert same(got, ref), f"fake_quantize batch {i} axis {axis}"
            assert same(got, torch.from_numpy(mxsim.fake_quantize(x.numpy(), f, **kw)))
            q = mxsim.quantize(xd, f, **kw)
            assert q.device == xd.device
            rc, rs = R.quantize(x, f, **kw)
            assert same(q.codes, rc) and same(q.scales, rs), f"codes/scales batch {i} axis {axis}"
            assert same(q.dequantize(), R.dequantize(rc, rs, f, axis=axis)), f"dequantize batch {i}"
            assert q.to_bytes() == mxsim.quantize(x, f, **kw).to_bytes()


RULE_FORMATS = [mxsim.MXINT8, mxsim.MXINT2, mxsim.MXFP8_E4M3, mxsim.MXFP8_E5M2, mxsim.MXFP6_E3M2,
                mxsim.MXFP6_E2M3, mxsim.MXFP4_E2M1]


@pytest.mark.parametrize("rule", ["ceil", "even", "rceil"])  # floor: the tests above
def test_scale_rules_match_referee_and_numba(rule):
    """Every MX element format (and MXINT2: no fraction bits for "even"), blocks on each rule's
    decision points, float32 and float64 input (rceil's quotient is float32 for float32 input,
    float64 for float64), plus adversarial blocks; values, codes and scales bit for bit."""
    rng = np.random.default_rng(13)
    for fmt in RULE_FORMATS:
        f = fmt.with_scale_rule(rule)
        x = np.concatenate([scale_rule_batch(f, rng), random_case(rng, 4, 32, "wide"),
                            adversarial_batches(f.with_block_size(32), length=32, seed=2)[0][:24]])
        # amax = 448 (1 + 2^-40): rceil's float64 quotient is above 1 (scale 2^1), float32's is 1
        x64 = np.concatenate([x.astype(np.float64), np.full((1, 32), 448 * (1 + 2.0**-40))])
        for arr in (x, x64):
            t = torch.from_numpy(arr)
            got = mxsim.fake_quantize(t.to(DEV), f)
            assert same(got, R.fake_quantize(t, f)), f"{f.name} {arr.dtype} values vs referee"
            assert same(got, torch.from_numpy(mxsim.fake_quantize(arr, f))), f"{f.name} {arr.dtype} vs numba"
            q = mxsim.quantize(t.to(DEV), f)
            rc, rs = R.quantize(t, f)
            assert same(q.codes, rc) and same(q.scales, rs), f"{f.name} {arr.dtype} codes/scales"
    f = mxsim.MXFP8_E4M3.with_scale_rule("rceil")
    assert int(mxsim.quantize(torch.from_numpy(x64[-1:]).to(DEV), f).scales[0, 0]) == 128


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_and_3d(dtype):
    rng = np.random.default_rng(5)
    x = torch.from_numpy(np.clip(random_case(rng, 6 * 5, 9, "scaled_rows"), -6e4, 6e4).reshape(6, 5, 9)).to(dtype)
    for fmt in (mxsim.MXINT8.with_block_size(4), mxsim.MXFP6_E3M2.with_block_size(4)):
        for axis in (0, 2, -2):
            got = mxsim.fake_quantize(x.to(DEV), fmt, axis=axis, rounding="stochastic", seed=7)
            assert got.dtype == dtype and same(got, R.fake_quantize(x, fmt, axis=axis, rounding="stochastic", seed=7))


def test_mxtensor_device_round_trip():
    x = torch.randn(8, 64)
    q = mxsim.quantize(x.to(DEV), "MXFP4_E2M1")
    host = q.cpu()
    assert isinstance(host.codes, np.ndarray) and host.to_bytes() == q.to_bytes()
    back = on_dev(host)
    assert same(back.codes, q.codes) and same(back.dequantize(), q.dequantize())
    again = mxsim.MXTensor.from_bytes(q.to_bytes(), "MXFP4_E2M1", (8, 64))
    assert np.array_equal(again.codes, host.codes)


def _check_matmul(qa, qb, acc, lanes=None):
    kw = {} if lanes is None else {"lanes": lanes}
    got = mxsim.matmul(on_dev(qa), on_dev(qb), acc, **kw)
    assert isinstance(got, torch.Tensor) and got.device.type == DEV.type
    racc = acc if not isinstance(acc, tuple) else mxsim.FixedPoint(acc[1], acc[2], acc[3])
    ref = R.matmul(torch.from_numpy(qa.codes), torch.from_numpy(qa.scales), qa.fmt, torch.from_numpy(qb.codes),
                   torch.from_numpy(qb.scales), qb.fmt, accumulator=racc, lanes=lanes)
    assert same(got, ref), f"{qa.fmt.name}x{qb.fmt.name} {acc} lanes={lanes}"
    assert same(got, torch.from_numpy(np.ascontiguousarray(mxsim.matmul(qa, qb, racc, **kw))))
    if isinstance(racc, mxsim.FixedPoint):
        return _check_overflow(qa, qb, racc, ref)
    return 0


def _check_overflow(qa, qb, acc, ref):
    """return_overflow on the device (one kernel: the float64 twin of the 64-bit sum) against
    its definition on the referee: the outputs that differ from FixedPoint(64, frac) (NaN
    outputs excluded); and the numba path's two GEMMs."""
    wide = R.matmul(torch.from_numpy(qa.codes), torch.from_numpy(qa.scales), qa.fmt, torch.from_numpy(qb.codes),
                    torch.from_numpy(qb.scales), qb.fmt, accumulator=mxsim.FixedPoint(64, acc.frac_bits))
    want = (ref != wide) & ~ref.isnan()
    got, mask = mxsim.matmul(on_dev(qa), on_dev(qb), acc, return_overflow=True)
    assert same(got, ref) and mask.dtype == torch.bool and mask.device.type == DEV.type
    assert torch.equal(mask.cpu(), want), f"{qa.fmt.name}x{qb.fmt.name} {acc}: {mask.cpu()} != {want}"
    host, hmask = mxsim.matmul(qa, qb, acc, return_overflow=True)
    assert np.array_equal(hmask, want.numpy())
    return int(want.sum())


def _accs():
    return [a if not isinstance(a, tuple) else mxsim.FixedPoint(a[1], a[2], a[3]) for a in ACCS]


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0].name}x{p[1].name}")
def test_matmul_random_and_adversarial(pair):
    rng = np.random.default_rng(3)
    for block in (16, 7) if not INTERPRET else (16,):
        fa, fb = pair[0].with_block_size(block), pair[1].with_block_size(block)
        a = np.concatenate([random_case(rng, 2, 50, kind) for kind in ("normal", "scaled_rows", "wide")])
        b = np.ascontiguousarray(np.concatenate([random_case(rng, 1, 50, k) for k in ("normal", "wide")]).T)
        qa, qb = mxsim.quantize(a, fa, axis=1), mxsim.quantize(b, fb, axis=0)
        for acc in _accs():
            _check_matmul(qa, qb, acc)
        _check_matmul(qa, qb, "fp32", 1)
    k = 16
    fa, fb = pair[0].with_block_size(k), pair[1].with_block_size(k)
    M, K, N = 4, 3 * k + 5, 3
    nb = -(-K // k)
    for regime in ("wide", "high", "low") if not INTERPRET else ("wide",):
        ac, bc = _random_codes(rng, fa, (M, K)), _random_codes(rng, fb, (K, N))
        asc, bsc = _scales(rng, fa, (M, nb), regime), _scales(rng, fb, (nb, N), regime)
        asc[3, 1] = fa.scale.nan_code
        qa, qb = _tensor(ac, asc, fa, 1), _tensor(bc, bsc, fb, 0)
        for acc in _accs():
            _check_matmul(qa, qb, acc)
        _check_matmul(qa, qb, "fp32", 4)


def test_matmul_results_stay_on_device_and_batch():
    A = torch.randn(2, 3, 64)
    B = torch.randn(64, 5)
    a, b = mxsim.quantize(A.to(DEV), "MXINT8"), mxsim.quantize(B.to(DEV), "MXINT8", axis=0)
    out = mxsim.matmul(a, b)
    assert out.shape == (2, 3, 5) and out.dtype == torch.float64 and out.device.type == DEV.type
    want = a.dequantize(torch.float64).cpu() @ b.dequantize(torch.float64).cpu()  # exact here
    assert torch.equal(out.cpu(), want)
    with pytest.raises(ValueError, match="same device"):
        mxsim.matmul(a, b.cpu())


# -- the bit-pattern kernel (mxsim/gpu/quant_f32.py): bfloat16/float16 read natively, values
# written in the input's dtype, fake_quantize fused; every 16-bit pattern, bit for bit


def _all_patterns(dtype, rng):
    """Every bfloat16/float16 bit pattern, as (R, 32) rows: in order (each block one binade and
    sign: every mantissa against every rounding), shuffled (mixed binades, NaN/Inf blocks), and
    blocks whose exponents sit a few binades under a random top (subnormal tops included)."""
    allbits = np.arange(-(1 << 15), 1 << 15, dtype=np.int64).astype(np.int16)
    mbits = 7 if dtype == torch.bfloat16 else 10
    top = rng.integers(0, (1 << (15 - mbits)) - 1, size=(256, 1))
    exp = np.clip(top - rng.geometric(0.4, size=(256, 32)) + 1, 0, None)
    mant = rng.integers(0, 1 << mbits, size=(256, 32))
    sign = rng.integers(0, 2, size=(256, 32)) << 15
    near = ((exp << mbits) | mant | sign).astype(np.uint16).view(np.int16)
    bits = np.concatenate([allbits, rng.permutation(allbits), near.ravel()]).reshape(-1, 32)
    return torch.from_numpy(bits).view(dtype)


def _cpu_numba(x, f, **kw):
    """The numba path's answer for a torch float16/bfloat16 tensor (float32 work, then cast)."""
    return torch.from_numpy(mxsim.fake_quantize(x.float().numpy(), f, **kw)).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("fmt", MX_FORMATS, ids=lambda f: f.name)
def test_narrow_input_every_pattern(fmt, dtype):
    rng = np.random.default_rng(11)
    x = _all_patterns(dtype, rng)
    rules = ["floor", "ceil", "even", "rceil"]
    for j, rounding in enumerate(ROUNDING_MODES):
        f = fmt.with_scale_rule(rules[j])  # each rounding with one rule: every pair over the formats
        kw = dict(rounding=rounding, seed=5)
        got = mxsim.fake_quantize(x.to(DEV), f, **kw)
        assert got.dtype == dtype
        assert same(got, R.fake_quantize(x, f, **kw)), f"{f.name} {rounding} {rules[j]} vs referee"
        assert same(got, _cpu_numba(x, f, **kw)), f"{f.name} {rounding} {rules[j]} vs numba"
        q = mxsim.quantize(x.to(DEV), f, **kw)
        rc, rs = R.quantize(x, f, **kw)
        assert same(q.codes, rc) and same(q.scales, rs), f"{f.name} {rounding} codes/scales"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "fp16"])
def test_bit_kernel_ragged_axes_stochastic(dtype):
    """Rows that do not fill the last block (the kernel's non-flat addressing), both axes of a
    3-D tensor (the stochastic stream's flat index through ``inner``), blocks 7/16/32."""
    rng = np.random.default_rng(17)
    x = torch.from_numpy(np.clip(random_case(rng, 6 * 4, 45, "wide"), -6e4, 6e4).reshape(6, 4, 45)).to(dtype)
    x[0, 0, :3] = torch.tensor([-0.0, float("inf"), 1.0])
    x[1, 1, 7:14] = -0.0
    for fmt in (mxsim.MXINT8, mxsim.MXFP8_E4M3, mxsim.MXFP4_E2M1, mxsim.MXFP6_E3M2):
        for block, axis in ((7, 2), (16, 0), (32, 1), (32, 2)):
            f = fmt.with_block_size(block)
            for rounding in ("nearest_even", "stochastic"):
                kw = dict(axis=axis, rounding=rounding, seed=9)
                got = mxsim.fake_quantize(x.to(DEV), f, **kw)
                assert same(got, R.fake_quantize(x, f, **kw)), f"{f.name} b{block} axis {axis} {rounding}"
                q = mxsim.quantize(x.to(DEV), f, **kw)
                rc, rs = R.quantize(x, f, **kw)
                assert same(q.codes, rc) and same(q.scales, rs), f"{f.name} b{block} axis {axis} codes"


def test_narrow_input_takes_the_fused_bit_kernel(monkeypatch):
    """float32/bfloat16/float16 never reach the float64 kernel nor a widened copy; fake_quantize
    asks for no codes. float64 still takes the float64 kernel."""
    import mxsim.gpu as G

    calls = []
    real = G._launch_f32

    def spy(x2, fmt, rounding, seed, inner, want_codes, want_deq):
        calls.append((x2.dtype, want_codes, want_deq))
        return real(x2, fmt, rounding, seed, inner, want_codes, want_deq)

    def no_f64(*a, **k):
        raise AssertionError("the float64 kernel ran")

    monkeypatch.setattr(G, "_launch_f32", spy)
    monkeypatch.setattr(G, "_launch_quant", no_f64)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = torch.randn(4, 64).to(dtype).to(DEV)
        assert mxsim.fake_quantize(x, "MXFP8_E4M3").dtype == dtype
        mxsim.quantize(x, "MXINT8")
    assert calls == [(d, w, not w) for d in (torch.float32, torch.bfloat16, torch.float16) for w in (False, True)]
    with pytest.raises(AssertionError, match="float64 kernel"):
        mxsim.fake_quantize(torch.randn(4, 64, dtype=torch.float64).to(DEV), "MXINT8")


def test_float32_bit_patterns_near_block_tops():
    """float32 blocks of random bit patterns a few binades under a random top exponent field
    (0: subnormal blocks, 255: NaN/Inf ones), random signs and mantissas (ties are rare here:
    the bfloat16 test covers them), every format x rounding, against the referee."""
    rng = np.random.default_rng(23)
    top = rng.integers(0, 256, size=(96, 1))
    top[:8] = 0
    exp = np.clip(top - rng.geometric(0.3, size=(96, 32)) + 1, 0, None)
    bits = (exp << 23) | rng.integers(0, 1 << 23, size=(96, 32)) | (rng.integers(0, 2, size=(96, 32)) << 31)
    bits[:4, :8] = rng.integers(0, 8, size=(4, 8))  # the smallest subnormals
    x = torch.from_numpy(bits.astype(np.uint32).view(np.int32)).view(torch.float32)
    for fmt in MX_FORMATS:
        for rounding in ROUNDING_MODES:
            got = mxsim.fake_quantize(x.to(DEV), fmt, rounding=rounding, seed=2)
            assert same(got, R.fake_quantize(x, fmt, rounding=rounding, seed=2)), f"{fmt.name} {rounding}"


# -- BlockFP on the device (mxsim/gpu/bfp.py): was the numba path through host memory

BFP_FORMATS = [mxsim.formats.BlockFP(4), mxsim.formats.BlockFP(8, block_size=7),
               mxsim.formats.BlockFP(6, exponent_width=4), mxsim.formats.BlockFP(8, exponent_bias=0),
               mxsim.formats.BlockFP(4, exponent_bias=254), mxsim.formats.BlockFP(5, zero_passthrough=False)]


def test_bfp_thresholds_reproduce_the_cpu_exponent():
    """The device's table lookup gives the numba path's bfp_exponent_of_bits on every float32
    subnormal, every normal fraction below 2^14 and random others, hand-checked at 2^E."""
    from mxsim.gpu import _bfp_thresholds_cpu
    from mxsim.kernels.quant import bfp_exponents

    thr = _bfp_thresholds_cpu().numpy().astype(np.int64)
    rng = np.random.default_rng(4)
    normal = ((np.arange(1, 255)[:, None] << 23) | np.arange(1 << 14)).ravel()
    bits = np.concatenate([np.arange(1, 1 << 23), normal, rng.integers(1 << 23, 0x7F800000, 1 << 20)])
    want = np.empty(bits.size, np.int64)
    bfp_exponents(bits.astype(np.int32).view(np.float32), want)
    sub = bits < (1 << 23)
    p = np.where(sub, np.floor(np.log2(np.maximum(bits, 1))), 0).astype(np.int64)
    fl = np.where(sub, p - 149, (bits >> 23) - 127)
    fr = np.where(sub, (bits - (1 << p)) << (23 - p), bits & 0x7FFFFF)
    assert np.array_equal(fl + (fr >= thr[fl + 149]), want)
    powers = np.arange(1, 255) << 23  # amax = 2^E exactly: ceil(log2) = E
    got = np.empty(powers.size, np.int64)
    bfp_exponents(powers.astype(np.int32).view(np.float32), got)
    assert np.array_equal(got, np.arange(1, 255) - 127)


@pytest.mark.parametrize("fmt", BFP_FORMATS, ids=lambda f: f"{f.name}-b{f.block_size}-ew{f.exponent_width}-"
                         f"bias{f.bias}-pt{int(f.zero_passthrough)}")
def test_blockfp_on_device_matches_referee_and_numba(fmt):
    rng = np.random.default_rng(fmt.width + fmt.bias)
    batches = adversarial_batches(fmt, length=45, seed=1)
    batches.append(np.concatenate([random_case(rng, 4, 45, k) for k in ("normal", "wide", "heavy")]))
    tiny = np.full((3, 45), 3e-9, np.float32)
    tiny[0, :20] = 0.0
    tiny[1, ::2] = -1e-9  # fl32(x + 1e-9) == 0: sign 0
    tiny[2] = np.float32(1e-9) * rng.integers(-3, 4, 45)
    batches += [tiny, np.zeros((2, 45), np.float32)]
    for i, arr in enumerate(batches):
        for axis, rounding in ((1, ROUNDING_MODES[i % 4]), (0, "stochastic")):
            x = torch.from_numpy(np.ascontiguousarray(arr.T) if axis == 0 else arr)
            kw = dict(axis=axis, rounding=rounding, seed=i + 3)
            got = mxsim.fake_quantize(x.to(DEV), fmt, **kw)
            assert same(got, R.fake_quantize(x, fmt, **kw)), f"fake_quantize batch {i} axis {axis} {rounding}"
            assert same(got, torch.from_numpy(mxsim.fake_quantize(x.numpy(), fmt, **kw)))
            q = mxsim.quantize(x.to(DEV), fmt, **kw)
            assert isinstance(q.codes, torch.Tensor) and q.codes.device.type == DEV.type
            rc, rs = R.quantize(x, fmt, **kw)
            assert same(q.codes, rc) and same(q.scales, rs), f"codes/scales batch {i} axis {axis}"
            assert same(q.dequantize(), R.dequantize(rc, rs, fmt, axis=axis)), f"dequantize batch {i}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_blockfp_other_dtypes(dtype):
    """float64 rounds to float32 first (beyond its range: Inf, a NaN block); narrow dtypes
    widen exactly; the value is cast back as the referee does."""
    rng = np.random.default_rng(8)
    x = torch.from_numpy(random_case(rng, 6, 40, "wide")).to(torch.float64)
    if dtype == torch.float64:
        x[0, 3] = 1e39
        x[1, :] *= 1 + 2.0**-30
    x = x.clamp(-6e4, 6e4).to(dtype) if dtype == torch.float16 else x.to(dtype)
    for fmt in BFP_FORMATS[:3]:
        got = mxsim.fake_quantize(x.to(DEV), fmt, rounding="stochastic", seed=1)
        assert got.dtype == dtype and same(got, R.fake_quantize(x, fmt, rounding="stochastic", seed=1))
FAST_PAIRS = [(mxsim.MXINT8, mxsim.MXINT8), (mxsim.MXINT4, mxsim.MXINT8), (mxsim.MXFP4_E2M1, mxsim.MXFP4_E2M1),
              (mxsim.BlockFP(8), mxsim.MXINT8)]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
@pytest.mark.parametrize("pair", FAST_PAIRS, ids=lambda p: f"{p[0].name}x{p[1].name}")
def test_matmul_fast_epilogue_and_general_path_agree(pair, fast, monkeypatch):
    """The float32/int32 epilogue (chosen per tile and block from the scale exponents) and the
    general float64/int64 code, each against the referee: scales per block alternate between
    ones the proof accepts and ones it refuses (2^127, 2^-127 zero-block exponents, the float32
    overflow edge), so the accumulator crosses between the two codes along K; values near
    the fixed-point limits saturate and wrap."""
    from mxsim import gpu

    monkeypatch.setattr(gpu, "MM_FAST", fast)
    rng = np.random.default_rng(11)
    k = 16
    fa, fb = pair[0].with_block_size(k), pair[1].with_block_size(k)
    M, N, nb = 5, 4, 6
    K = nb * k - 3
    ac, bc = _random_codes(rng, fa, (M, K)), _random_codes(rng, fb, (K, N))
    ac[0], bc[:, 0] = fa.max_code if not isinstance(fa, mxsim.MXFPFormat) else 0x07, 0  # one-sided extremes
    asc = rng.integers(120, 136, size=(M, nb))
    bsc = rng.integers(120, 136, size=(nb, N))
    asc[:, 1] = 254  # refused: 2^127 (float32 overflow to Inf; fixed point saturates, wraps to 0)
    asc[1, 3], bsc[3, 2] = 0, 0  # exponent -127 on both sides: below float32's exact range
    bsc[4, 1] = 127 + 30  # large but inside: terms near 2^31 (int32 fixed point edge)
    asc[2] = 127 + 12
    qa = _tensor(ac, np.minimum(asc, 254), fa, 1)
    qb = _tensor(bc, np.minimum(bsc, 254), fb, 0)
    n_over = {}
    for acc in _accs() + [mxsim.FixedPoint(32, 0, "saturate"), mxsim.FixedPoint(32, -8, "wrap"),
                          mxsim.FixedPoint(31, 4, "saturate"), mxsim.FixedPoint(12, 2, "wrap")]:
        n_over[str(acc)] = _check_matmul(qa, qb, acc)
    # the inputs make both overflow modes change outputs (and leave others alone), so the
    # overflow masks above were checked on both values
    assert n_over["fixed:32:0"] > 0 and n_over["fixed:12:2:wrap"] > 0 and min(n_over.values()) < M * N
    _check_matmul(qa, qb, "fp32", 4)
    qa2 = _tensor(ac, np.full((M, nb), 127 + 3), fa, 1)  # every tile on the fast side
    for acc in (mxsim.FP32(), mxsim.FixedPoint(32, 16), mxsim.FixedPoint(24, 8, "wrap"), mxsim.FixedPoint(20, 4)):
        _check_matmul(qa2, _tensor(bc, np.full((nb, N), 127 + 5), fb, 0), acc)


def test_matmul_e5m2_on_device(monkeypatch):
    """MXFP8_E5M2 matmul stays on the device: the CPU matmul is made to fail. The largest
    products (every element 57344 = 7 * 2^13, block 32: a block sum of 49 * 2^63 in integer
    units, beyond int64) give the hand value 32 * 57344^2 = 49 * 2^31 (exact in float32);
    a 36-bit fixed point saturates to 2^35 - 1 or wraps to (49 - 64) * 2^31. Random codes and scales (block sums spanning
    both int64 words): fp32 and fixed point on the device against the referee; exact may
    recompute rows on the CPU (inexact float64 running sums), so it runs unpatched."""
    import mxsim.api as api
    import mxsim.datapath as dp

    def refuse(*args, **kwargs):
        raise AssertionError("the CPU matmul ran")

    f = mxsim.MXFP8_E5M2
    a = MXTensor(np.full((2, 32), 0x7B, np.uint8), np.full((2, 1), 127, np.uint8), f, 1, (2, 32))
    b = MXTensor(np.full((32, 3), 0x7B, np.uint8), np.full((1, 3), 127, np.uint8), f, 0, (32, 3))
    want = 32 * 57344.0**2
    rng = np.random.default_rng(4)
    qa = _tensor(_random_codes(rng, f, (3, 64)), rng.integers(120, 150, size=(3, 2)), f, 1)
    qb = _tensor(_random_codes(rng, f, (64, 2)), rng.integers(120, 150, size=(2, 2)), f, 0)
    with monkeypatch.context() as mp:
        mp.setattr(dp, "matmul_cpu", refuse)
        mp.setattr(api, "matmul_cpu", refuse)
        for acc, exp in ((mxsim.Exact(), want), (mxsim.FP32(), want), (mxsim.FixedPoint(64, 0), want),
                         (mxsim.FixedPoint(36, 0), 2.0**35 - 1), (mxsim.FixedPoint(36, 0, "wrap"), want - 2.0**37)):
            got = mxsim.matmul(on_dev(a), on_dev(b), acc)
            assert got.device.type == DEV.type
            assert bool((got.cpu().double() == exp).all()), f"{acc}: {got}"
        for acc in _accs()[1:]:
            got = mxsim.matmul(on_dev(qa), on_dev(qb), acc)
            ref = R.matmul(torch.from_numpy(qa.codes), torch.from_numpy(qa.scales), f, torch.from_numpy(qb.codes),
                           torch.from_numpy(qb.scales), f, accumulator=acc)
            assert got.device.type == DEV.type and same(got, ref), f"{acc}"
    _check_matmul(qa, qb, mxsim.Exact())


@pytest.mark.parametrize("pair", [(mxsim.MXINT8, mxsim.MXINT8), (mxsim.MXFP8_E4M3, mxsim.MXINT8)],
                         ids=lambda p: f"{p[0].name}x{p[1].name}")
def test_matmul_wide_saturating_fixed_point(pair):
    """Saturating FixedPoint wider than 32 bits on pairs without E5M2 (one limb pair and
    limbs). The kernel's float32/int32 fast code must not even be compiled for them: it
    saturates to HI = 2^(W-1) - 1, out of int32's range for W > 32 (with FAST off it still
    was, as a runtime branch: CompilationError 'Scalar 9223372036854775807 is out of range
    for type int32' on the H200). Scales put block terms on both sides of 2^(W-1): the
    running sum saturates at +HI and -HI - 1 and comes back. Expected: the referee."""
    rng = np.random.default_rng(21)
    k = 16
    fa, fb = pair[0].with_block_size(k), pair[1].with_block_size(k)
    M, N, nb = 3, 2, 5
    K = nb * k
    ac, bc = _random_codes(rng, fa, (M, K)), _random_codes(rng, fb, (K, N))
    asc = rng.integers(120, 136, size=(M, nb))
    bsc = np.full((nb, N), 127)
    bsc[1], bsc[3] = 127 + 40, 127 + 60  # terms near 2^36 .. 2^64 (with the frac bits)
    qa, qb = _tensor(ac, asc, fa, 1), _tensor(bc, bsc, fb, 0)
    from mxsim import gpu

    # partial sums beyond 2^53: the kernel's float64 twin flags those outputs unsure and the
    # host's FixedPoint(64) GEMM of their rows decides (counted here: that path must run)
    fallback = []
    real = gpu._host_rows
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gpu, "_host_rows", lambda *a: fallback.append(1) or real(*a))
        for acc in (mxsim.FixedPoint(64, 0, "saturate"), mxsim.FixedPoint(64, 8, "saturate"),
                    mxsim.FixedPoint(36, 4, "saturate"), mxsim.FixedPoint(33, 0, "saturate"),
                    mxsim.FixedPoint(33, 0, "wrap")):
            _check_matmul(qa, qb, acc)
    assert fallback


def test_matmul_overflow_twin_beyond_2_53_on_the_fast_path(monkeypatch):
    """A 32-bit saturating accumulator on fast tiles (the float32/int32 code) whose block terms
    reach 2^70: the float64 twin of the 64-bit sum is no longer exact there, so those outputs
    are flagged unsure and the host's FixedPoint(64) GEMM of their rows decides (the path must
    run: counted); the block of small terms after it keeps the sure outputs' twin exact."""
    from mxsim import gpu

    monkeypatch.setattr(gpu, "MM_FAST", True)
    rng = np.random.default_rng(5)
    f = mxsim.MXINT8.with_block_size(16)
    ac, bc = _random_codes(rng, f, (4, 32)), _random_codes(rng, f, (32, 3))
    asc = np.full((4, 2), 127)
    asc[0, 0] = asc[2, 0] = 127 + 70  # rows 0 and 2: first block's terms near 2^70 (rows 1, 3 small)
    qa, qb = _tensor(ac, asc, f, 1), _tensor(bc, np.full((2, 3), 127), f, 0)
    fallback = []
    real = gpu._host_rows
    monkeypatch.setattr(gpu, "_host_rows", lambda a, r, *rest: fallback.append(sorted(r)) or real(a, r, *rest))
    for acc in (mxsim.FixedPoint(32, 0), mxsim.FixedPoint(24, 4)):
        assert _check_matmul(qa, qb, acc) > 0
    assert fallback and all(r == [0, 2] for r in fallback)


from test_scale_encodings import ENCODING_FORMATS, OTHER_SCALES, encoding_inputs, with_scale  # noqa: E402


@pytest.mark.parametrize("scale", OTHER_SCALES, ids=lambda s: s.name)
def test_other_scale_encodings_match_referee_and_numba(scale):
    """The Triton kernels read the scale's bias, NaN code and exponent range from the format:
    narrow encodings clamp at both ends (and the 8-bit bias-254 one routes float32 input with
    elements below 2^-149 through the float64 kernel); float32, bfloat16 and float64 input,
    every rounding, values, codes and scales bit for bit; matmul of such tensors too."""
    rng = np.random.default_rng(scale.bits * 1000 + scale.bias)
    for fmt in ENCODING_FORMATS:
        for block in (32, 7) if not INTERPRET else (7,):
            f = with_scale(fmt.with_block_size(block), scale)
            x32 = torch.from_numpy(encoding_inputs(f, rng))
            for x in (x32, x32.to(torch.bfloat16), x32.double()):
                for rounding in ROUNDING_MODES:
                    kw = dict(rounding=rounding, seed=5)
                    got = mxsim.fake_quantize(x.to(DEV), f, **kw)
                    assert same(got, R.fake_quantize(x, f, **kw)), f"{f.name} {rounding} {x.dtype}"
                    q = mxsim.quantize(x.to(DEV), f, **kw)
                    rc, rs = R.quantize(x, f, **kw)
                    assert same(q.codes, rc) and same(q.scales, rs), f"{f.name} {rounding} {x.dtype} codes/scales"
                    if x.dtype == torch.float32:
                        assert same(got, torch.from_numpy(mxsim.fake_quantize(x.numpy(), f, **kw)))
    fa = with_scale(mxsim.MXINT8.with_block_size(16), scale)
    fb = with_scale(mxsim.MXFP4_E2M1.with_block_size(16), scale)
    a = np.concatenate([random_case(rng, 2, 50, kind) for kind in ("normal", "wide")])
    b = np.ascontiguousarray(random_case(rng, 3, 50, "wide").T)
    qa, qb = mxsim.quantize(a, fa, axis=1), mxsim.quantize(b, fb, axis=0)
    for acc in _accs():
        _check_matmul(qa, qb, acc)


# -- the bit-pattern kernel's float32 element path (quant_f32.py, _elems_float): taken per tile
# where every block's exponent lies in mxsim.gpu._fast_range(fmt); one block per tile here, so
# that each block of an adversarial batch takes its own path, and the integer path alone as a
# second witness (QUANT_FAST off)


def _one_block_tiles(monkeypatch):
    import mxsim.gpu as G

    monkeypatch.setattr(G, "BLOCK_ELEMS_F32", 1)  # blocks per program: max(1, 1 // KP) = 1


def _block_tops_f32(rng, rows):
    """float32 blocks of 32 random bit patterns a few binades under a random top exponent field
    (every top 0..255: subnormal, fast-range, near-2^127 and NaN/Inf blocks), random signs."""
    top = np.concatenate([np.arange(256), rng.integers(0, 256, size=rows - 256)])[:, None]
    exp = np.clip(top - rng.geometric(0.3, size=(rows, 32)) + 1, 0, None)
    bits = (exp << 23) | rng.integers(0, 1 << 23, size=(rows, 32)) | (rng.integers(0, 2, size=(rows, 32)) << 31)
    # ties of every element step: mantissas with few low bits set
    bits[::3, ::2] &= ~np.int64((1 << 20) - 1)
    return torch.from_numpy(bits.astype(np.uint32).view(np.int32)).view(torch.float32)


@pytest.mark.parametrize("fmt", MX_FORMATS, ids=lambda f: f.name)
def test_float_element_path_every_block_top(fmt, monkeypatch):
    """Per block of every float32 exponent top (and the adversarial batches, ragged blocks of 7),
    every rounding x scale rule pair, float32 and bfloat16: the float32 element path (blocks in
    the fast range) and the integer path (the rest) against the referee and numba, bit for bit;
    both paths are exercised."""
    import mxsim.gpu as G

    _one_block_tiles(monkeypatch)
    lo, hi = G._fast_range(fmt)
    rng = np.random.default_rng(31)
    x = _block_tops_f32(rng, 320)
    adv = torch.from_numpy(adversarial_batches(fmt.with_block_size(7), length=21, seed=6)[0])
    rules = ["floor", "ceil", "even", "rceil"]
    for j, rounding in enumerate(ROUNDING_MODES):
        f = fmt.with_scale_rule(rules[j])
        kw = dict(rounding=rounding, seed=4)
        for xx, ff in ((x, f), (x.to(torch.bfloat16), f), (adv, f.with_block_size(7))):
            got = mxsim.fake_quantize(xx.to(DEV), ff, **kw)
            assert same(got, R.fake_quantize(xx, ff, **kw)), f"{ff.name} {rounding} {xx.dtype} vs referee"
            if xx.dtype == torch.float32:
                assert same(got, torch.from_numpy(mxsim.fake_quantize(xx.numpy(), ff, **kw))), "vs numba"
            q = mxsim.quantize(xx.to(DEV), ff, **kw)
            rc, rs = R.quantize(xx, ff, **kw)
            assert same(q.codes, rc) and same(q.scales, rs), f"{ff.name} {rounding} {xx.dtype} codes/scales"
            s = rs.to(torch.int64) - ff.scale.bias
            finite = rs != ff.scale.nan_code
            fast = finite & (s >= lo) & (s <= hi)
            assert fast.any() and (finite & ~fast).any(), "both element paths ran"


def test_float_element_path_at_its_range_ends(monkeypatch):
    """Blocks at the ends of the float32 path's exponent range (mxsim.gpu._fast_range) and one
    past them, with subnormal elements, ties and saturation; expected codes by hand.

    MXINT8 (step 2^(s-6)): lo = -101 + 6 = -95. Block [1.5 * 2^-95, 2.5 * 2^-101, 2^-127, -2^-149,
    -0.5 * 2^-101, 127.5 * 2^-101 ... ]: amax 1.5 * 2^-95 gives s = -95, step 2^-101: codes 96,
    2.5 -> 2 (even) / 3 (away), 2^-127 and 2^-149 are 2^-26 and 2^-48 steps -> 0, -0.5 -> 0 (even)
    / -1 (away). The same block scaled by 2^-1 has s = -96 (the integer path): the same codes.
    MXFP8_E4M3 (emin -6, 3 mantissa bits, emax 8): lo = 3 + 6 - 101 = -92: amax 2^-84 gives
    s = -92; 2^-100 = 2^-8 * 2^s is the subnormal element 2 * 2^-9 (code 2), 3 * 2^-102 = 1.5
    subnormal steps -> 2 (even) / 2 (away), 2^-149 -> 0 with its sign (code 0x80).
    The top: amax = float32 max (2 - 2^-23) * 2^127, floor s = 119: v = 512 - 2^-15 saturates to
    448 (value 1.75 * 2^127); ceil s = 120: v = 256 - 2^-16 rounds (step 16) up to 256, value
    2^128 = Inf in float32, as the integer path's overflow; 2^127 stays, -2^100 -> -0.0."""
    _one_block_tiles(monkeypatch)
    t = 2.0**-101
    blk = np.array([1.5 * 2.0**-95, 2.5 * t, 2.0**-127, -(2.0**-149), -0.5 * t, 0.0, -0.0, 127.5 * t], np.float32)
    x = torch.from_numpy(np.stack([blk, blk * np.float32(0.5)]))
    f = mxsim.MXINT8.with_block_size(8)
    for rounding, c in (("nearest_even", [96, 2, 0, 0, 0, 0, 0, 127]),
                        ("nearest_away", [96, 3, 0, 0, -1, 0, 0, 127])):
        q = mxsim.quantize(x.to(DEV), f, rounding=rounding)
        assert q.scales.tolist() == [[-95 + 127], [-96 + 127]]
        assert q.codes.tolist() == [c, c], rounding
        v = mxsim.fake_quantize(x.to(DEV), f, rounding=rounding)
        want = torch.tensor([[ci * t for ci in c], [ci * t / 2 for ci in c]], dtype=torch.float32)
        assert same(v, want), rounding  # code 0 is +0.0
    e4 = mxsim.MXFP8_E4M3.with_block_size(4)
    blk = np.array([2.0**-84, 2.0**-100, 3 * 2.0**-102, -(2.0**-149)], np.float32)
    q = mxsim.quantize(torch.from_numpy(blk[None]).to(DEV), e4)
    assert q.scales.tolist() == [[-92 + 127]] and q.codes.tolist() == [[0x78, 2, 2, 0x80]]
    v = mxsim.fake_quantize(torch.from_numpy(blk[None]).to(DEV), e4)
    assert same(v, torch.tensor([[2.0**-84, 2.0**-100, 2.0**-100, -0.0]], dtype=torch.float32))
    top = torch.tensor([[torch.finfo(torch.float32).max, 2.0**127, -(2.0**100), 1.0]], dtype=torch.float32)
    for rule, s, vals in (("floor", 119, [1.75 * 2.0**127, 2.0**127, -0.0, 0.0]),
                          ("ceil", 120, [float("inf"), 2.0**127, -0.0, 0.0])):
        g = e4.with_scale_rule(rule)
        q = mxsim.quantize(top.to(DEV), g)
        assert q.scales.tolist() == [[s + 127]], rule
        assert same(mxsim.fake_quantize(top.to(DEV), g), torch.tensor([vals], dtype=torch.float32)), rule


def test_float_element_path_agrees_with_the_integer_path(monkeypatch):
    """Whole tiles of ordinary data (the tile-wide selection, as the GPU runs it): QUANT_FAST on
    and off give the same bits, every format and rounding, float32/bfloat16/float16."""
    import mxsim.gpu as G

    rng = np.random.default_rng(37)
    x = np.concatenate([random_case(rng, 16, 64, k) for k in ("normal", "heavy", "scaled_rows")])
    x[3, :32] = 0.0
    x[4, 5] = -0.0
    x[5, 7] = np.inf
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        t = torch.from_numpy(np.clip(x, -6e4, 6e4) if dtype == torch.float16 else x).to(dtype).to(DEV)
        for fmt in MX_FORMATS:
            for rounding in ROUNDING_MODES:
                kw = dict(rounding=rounding, seed=8)
                monkeypatch.setattr(G, "QUANT_FAST", True)
                got, q = mxsim.fake_quantize(t, fmt, **kw), mxsim.quantize(t, fmt, **kw)
                monkeypatch.setattr(G, "QUANT_FAST", False)
                ref, qr = mxsim.fake_quantize(t, fmt, **kw), mxsim.quantize(t, fmt, **kw)
                assert same(got, ref) and same(q.codes, qr.codes) and same(q.scales, qr.scales), \
                    f"{fmt.name} {rounding} {dtype}"
