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

from .quant import block_amax, fill_block

E4M3_NAN = 0x7F
E4M3_TINY = 2.0**-6  # smallest normal E4M3 (torch.finfo(torch.float8_e4m3fn).tiny)
E4M3_MAX = 448.0
E2M1_MAX = 6.0
WEIGHT_LOG2 = -20  # 2^-1 (E2M1 unit) * 2^-1 * 2^-9 (E4M3 unit) * 2^-9: the weight of T_j


@njit(cache=True, inline="always")
def e4m3_rne(t):
    """(value, code) of the E4M3 RNE cast of t in [2^-6, 448] (normal range only)."""
    e = math.frexp(t)[1] - 1
    a = math.ldexp(t, 3 - e)  # in [8, 16), exact
    n = np.floor(a)
    d = a - n
    if d > 0.5 or (d == 0.5 and (n * 0.5) != np.floor(n * 0.5)):
        n += 1.0
    if n == 16.0:
        n = 8.0
        e += 1
    return math.ldexp(n, e - 3), ((e + 7) << 3) | (int(n) - 8)


@njit(cache=True, inline="always")
def e2m1_code(av):
    """E2M1 code (no sign) of av in [0, 6], round to nearest, ties to the even code: count the
    decision points passed (a tie goes to the even neighbour: up at 0.75, 1.75, 3.5, down at
    0.25, 1.25, 2.5, 5)."""
    c = 0
    if av > 0.25:
        c += 1
    if av >= 0.75:
        c += 1
    if av > 1.25:
        c += 1
    if av >= 1.75:
        c += 1
    if av > 2.5:
        c += 1
    if av >= 3.5:
        c += 1
    if av > 5.0:
        c += 1
    return c


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


@njit(cache=True, parallel=True)
def quantize_kernel(x, k, p, two_level, want_codes, want_deq, codes, scales, deq):
    """x: float32 (R, L). p: the per-tensor scale (float32 value; ignored unless two_level)."""
    R, L = x.shape
    nb = (L + k - 1) // k
    inv_p = float(np.float32(1.0 / p)) if two_level else 1.0
    for t in prange(R * nb):
        r = t // nb
        b = t - r * nb
        j0 = b * k
        j1 = min(j0 + k, L)
        amax, finite = block_amax(x, r, j0, j1)
        if not finite:
            scales[r, b] = E4M3_NAN
            fill_block(codes, deq, r, j0, j1, np.nan, want_codes, want_deq)
            continue
        bs = float(np.float32(amax / E2M1_MAX))
        if two_level:
            bs = float(np.float32(bs / p))
        sc, sc_code = e4m3_rne(min(max(bs, E4M3_TINY), E4M3_MAX))
        scales[r, b] = sc_code
        if two_level:
            rcp = float(np.float32(inv_p / sc))
            deq_scale = float(np.float32(p * sc))
        else:
            rcp = float(np.float32(1.0 / sc))
            deq_scale = sc
        for j in range(j0, j1):
            xv = float(x[r, j])
            v = float(np.float32(xv * rcp))
            neg = v < 0.0 or (v == 0.0 and math.copysign(1.0, v) < 0.0)
            c = e2m1_code(min(abs(v), E2M1_MAX))
            if want_codes:
                codes[r, j] = np.uint8(c | 8) if neg else np.uint8(c)
            if want_deq:
                val = float(np.float32(e2m1_half_units(c) * 0.5 * deq_scale))
                deq[r, j] = -val if neg else val


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
