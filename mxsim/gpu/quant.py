"""Triton quantize / dequantize kernels for MXINT and MXFP on CUDA tensors (quantize: float64
input, and formats whose subnormal step is below 2^-22; float32/bfloat16/float16 input of the
standard formats takes quant_f32.py).

Semantics: docs/mxsim_semantics.md; a third implementation, written apart from the numba
kernels (mxsim/kernels) and the torch referee (mxsim/reference.py), compared with both bit
for bit in tests/mxsim/test_gpu.py. Inputs arrive as (R, L) with the blocked axis last.

Every value is handled in float64 (exact for the float32/float64 inputs, as the contract
says); powers of two are built from their bit patterns (never a device exp2/log2), and
floor(log2|x|) comes from the float64 exponent field (ceil and the "even" rule's rounding from
its fraction field; rceil's quotient is one correctly rounded float64 division). Stochastic
rounding uses the contract's lowbias32 hash of the element's flat index in the original
tensor, in uint32 arithmetic, so the GPU stream is the CPU's stream: same seed and input,
same bits.
"""

import triton
import triton.language as tl

from ..formats import ScaleRule

RN_EVEN, RN_AWAY, RN_FLOOR, RN_STOCH = 0, 1, 2, 3
SR_CEIL = tl.constexpr(ScaleRule.CEIL.kernel_id)
SR_EVEN = tl.constexpr(ScaleRule.EVEN.kernel_id)
SR_RCEIL = tl.constexpr(ScaleRule.RCEIL.kernel_id)
FRAC = tl.constexpr((1 << 52) - 1)  # the float64 fraction field


@triton.jit
def pow2(e):
    """2^e as float64 for an integer tensor e in [-1022, 1023] (bit pattern, exact)."""
    return ((e.to(tl.int64) + 1023) << 52).to(tl.float64, bitcast=True)


@triton.jit
def floor_log2(a):
    """floor(log2(a)) for positive finite float64 a >= 2^-1022 (the exponent field)."""
    return ((a.to(tl.int64, bitcast=True) >> 52) & 0x7FF) - 1023


@triton.jit
def ceil_log2(a):
    """ceil(log2(a)) for positive finite float64 a >= 2^-1022: floor, plus one unless a is a
    power of two (fraction field zero)."""
    bits = a.to(tl.int64, bitcast=True)
    return ((bits >> 52) & 0x7FF) - 1023 + ((bits & FRAC) != 0).to(tl.int64)


@triton.jit
def rule_exponent(amax, RULE: tl.constexpr, EMAX: tl.constexpr, RMBITS: tl.constexpr, MAX_POS: tl.constexpr,
                  F32_IN: tl.constexpr):
    """Unclamped shared exponent of blocks with finite amax > 0 (float64) under the scale rule
    (docs/mxsim_semantics.md, "Scale rules"; the numba kernels' rule_exponent)."""
    if RULE == SR_CEIL:
        s = ceil_log2(amax) - EMAX
    elif RULE == SR_EVEN:
        # amax rounded half up to RMBITS fraction bits leaves its binade iff its significand
        # 1.f >= 2 - 2^-(RMBITS+1), i.e. the 52-bit fraction field >= 2^52 - 2^(51-RMBITS)
        up = ((amax.to(tl.int64, bitcast=True) & FRAC) >= (1 << 52) - (1 << (51 - RMBITS))).to(tl.int64)
        s = floor_log2(amax) + up - EMAX
    elif RULE == SR_RCEIL:
        d = amax / MAX_POS  # float64 division: IEEE correctly rounded (div.rn.f64 on NVPTX)
        if F32_IN:
            d = d.to(tl.float32).to(tl.float64)  # the float32 quotient, as for the numba path
        s = tl.where(d > 0.0, ceil_log2(tl.where(d > 0.0, d, 1.0)), -1023)  # underflow: clamps to the minimum
    else:  # floor (OCP)
        s = floor_log2(amax) - EMAX
    return s


@triton.jit
def lowbias32(h):
    """The contract's lowbias32 on a uint32 tensor (products wrap modulo 2^32)."""
    h = h ^ (h >> 16)
    h = h * tl.full((), 0x7FEB352D, tl.uint32)
    h = h ^ (h >> 15)
    h = h * tl.full((), 0x846CA68B, tl.uint32)
    h = h ^ (h >> 16)
    return h


