"""numba kernels for NVFP4 (FP4 E2M1 elements, FP8 E4M3 block scales, optional per-tensor
FP32 scale). Semantics: docs/mxsim_semantics.md, section NVFP4 (torchao's nvfp4_quantize).

Every float32 operation of the recipe is written as the exact float64 result rounded once to
float32 (``np.float32(...)``): a product of two float32 is exact in float64, and for a
quotient the float64 rounding followed by the float32 rounding equals the single float32
rounding (53 >= 2 * 24 + 2), so each line below is one IEEE float32 operation.

Arrays are (R, L) with the blocked axis last, as in quant.py.
"""

import math

import numpy as np
from numba import njit, prange

from .quant import F32_INF_BITS, _f64_bits, _f64_from_bits, block_max_bits, chunk_blocks, f32_value_of_bits, fill_block

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


@njit(cache=True, inline="always")
def e4m3_rne_bits(t):
    """(value, code) of the E4M3 RNE cast of t in [2^-6, 448] (normal range only), from t's
    float64 bit pattern: the 52-bit fraction rounded to 3 bits, nearest even (a carry lands in
    the exponent field, and 448 = the largest E4M3 normal does not overflow)."""
    bits = _f64_bits(t)
    bits = ((bits + ((np.int64(1) << 48) - 1) + ((bits >> 49) & 1)) >> 49) << 49
    e = int(bits >> 52) - 1023
    return _f64_from_bits(bits), ((e + 7) << 3) | int((bits >> 49) & 7)


@njit(cache=True, inline="always")
def _block_scale(m, p, inv_p, two_level):
    """(E4M3 scale code, float32 reciprocal, float32 dequantization scale) of a finite block
    whose amax has bits m: the recipe's float32 operations, each one rounding."""
    bs = float(np.float32(f32_value_of_bits(m) / E2M1_MAX))
    if two_level:
        bs = float(np.float32(bs / p))
    sc, sc_code = e4m3_rne_bits(min(max(bs, E4M3_TINY), E4M3_MAX))
    if two_level:
        rcp = float(np.float32(inv_p / sc))
        deq_scale = float(np.float32(p * sc))
    else:
        rcp = float(np.float32(1.0 / sc))
        deq_scale = sc
    return sc_code, np.float32(rcp), np.float32(deq_scale)


@njit(cache=True, inline="always")
def _elements(xs, cs, ds, split, rcp_a, rcp_b, dsc_a, dsc_b, want_codes, want_deq):
    """The elements of one or two blocks (slices, indexed from 0): those before ``split`` take
    block a's scales, the rest block b's (a select, so one loop covers both).

    E2M1 round to nearest, ties to the even code, by counting the decision points passed (a
    tie goes up at 0.75, 1.75, 3.5 and down at 0.25, 1.25, 2.5, 5); v is one float32 multiply
    (numba keeps float32 * float32 in float32); the sign is v's sign bit (-0.0 and negatives
    that round to zero keep it). One loop per output, without branches, so that each vectorizes."""
    if want_deq:
        for j in range(xs.size):
            hi = j >= split
            v = xs[j] * (rcp_b if hi else rcp_a)
            av = min(abs(v), _F6)
            # |value| / 0.5 of the code (e2m1_half_units), steps 1 1 1 1 2 2 4; the float32
            # product (hu * 0.5 exact) rounds once, as fl32(e * sc) in the recipe
            hu = (np.float32(av > _T1) + np.float32(av >= _T2) + np.float32(av > _T3)
                  + np.float32(av >= _T4) + _F2 * (np.float32(av > _T5) + np.float32(av >= _T6))
                  + _F4 * np.float32(av > _T7))
            ds[j] = math.copysign(hu * _FHALF * (dsc_b if hi else dsc_a), v)
    if want_codes:
        for j in range(xs.size):
            v = xs[j] * (rcp_b if j >= split else rcp_a)
            av = min(abs(v), _F6)
            c = (int(av > _T1) + int(av >= _T2) + int(av > _T3) + int(av >= _T4) + int(av > _T5)
                 + int(av >= _T6) + int(av > _T7))
            cs[j] = np.uint8(c | 8) if math.copysign(_F1, v) < _F0 else np.uint8(c)


@njit(cache=True, parallel=True)
def quantize_kernel(x, xbits, k, p, two_level, want_codes, want_deq, codes, scales, deq):
    """x: float32 (R, L), ``xbits`` its int32 view. p: the per-tensor scale (float32 value;
    ignored unless two_level). The elements without branches (e2m1 by counting the decision
    points passed, its value by the same counts), the block prologue from the bit patterns.
    A finite block is paired with the next one when that is finite too: one element loop
    over both (16 elements are shorter than the vectorized loop's step, which then never
    runs: pairs measured 1.7x faster in a micro-kernel)."""
    R, L = x.shape
    nb = (L + k - 1) // k
    inv_p = float(np.float32(1.0 / p)) if two_level else 1.0
    G = chunk_blocks(k)
    nc = (nb + G - 1) // G
    for t in prange(R * nc):  # work items of G blocks of one row: one division each
        r = t // nc
        b = (t - r * nc) * G
        be = min(b + G, nb)
        xr = x[r]
        cr = codes[r]
        dr = deq[r]
        while b < be:
            j0 = b * k
            j1 = min(j0 + k, L)
            m = block_max_bits(xbits[r, j0:j1])
            if m >= F32_INF_BITS:
                scales[r, b] = E4M3_NAN
                fill_block(codes, deq, r, j0, j1, np.nan, want_codes, want_deq)
                b += 1
                continue
            code_a, rcp_a, dsc_a = _block_scale(m, p, inv_p, two_level)
            scales[r, b] = code_a
            jend, rcp_b, dsc_b = j1, rcp_a, dsc_a
            if b + 1 < be:
                j2 = min(j1 + k, L)
                m2 = block_max_bits(xbits[r, j1:j2])
                if m2 < F32_INF_BITS:  # else the next iteration fills that NaN block
                    code_b, rcp_b, dsc_b = _block_scale(m2, p, inv_p, two_level)
                    scales[r, b + 1] = code_b
                    jend = j2
                    b += 1
            # the blocks' slices, indexed from 0 (quant.chunk_blocks: no gathers)
            _elements(xr[j0:jend], cr[j0:jend], dr[j0:jend], j1 - j0, rcp_a, rcp_b, dsc_a, dsc_b, want_codes,
                      want_deq)
            b += 1


# float32 constants of the element loop (a float64 literal would widen the float32 arithmetic)
_F0, _FHALF, _F1, _F2, _F4 = np.float32(0.0), np.float32(0.5), np.float32(1.0), np.float32(2.0), np.float32(4.0)
_F6 = np.float32(E2M1_MAX)
_T1, _T2, _T3, _T4 = np.float32(0.25), np.float32(0.75), np.float32(1.25), np.float32(1.75)
_T5, _T6, _T7 = np.float32(2.5), np.float32(3.5), np.float32(5.0)


@njit(cache=True, parallel=True)
def finite_amax_bits(xbits):
    """The largest |x| bit pattern over the finite elements of a flat float32 bit array (0 if
    none): two-level scaling's tensor amax in one read, without an |x| temporary."""
    m = 0
    for i in prange(xbits.size):
        a = int(xbits[i] & 0x7FFFFFFF)
        if a < F32_INF_BITS:
            m = max(m, a)
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
