"""numba kernels for NVFP4 (FP4 E2M1 elements, FP8 E4M3 block scales, optional per-tensor
FP32 scale). Semantics: docs/mxsim_semantics.md, section NVFP4 (torchao's nvfp4_quantize).

Every float32 operation of the recipe is written as the exact float64 result rounded once to
float32 (``np.float32(...)``): a product of two float32 is exact in float64, and for a
quotient the float64 rounding followed by the float32 rounding equals the single float32
rounding (53 >= 2 * 24 + 2), so each line below is one IEEE float32 operation.

Arrays are (R, L) with the blocked axis last, as in quant.py.
"""

import functools
import math

import numpy as np
from numba import njit, prange

from ..formats import NVFP4_BLOCK
from .quant import F32_ABS, F32_INF_BITS, chunk_blocks, f32_bits, f32_from_bits, fill_block, row_block_max_bits

E4M3_NAN = 0x7F
E4M3_TINY = 2.0**-6  # smallest normal E4M3 (torch.finfo(torch.float8_e4m3fn).tiny)
E4M3_MAX = 448.0
E2M1_MAX = 6.0
WEIGHT_LOG2 = -20  # 2^-1 (E2M1 unit) * 2^-1 * 2^-9 (E4M3 unit) * 2^-9: the weight of T_j


@njit(cache=True, inline="always")
def e2m1_half_units(c):
    """|value| / 0.5 of E2M1 code c (0..7): 0 1 2 3 4 6 8 12."""
    if c < 4:
        return c
    return (2 + (c & 1)) << ((c >> 1) - 1)


@njit(cache=True, inline="always")
def e4m3_units(code):
    """Signed E4M3 value / 2^-9 (an integer); the caller handles the NaN codes."""
    c = int(code) & 0xFF
    bexp = (c >> 3) & 0xF
    mant = c & 7
    n = mant if bexp == 0 else (8 + mant) << (bexp - 1)
    return -n if c & 0x80 else n


# float32 constants (a float64 literal would widen the float32 arithmetic)
_F1, _F6 = np.float32(1.0), np.float32(E2M1_MAX)
_E4M3_TINY, _E4M3_MAX = np.float32(E4M3_TINY), np.float32(E4M3_MAX)
_EXP_FIELD = np.int32(0x7F800000)
_ONE_BITS = np.int32(0x3F800000)  # 1.0: the binade of E2M1's smallest normal (below it, quantum 0.5)
_HALF_QUANTUM_MAGIC = np.int32((22 << 23) | 0x400000)  # 2^E bits + this = 1.5 * 2^(E + 22)


@njit(cache=True, inline="always")
def _block_scales(mb, n, p, inv_p, two_level, sr, rcp, dsc):
    """Each block g < n (amax bits mb[g]): its E4M3 scale code into sr[g], the float32
    reciprocal into rcp[g] and dequantization scale into dsc[g]. The recipe's float32
    operations as float32 operations (numba keeps float32 / float32 in float32, one IEEE
    rounding each), the E4M3 RNE cast on the clamped scale's float32 pattern (the 23-bit
    fraction rounded to 3 bits, nearest even; a carry lands in the exponent field and 448,
    the largest E4M3 normal, does not overflow). One loop over the blocks without branches:
    it vectorizes across blocks (per block, its divisions' latency chain cost 20 ns). A
    NaN/Inf block (mb[g] >= F32_INF_BITS) gets the NaN code; its rcp/dsc are unused."""
    for g in range(n):
        m = mb[g]
        bs = f32_from_bits(m) / _F6
        if two_level:
            bs = bs / p
        bb = f32_bits(min(max(bs, _E4M3_TINY), _E4M3_MAX))
        bb = ((bb + np.int32((1 << 19) - 1) + ((bb >> 20) & 1)) >> 20) << 20
        sc = f32_from_bits(bb)
        code = (((bb >> 23) - 120) << 3) | ((bb >> 20) & 7)  # ((E + 7) << 3) | mantissa
        sr[g] = np.uint8(E4M3_NAN) if m >= F32_INF_BITS else np.uint8(code)
        if two_level:
            rcp[g] = inv_p / sc
            dsc[g] = p * sc
        else:
            rcp[g] = _F1 / sc
            dsc[g] = sc


@njit(cache=True, inline="always")
def _e2m1_round(v):
    """|v| (a float32) rounded to E2M1 magnitudes, nearest even, saturating at 6: clamp, then
    the magic-number rounding at the quantum of its binade (0.5 below 2, where E2M1 is
    subnormal or has exponent 0): adding c = 1.5 * 2^(E + 22) (E = max(binade, 0)) puts the
    sum in the binade whose ulp is that quantum, so float32 RNE rounds there, and c's last
    significand bit is 0, so a tie goes to the even multiple = the even code (1.75 -> 2,
    2.5 -> 2, 5 -> 4). Subtracting c is exact."""
    av = min(abs(v), _F6)
    c = f32_from_bits(max(f32_bits(av) & _EXP_FIELD, _ONE_BITS) + _HALF_QUANTUM_MAGIC)
    return (av + c) - c


