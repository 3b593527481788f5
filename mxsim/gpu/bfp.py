"""Triton BlockFP quantize / fake_quantize on float32 bit patterns (the device twin of
mxsim/kernels/quant.py's bfp_kernel; semantics: docs/mxsim_semantics.md, BlockFP).

The shared exponent is ceil(fl32(log2 amax)) as torch.log2 computes it in float32. For amax in
[2^E, 2^(E+1)) that is E or E + 1 and grows with amax, so it is E + (fraction >= T[E]) for one
threshold per binade, T tabulated on the host from the numba path's own bfp_exponent_of_bits
(bfp_thresholds in mxsim/gpu/__init__.py): the device needs no log2, and agrees with the CPU
on every float32 by construction. Elements use quant_f32's integer rounding of the significand;
the value m * 2^t (t may be far below float32's range: exponent biases up to 254) is rounded
once to float32 from its bits, as the CPU's float64 product stored into float32.

Two launches: PASS 0 does every block with a nonzero amax (NaN/Inf blocks included) and
stores each block's amax bits; the replacement amax of all-zero blocks (the smallest nonzero
finite block amax of the tensor, 1.0 if none: contract step 2) is reduced from those on the
device, and PASS 1 does only the all-zero blocks (every other element is masked: no traffic).
"""

import triton
import triton.language as tl

from .quant import lowbias32
from .quant_f32 import ABS, FRAC, INF_BITS, NAN_BITS, _f32_bits, _norm, _round_shift


@triton.jit
def _f32_bits_rne(N, t):
    """float32 bits of N * 2^t rounded to nearest even, 0 <= N < 2^24 an integer, any t >= -300:
    exact as _f32_bits for t >= -149, else the subnormal bits round(N * 2^(t + 149))."""
    small = _round_shift(N, tl.minimum(-149 - t, 200), 0, 0)
    return tl.where(t >= -149, _f32_bits(N, tl.maximum(t, -149)), small)


@triton.jit
def bfp_quant_kernel(x_ptr, codes_ptr, scales_ptr, deq_ptr, amax_ptr, repl_ptr, thr_ptr, R, L, NB, inner, hseed,
                     K: tl.constexpr, KP: tl.constexpr, BR: tl.constexpr, PASS: tl.constexpr,
                     WIDTH: tl.constexpr, EXP_MIN: tl.constexpr, EXP_MAX: tl.constexpr, SBIAS: tl.constexpr,
                     SNAN: tl.constexpr, PASSTHROUGH: tl.constexpr, EPS_BITS: tl.constexpr,
                     TINY_BITS: tl.constexpr, EPS: tl.constexpr, MODE: tl.constexpr,
                     WANT_CODES: tl.constexpr, WANT_DEQ: tl.constexpr):
    """One program: BR blocks x KP >= K lanes of float32 x (x_ptr: its int32 view); deq is
    float32 written as int32 bits. EPS: float32(1e-9) (EPS_BITS its bits), TINY_BITS:
    float32(1e-8)'s bits."""
    pid = tl.program_id(0)
    t = pid * BR + tl.arange(0, BR)
    r = t // NB
    b = t - r * NB
    ok_blk = t < R * NB
    i = tl.arange(0, KP)
    col = b[:, None] * K + i[None, :]
    off = r[:, None].to(tl.int64) * L + col
    if PASS == 0:
        m = ok_blk[:, None] & (i[None, :] < K) & (col < L)
        xb = tl.load(x_ptr + off, mask=m, other=0)
        mx = tl.max(xb & ABS, axis=1)
        tl.store(amax_ptr + t, mx, mask=ok_blk)
        todo = ok_blk & (mx != 0)
        m = m & todo[:, None]
    else:
        mx0 = tl.load(amax_ptr + t, mask=ok_blk, other=1)
        todo = ok_blk & (mx0 == 0)
        m = todo[:, None] & (i[None, :] < K) & (col < L)
        xb = tl.load(x_ptr + off, mask=m, other=0)
        mx = tl.zeros_like(mx0) + tl.load(repl_ptr)
    a = xb & ABS
    sbits = xb ^ a
    bad = mx >= INF_BITS
    fl, fr = _norm(tl.where(bad, 0x3F800000, mx))
    thr = tl.load(thr_ptr + (fl + 149))
    e = tl.minimum(tl.maximum(fl + (fr >= thr).to(tl.int32), EXP_MIN), EXP_MAX)
    if MODE == 3:
        r64 = r.to(tl.int64)
        idx0 = ((r64 // inner) * L * inner + (r64 % inner)) & 0xFFFFFFFF
        idx = ((idx0[:, None] + col.to(tl.int64) * inner) & 0xFFFFFFFF).to(tl.uint32)  # as quant_f32
        h = lowbias32(hseed.to(tl.uint32) ^ idx)
        A = (1 << 24) - (h >> 8).to(tl.int32)
    else:
        A = 0
    # v = fl32(|x| + 1e-9): a normal float32 (a subnormal |x| is below half its ulp either way)
    vb = (a.to(tl.float32, bitcast=True) + EPS).to(tl.int32, bitcast=True)
    sig = (vb & FRAC) | 0x800000
    sh = e[:, None] - (WIDTH - 1) + 150 - (vb >> 23)
    MAXM: tl.constexpr = (1 << (WIDTH - 1)) - 1
    mm = tl.where(sh <= 0, MAXM, tl.minimum(_round_shift(sig, sh, MODE, A), MAXM))
    # sign of fl32(x + 1e-9): exactly zero for x = -1e-9, negative below it, else positive
    negx = sbits != 0
    sgn_neg = negx & (a > EPS_BITS)
    sgn_zero = negx & (a == EPS_BITS)
    code = tl.where(sgn_zero, 0, tl.where(sgn_neg, 0 - mm, mm))
    code = tl.where(bad[:, None], 0, code)
    if WANT_CODES:
        tl.store(codes_ptr + off, code.to(tl.int8), mask=m)
    if WANT_DEQ:
        val = _f32_bits_rne(mm, e[:, None] - (WIDTH - 1))
        val = tl.where(sgn_zero, 0, tl.where(sgn_neg, val | sbits, val))  # -0.0 for sgn -1, m 0
        val = tl.where(bad[:, None], NAN_BITS, val)
        if PASSTHROUGH:
            val = tl.where(a <= TINY_BITS, xb, val)
        tl.store(deq_ptr + off, val, mask=m)
    sc = tl.where(bad, SNAN, e + SBIAS)
    tl.store(scales_ptr + r.to(tl.int64) * NB + b, sc.to(tl.uint8), mask=todo)