@triton.jit
def round_magnitude(t, MODE: tl.constexpr, u):
    """Round non-negative float64 t to an integer-valued float64 by the rounding mode."""
    f = tl.floor(t)
    d = t - f  # exact
    if MODE == 0:  # nearest, ties to even
        odd = (f - 2.0 * tl.floor(f * 0.5)) == 1.0
        r = tl.where((d > 0.5) | ((d == 0.5) & odd), f + 1.0, f)
    elif MODE == 1:  # nearest, ties away
        r = tl.where(d >= 0.5, f + 1.0, f)
    elif MODE == 2:  # toward zero
        r = f
    else:  # stochastic
        r = tl.where((d > 0.0) & (d >= 1.0 - u), f + 1.0, f)
    return r


@triton.jit
def mx_quant_kernel(x_ptr, codes_ptr, scales_ptr, deq_ptr, R, L, NB, inner, hseed,
                    K: tl.constexpr, KP: tl.constexpr, BR: tl.constexpr, IS_FP: tl.constexpr,
                    BITS: tl.constexpr, EBITS: tl.constexpr, MBITS: tl.constexpr, BIAS: tl.constexpr,
                    EMAX: tl.constexpr, MAX_NORMAL: tl.constexpr, MODE: tl.constexpr,
                    RULE: tl.constexpr, RMBITS: tl.constexpr, F32_IN: tl.constexpr,
                    SBIAS: tl.constexpr, SNAN: tl.constexpr, SMIN: tl.constexpr, SMAX: tl.constexpr,
                    WANT_CODES: tl.constexpr, WANT_DEQ: tl.constexpr):
    """One program: BR blocks (flattened over rows x blocks per row), KP >= K lanes each; the
    block scale is stored as its format's ScaleEncoding says (SBIAS, NaN code SNAN, exponents
    SMIN..SMAX)."""
    pid = tl.program_id(0)
    t = pid * BR + tl.arange(0, BR)  # block ids
    r = t // NB
    b = t - r * NB
    ok_blk = t < R * NB
    i = tl.arange(0, KP)
    col = b[:, None] * K + i[None, :]
    m = ok_blk[:, None] & (i[None, :] < K) & (col < L)
    off = r[:, None].to(tl.int64) * L + col
    x = tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float64)
    ax = tl.abs(x)
    bad = tl.max(tl.where(ax < float("inf"), 0, 1), axis=1) > 0  # NaN or Inf in the block
    ax = tl.where(ax < float("inf"), ax, 0.0)
    amax = tl.max(ax, axis=1)
    zero = amax == 0.0
    s = rule_exponent(tl.where(zero, 1.0, amax), RULE, EMAX, RMBITS, MAX_NORMAL, F32_IN)
    s = tl.minimum(tl.maximum(s, SMIN), SMAX)
    s = tl.where(zero, SMIN, s)
    if MODE == 3:
        idx = (r[:, None].to(tl.int64) // inner) * L * inner + col * inner + (r[:, None].to(tl.int64) % inner)
        h = lowbias32(hseed.to(tl.uint32) ^ (idx & 0xFFFFFFFF).to(tl.uint32))
        u = (h >> 8).to(tl.float64) * (1.0 / 16777216.0)
    else:
        u = 0.0
    neg = (x.to(tl.int64, bitcast=True) < 0)  # the sign bit (also -0.0)
    s2 = s[:, None]
    if IS_FP:
        EMIN: tl.constexpr = 1 - BIAS
        av = ax * pow2(-s2)  # exact
        pos = av > 0.0
        e = tl.maximum(floor_log2(tl.where(pos, av, 1.0)), EMIN)
        n = round_magnitude(av * pow2(MBITS - e), MODE, u)
        mag = tl.minimum(n * pow2(e - MBITS), MAX_NORMAL)
        nint = (mag * pow2(MBITS - EMIN + tl.zeros_like(e))).to(tl.int64)  # mag / subnormal step
        e2 = floor_log2(tl.where(mag > 0.0, mag, 1.0))
        mant = (mag * pow2(MBITS - e2)).to(tl.int64) - (1 << MBITS)
        normal_code = ((e2 + BIAS) << MBITS) | mant
        code = tl.where(nint < (1 << MBITS), nint, normal_code)
        code = tl.where(pos & (mag > 0.0), code, 0)
        code = tl.where(neg, code | (1 << (EBITS + MBITS)), code)
        # the sign by a multiply: Triton lowers unary minus to 0 - x, which gives +0.0 for a
        # negative value that rounds to zero (the contract keeps -0.0, as ml_dtypes does)
        val = mag * tl.where(neg, -1.0, 1.0) * pow2(s2)
        val = tl.where(zero[:, None], 0.0, val)
        code = tl.where(zero[:, None] | bad[:, None], 0, code)
    else:
        Q: tl.constexpr = -(BITS - 2)
        MAXC: tl.constexpr = (1 << (BITS - 1)) - 1
        v = ax * pow2(-(s2 + Q))  # exact
        c = tl.minimum(round_magnitude(tl.minimum(v, MAXC * 1.0), MODE, u), MAXC * 1.0)
        c = tl.where(neg, -c, c)
        code = tl.where(bad[:, None], 0, c.to(tl.int64))
        val = code.to(tl.float64) * pow2(s2 + Q) + 0.0  # code 0 gives +0.0
    val = tl.where(bad[:, None], float("nan"), val)
    if WANT_CODES:
        if IS_FP:
            tl.store(codes_ptr + off, code.to(tl.uint8), mask=m)
        else:
            tl.store(codes_ptr + off, code.to(tl.int8), mask=m)
    if WANT_DEQ:
        tl.store(deq_ptr + off, val.to(deq_ptr.dtype.element_ty), mask=m)
    sc = tl.where(bad, SNAN, s + SBIAS)
    tl.store(scales_ptr + r.to(tl.int64) * NB + b, sc.to(tl.uint8), mask=ok_blk)


@triton.jit
def dequant_kernel(codes_ptr, scales_ptr, lut_ptr, out_ptr, R, L, NB, QLOG, BIAS, NAN_CODE,
                   K: tl.constexpr, KP: tl.constexpr, BR: tl.constexpr, NEG_ZERO_BIT: tl.constexpr,
                   MAX_CODE: tl.constexpr, INF_CODE: tl.constexpr):
    """out = int(code) * 2^(scale - BIAS + QLOG), NaN for a NaN scale; the integer of each
    code byte comes from a 256-entry table; an MXFP sign-bit-only code gives -0.0, and an MXFP
    code magnitude above MAX_CODE is +-Inf if it is INF_CODE (-1: none), else NaN (the FP8
    element specials, as the numba dequant kernel)."""
    pid = tl.program_id(0)
    t = pid * BR + tl.arange(0, BR)
    r = t // NB
    b = t - r * NB
    ok_blk = t < R * NB
    i = tl.arange(0, KP)
    col = b[:, None] * K + i[None, :]
    m = ok_blk[:, None] & (i[None, :] < K) & (col < L)
    off = r[:, None].to(tl.int64) * L + col
    c = tl.load(codes_ptr + off, mask=m, other=0).to(tl.uint8, bitcast=True).to(tl.int32)
    n = tl.load(lut_ptr + c, mask=m, other=0)
    sc = tl.load(scales_ptr + r.to(tl.int64) * NB + b, mask=ok_blk, other=0).to(tl.int32)
    if NEG_ZERO_BIT != 0:
        # MXFP: magnitude times the sign bit's +-1, so that a sign-bit-only code gives -0.0
        # (a -0.0 literal in tl.where came out as +0.0 in compiled code on the H200)
        sign = tl.where((c & NEG_ZERO_BIT) != 0, -1.0, 1.0)
        v = tl.abs(n).to(tl.float64) * sign * pow2(sc[:, None] - BIAS + QLOG)
        mag = c & (NEG_ZERO_BIT - 1)
        v = tl.where(mag > MAX_CODE, tl.where(mag == INF_CODE, sign * float("inf"), float("nan")), v)
    else:
        v = n.to(tl.float64) * pow2(sc[:, None] - BIAS + QLOG)
    v = tl.where((sc == NAN_CODE)[:, None], float("nan"), v)
    tl.store(out_ptr + off, v.to(out_ptr.dtype.element_ty), mask=m)