@njit(cache=True, inline="always")
def _elements(xs, cs, ds, size, split, rcp_a, rcp_b, dsc_a, dsc_b, want_codes, want_deq):
    """The ``size`` elements of one or two blocks (slices, indexed from 0; a constant size and
    split compile to loops of that many iterations): those before ``split`` take
    block a's scales, the rest block b's (a select, so one loop covers both: 16 elements are
    shorter than the vectorized loop's step, which then never runs; pairs measured 1.7x
    faster in a micro-kernel). v is one float32 multiply (numba keeps float32 * float32 in
    float32); the value fl32(e * sc) as in the recipe; the sign is v's sign bit (-0.0 and
    negatives that round to zero keep it). One loop per output, without branches, so that
    each vectorizes."""
    if want_deq:
        for j in range(size):
            hi = j >= split
            v = xs[j] * (rcp_b if hi else rcp_a)
            ds[j] = math.copysign(_e2m1_round(v) * (dsc_b if hi else dsc_a), v)
    if want_codes:
        for j in range(size):
            v = xs[j] * (rcp_b if j >= split else rcp_a)
            q = _e2m1_round(v)
            # the code of q: 2 q below 1 (0, 0.5), else 2 + 2 E + the mantissa bit, i.e. the
            # pattern's top 9 bits (biased E, mantissa bit) - 252
            c = np.int32(q + q) if q < _F1 else (f32_bits(q) >> 22) - 252
            cs[j] = np.uint8(c | 8) if f32_bits(v) < 0 else np.uint8(c)


# built per (want_codes, want_deq), as quant._make_mxint_f32 (why: there): each kernel holds
# only the loops of the outputs it writes
def _make_quantize(want_codes, want_deq):
    @njit(cache=True, parallel=True)
    def kernel(x, xbits, k, p, two_level, codes, scales, deq):
        R, L = x.shape
        nb = (L + k - 1) // k
        pf = np.float32(p)
        inv_p = _F1 / pf
        G = chunk_blocks(k)
        nc = (nb + G - 1) // G
        for t in prange(R * nc):  # work items of G blocks of one row: one division each
            r = t // nc
            b0 = (t - r * nc) * G
            n = min(b0 + G, nb) - b0
            mb = np.empty(G, np.int32)
            rcp = np.empty(G, np.float32)
            dsc = np.empty(G, np.float32)
            xr = xbits[r]
            nan = False
            for g in range(n):
                j0 = (b0 + g) * k
                m = row_block_max_bits(xr, j0, min(j0 + k, L))
                mb[g] = m
                nan |= m >= F32_INF_BITS
            _block_scales(mb, n, pf, inv_p, two_level, scales[r, b0:b0 + n], rcp, dsc)
            # the blocks' slices, indexed from 0 (quant.chunk_blocks: no gathers)
            xs, cr, dr = x[r], codes[r], deq[r]
            g = 0
            while g < n:
                j0 = (b0 + g) * k
                j1 = min(j0 + k, L)
                if g + 1 < n:  # a pair (the last block of a row may be short)
                    j2 = min(j1 + k, L)
                    if k == NVFP4_BLOCK and j2 - j0 == 2 * NVFP4_BLOCK:  # NVFP4's pairs: loops of 32 (1.2x)
                        _elements(xs[j0:j2], cr[j0:j2], dr[j0:j2], 2 * NVFP4_BLOCK, NVFP4_BLOCK, rcp[g], rcp[g + 1],
                                  dsc[g], dsc[g + 1], want_codes, want_deq)
                    else:
                        _elements(xs[j0:j2], cr[j0:j2], dr[j0:j2], j2 - j0, k, rcp[g], rcp[g + 1], dsc[g], dsc[g + 1],
                                  want_codes, want_deq)
                    g += 2
                else:
                    _elements(xs[j0:j1], cr[j0:j1], dr[j0:j1], j1 - j0, k, rcp[g], rcp[g], dsc[g], dsc[g], want_codes,
                              want_deq)
                    g += 1
            if nan:
                for g in range(n):
                    if mb[g] >= F32_INF_BITS:
                        j0 = (b0 + g) * k
                        fill_block(codes, deq, r, j0, min(j0 + k, L), np.nan, want_codes, want_deq)

    return kernel


_quantize_kernel = functools.cache(_make_quantize)


def quantize_kernel(x, xbits, k, p, two_level, want_codes, want_deq, codes, scales, deq):
    """x: float32 (R, L), ``xbits`` its int32 view. p: the per-tensor scale (a float32 value;
    ignored unless two_level). Each work item of G blocks of a row runs in three loops: the
    block maxima from the bit patterns (16 lanes at a time), every block's scale in one
    vectorized loop across the blocks, then the elements of each pair of blocks; NaN/Inf
    blocks are filled last (rare: one flag for the item). The kernel built for this
    (want_codes, want_deq)."""
    _quantize_kernel(bool(want_codes), bool(want_deq))(x, xbits, k, p, two_level, codes, scales, deq)


@njit(cache=True, parallel=True)
def finite_amax_bits(xbits):
    """The largest |x| bit pattern over the finite elements of a flat float32 bit array (0 if
    none): two-level scaling's tensor amax in one read, without an |x| temporary; int32 and
    a select, so that the loop vectorizes (int64 lanes halve the width)."""
    m = np.int32(0)
    for i in prange(xbits.size):
        a = np.int32(xbits[i] & F32_ABS)
        m = max(m, a if a < F32_INF_BITS else np.int32(0))
    return m


@njit(cache=True, parallel=True)
def dequant_kernel(codes, scales, k, p, two_level, out):
    """out (float32) = fl32(e * sc) (single level, exact) or fl32(e * fl32(p * sc))."""
    R, L = codes.shape
    nb = scales.shape[1]
    for t in prange(R * nb):
        r = t // nb
        b = t - r * nb
        sc_code = int(scales[r, b])
        nan = (sc_code & 0x7F) == E4M3_NAN
        sc = math.ldexp(float(e4m3_units(sc_code)), -9)
        f = float(np.float32(p * sc)) if two_level else sc
        for j in range(b * k, min(b * k + k, L)):
            if nan:
                out[r, j] = np.nan
            else:
                c = int(codes[r, j])
                val = np.float32(e2m1_half_units(c & 7) * 0.5 * f)
                out[r, j] = -val if c & 8 else val


@njit(cache=True, parallel=True)
def int_values_kernel(codes, out):
    """Element integer view 2 * value (|.| <= 12), flat arrays."""
    for i in prange(codes.size):
        c = int(codes[i])
        n = e2m1_half_units(c & 7)
        out[i] = -n if c & 8 else n


@njit(cache=True, parallel=True)
def scale_units_kernel(scales, out, nan):
    for i in prange(scales.size):
        c = int(scales[i])
        nan[i] = (c & 0x7F) == E4M3_NAN
        out[i] = 0 if nan[i] else e4m3_units(c)


@njit(cache=True, inline="always")
def fused_add_f32(acc, t):
    """fl32(acc + t) with ONE rounding, acc a float32 value (as float64), t exact in float64.

    TwoSum gives s + err == acc + t exactly; forcing s to odd when err != 0 (round to odd)
    and then rounding to float32 is the correctly rounded result (53 >= 24 + 2). An exact
    zero is +0.0 (IEEE RNE); Inf stays.
    """
    if not math.isfinite(acc):
        return acc
    s = acc + t
    bb = s - acc
    err = (acc - (s - bb)) + (t - bb)
    if err != 0.0 and math.isfinite(s):
        if math.ldexp(math.frexp(s)[0], 53) % 2.0 == 0.0:  # even last bit (s is normal here)
            s = np.nextafter(s, np.inf if err > 0.0 else -np.inf)
    return float(np.float32(s))


@njit(cache=True, parallel=True)
def fp32_step(out, P, ja, jb):
    """out[m, n] <- fl32(out[m, n] + P[m, n] * ja[m] * jb[n] * 2^-20), fused (one rounding)."""
    M, N = out.shape
    for m in prange(M):
        for n in range(N):
            t = math.ldexp(P[m, n] * float(ja[m]) * float(jb[n]), WEIGHT_LOG2)  # exact: |.| < 2^47
            out[m, n] = fused_add_f32(float(out[m, n]), t)


@njit(cache=True, parallel=True)
def exact_step(total, P, ja, jb):
    """total[m, n] += P * ja * jb (int64, exact; the caller bounds K)."""
    M, N = total.shape
    for m in prange(M):
        for n in range(N):
            total[m, n] += np.int64(P[m, n]) * np.int64(ja[m]) * np.int64(jb[n])


@njit(cache=True, parallel=True)
def fixed_step(total, P, ja, jb, shift, total_bits, saturate):
    """Fixed-point accumulate of floor(T * 2^shift), T = P * ja * jb, shift = frac_bits - 20."""
    M, N = total.shape
    hi = (1 << (total_bits - 1)) - 1 if total_bits < 64 else np.iinfo(np.int64).max
    lo = -hi - 1
    for m in prange(M):
        for n in range(N):
            T = np.int64(P[m, n]) * np.int64(ja[m]) * np.int64(jb[n])
            if shift >= 0:
                if saturate and T != 0 and (shift >= 63 or abs(T) > (hi >> shift)):
                    a = hi if T > 0 else lo
                else:
                    a = T << shift if shift < 64 else np.int64(0)
            else:
                a = T >> min(-shift, 63)  # arithmetic shift: floor
            if saturate:
                a = min(max(a, lo), hi)
                s = total[m, n] + a  # |both| < 2^63: no int64 overflow when W < 64 ...
                if total_bits == 64:
                    # ... and for W = 64 detect the wrap of the int64 sum
                    if a > 0 and s < total[m, n]:
                        s = hi
                    elif a < 0 and s > total[m, n]:
                        s = lo
                total[m, n] = min(max(s, lo), hi)
            else:
                s = total[m, n] + a  # int64 wraps modulo 2^64
                if total_bits < 64:
                    w = np.int64(1) << total_bits
                    s = ((s - lo) % w + w) % w + lo
                total[m, n] = s
