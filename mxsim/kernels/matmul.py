"""numba accumulator kernels of the CPU MX matmul. Semantics: docs/mxsim_semantics.md (matmul).

The driver (mxsim/datapath.py) hands each kernel one row strip of the output and G
consecutive steps (a step is a block, or a lane group for fp32) of exact block sums:

  P[g, l, m, n]   exact integer sum of limb l of step g (BLAS, exact, see datapath.py)
  pa[m, j]        2^ea[m, j]            (a's block scales of the strip, as float64)
  pb[j, l, n]     2^(eb[j, n] + shift + l*w)   (b's scale, the quanta, the limb weight)
  js[g]           the block of step g

so the step's term is t = sum_l P[g, l] * pa[:, j] * pb[j, l], every product exact in float64
(the exponents stay far inside its range). One limb (L = 1) is every format pair except
the widest MXFP8_E5M2 products; those kernels are written to vectorize over n with the
rare inexact cases redone by scalar code. L > 1 takes the exact scalar code throughout.
Each row keeps its accumulator in cache across the G steps, so a step costs one pass over L1/L2-resident data, not over the whole output.

The fold kernels are serial and release the GIL: the driver runs independent strips on a
pool of threads (BLAS single-threaded inside each), so no barrier is crossed per step;
prange-parallel kernels interleaved with multi-threaded BLAS calls spin against each other
and collapsed on a loaded machine (measured, see docs/mxsim_speed.md).
"""

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(cache=True)
def fsum(terms, n):
    """Correctly rounded float64 sum of terms[:n] (exact partials, Shewchuk's method)."""
    partials = np.empty(n + 1, np.float64)
    np_ = 0
    for i in range(n):
        x = terms[i]
        k = 0
        for p in range(np_):
            y = partials[p]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                partials[k] = lo
                k += 1
            x = hi
        partials[k] = x
        np_ = k + 1
    # partials are non-overlapping and increasing in magnitude: add from the top and fix
    # the one case where the remaining tail makes a half-way tie go the other way
    if np_ == 0:
        return 0.0
    np_ -= 1
    hi = partials[np_]
    lo = 0.0
    while np_ > 0:
        x = hi
        np_ -= 1
        y = partials[np_]
        hi = x + y
        yr = hi - x
        lo = y - yr
        if lo != 0.0:
            break
    if np_ > 0 and ((lo < 0.0 and partials[np_ - 1] < 0.0) or (lo > 0.0 and partials[np_ - 1] > 0.0)):
        y = lo * 2.0
        x = hi + y
        yr = x - hi
        if y == yr:
            hi = x
    return hi


@njit(cache=True)
def rounded_and_residual_sign(terms, n):
    """(RN64(sum), sign of sum - RN64(sum)) of the exact sum of terms[:n]; terms has n+1 slots."""
    hi = fsum(terms, n)
    terms[n] = -hi
    r = fsum(terms, n + 1)
    return hi, (1.0 if r > 0.0 else (-1.0 if r < 0.0 else 0.0))


@njit(cache=True, inline="always")
def odd_toward(s, direction):
    """Round-to-odd fix of RN64 s whose exact value lies beyond s in ``direction`` (!= 0):
    keep s if its last bit is odd, else step one ulp that way. With 53 >= 24 + 2 bits this
    makes the following RNE to float32 a single correct rounding (no double rounding)."""
    mant, _ = math.frexp(s)
    if int(math.ldexp(abs(mant), 53)) & 1 == 0:
        return np.nextafter(s, math.copysign(np.inf, direction))
    return s


@njit(cache=True, inline="always")
def fused_f32(x, t):
    """fl32(x + t) with one rounding, x and t exact float64 values (x a float32, possibly Inf)."""
    s, e = two_sum(x, t)
    if e != 0.0 and math.isfinite(s):
        s = odd_toward(s, e)
    return np.float32(s)


ROWS_PER_TASK = 8  # rows per scratch allocation


@njit(cache=True)
def fp32_row(ar, pr, am, pbr, tmp):
    """One step of one row, L = 1. t = P * 2^E is exact in float64; where it is also a
    float32 (always, unless the scales push it out of float32's range), fl32(acc + t) is one
    IEEE float32 addition of two float32 values: exactly the fused step, signs of zero and
    overflow to Inf included. A row holding a t outside float32 is redone exactly."""
    outside = 0
    for n in range(ar.size):
        t = np.float64(pr[n]) * am * pbr[n] + 0.0  # a BLAS -0.0 sum is S = 0: +0.0
        t32 = np.float32(t)
        outside += np.float64(t32) != t
        tmp[n] = t32
    if outside == 0:
        for n in range(ar.size):
            ar[n] += tmp[n]  # float32 + float32: one rounding
    else:
        for n in range(ar.size):
            ar[n] = fused_f32(np.float64(ar[n]), np.float64(pr[n]) * am * pbr[n] + 0.0)


@njit(cache=True, nogil=True)
def fp32_fold(acc, P, pa, pb, js):
    """acc[m, n] <- fl32(acc + t_g) for the steps g = 0..G-1 in order (block js[g]).

    acc: (R, N) float32 strip; pa: (R, nb) 2^ea of the strip; pb: (nb, L, N)."""
    G, L, R, N = P.shape
    for task in range((R + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        tmp = np.empty(N, np.float32)
        terms = np.empty(L + 2, np.float64)
        for m in range(task * ROWS_PER_TASK, min(R, task * ROWS_PER_TASK + ROWS_PER_TASK)):
            ar = acc[m]
            for g in range(G):
                j = js[g]
                am = pa[m, j]
                if L == 1:
                    fp32_row(ar, P[g, 0, m], am, pb[j, 0], tmp)
                    continue
                for n in range(N):
                    x = np.float64(ar[n])
                    if not math.isfinite(x):
                        continue  # +-Inf + finite stays
                    terms[0] = x
                    for l in range(L):
                        terms[l + 1] = np.float64(P[g, l, m, n]) * am * pb[j, l, n] + 0.0
                    hi, r = rounded_and_residual_sign(terms, L + 1)
                    if r != 0.0:
                        hi = odd_toward(hi, r)
                    ar[n] = np.float32(hi) if (hi != 0.0 or r != 0.0) else np.float32(0.0)


@njit(cache=True, nogil=True)
def fp32_fold_f32(acc, P, pa, pb, pa32, pb32, ok, js):
    """fp32_fold for L = 1 where the driver proved the terms float32-exact: ok[m, j] says
    that (P * 2^ea) * 2^(eb + shift) is exact in float32 for the whole row of block j, so
    t is computed in float32 and fl32(acc + t) is the single float32 addition (the loop
    vectorizes at float32 width). P may be int32 (int8 GEMMs) or float; |P| < 2^24.
    Rows of blocks without the proof take fp32_row (float64 check and exact redo)."""
    G, L, R, N = P.shape
    tmp = np.empty(N, np.float32)
    for m in range(R):
        ar = acc[m]
        for g in range(G):
            j = js[g]
            pr = P[g, 0, m]
            if ok[m, j]:
                s = pa32[m, j]
                pbr = pb32[j]
                for n in range(N):
                    ar[n] += (np.float32(pr[n]) * s) * pbr[n] + np.float32(0.0)
            else:
                fp32_row(ar, pr, pa[m, j], pb[j, 0], tmp)


@njit(cache=True, nogil=True)
def exact_fold(acc, flag, P, pa, pb, js):
    """acc += t_g in float64; flag[m, n] = 1 where an addition was inexact (redone exactly
    by exact_fallback). Each limb term is exact, so acc is exact until flag is set."""
    G, L, R, N = P.shape
    for m in range(R):
        ar = acc[m]
        fr = flag[m]
        for g in range(G):
            j = js[g]
            am = pa[m, j]
            for l in range(L):
                pr = P[g, l, m]
                pbr = pb[j, l]
                for n in range(N):
                    x = ar[n]
                    t = np.float64(pr[n]) * am * pbr[n]
                    s = x + t
                    bb = s - x
                    e = (x - (s - bb)) + (t - bb)
                    ar[n] = s
                    fr[n] = fr[n] | (e != 0.0)


@njit(cache=True, parallel=True)
def exact_fallback(out, rows, cols, Al, B, ea, eb, k, qsum, w):
    """out[rows[i], cols[i]] <- the correctly rounded sum of every block's exact terms.

    Al: (L, M, K) int64 limbs of a (a = sum_l Al[l] * 2^(l*w)), B: (K, N) int64,
    ea (M, nb), eb (nb, N) scale exponents. Every limb product sum fits int64 (datapath.py).
    """
    L, _, K = Al.shape
    nb = ea.shape[1]
    for i in prange(rows.size):
        m = rows[i]
        n = cols[i]
        terms = np.empty(nb * L + 1, np.float64)
        for j in range(nb):
            for l in range(L):
                p = 0
                for c in range(j * k, min(j * k + k, K)):
                    p += Al[l, m, c] * B[c, n]
                terms[j * L + l] = math.ldexp(float(p), ea[m, j] + eb[j, n] + qsum + l * w)
        out[m, n] = fsum(terms, nb * L)


@njit(cache=True, inline="always")
def sign_extend(u, W):
    """The W-bit two's complement value of the low W bits of uint64 u, as int64."""
    sh = np.uint64(64 - W)
    return np.int64(u << sh) >> np.int64(sh)


@njit(cache=True, inline="always")
def saturating_add(a, b, lo, hi):
    """min(max(a + b, lo), hi) for a, b in [lo, hi] (W <= 64: the int64 sum may wrap)."""
    s = np.int64(np.uint64(a) + np.uint64(b))
    if ((a ^ s) & (b ^ s)) < 0:  # int64 overflow (W = 64 only)
        s = hi if b > 0 else lo
    return min(max(s, lo), hi)


@njit(cache=True)
def aligned_limbs(X, ws, W, saturate, terms):
    """floor(sum_l X[l] * 2^ws[l]) for exact integers X[l] (float64, |X| < 2^53), saturated
    to the W-bit range, or reduced modulo 2^W (wrap). ``terms`` is scratch (2L + 1 slots)."""
    L = X.size
    lo = -(np.int64(1) << np.int64(W - 1)) if W < 64 else np.int64(-9223372036854775808)
    hi = -(lo + 1)
    if saturate:
        for l in range(L):
            terms[l] = math.ldexp(X[l], ws[l])
        v, r = rounded_and_residual_sign(terms, L)
        top = math.ldexp(1.0, W - 1)
        if v > top or (v == top and r >= 0.0):
            return hi
        if v < -top or (v == -top and r < 0.0):
            return lo
    # exact integer part modulo 2^64, fractional parts summed exactly then floored
    acc = np.uint64(0)
    nf = 0
    for l in range(L):
        x = np.int64(X[l])
        s = ws[l]
        if s >= 0:
            if s < 64:
                acc += np.uint64(x) << np.uint64(s)
        else:
            d = -s
            q = x >> np.int64(min(d, 63))
            acc += np.uint64(q)
            terms[nf] = math.ldexp(X[l], s)
            terms[nf + 1] = -float(q)
            nf += 2
    if nf:
        f, r = rounded_and_residual_sign(terms, nf)
        fl = np.floor(f)
        if fl == f and r < 0.0:
            fl -= 1.0
        acc += np.uint64(np.int64(fl))
    return sign_extend(acc, W)


@njit(cache=True)
def fixed_row_saturate(ar, pr, am, pbr, W):
    """One step of one row, L = 1, saturating: floor(P * 2^sh) by float64 (exact: P has at
    most 53 bits and 2^sh = am * pbr[n] is in range), clamped, then a saturating add."""
    top = math.ldexp(1.0, W - 1)
    lo = -(np.int64(1) << np.int64(W - 1)) if W < 64 else np.int64(-9223372036854775808)
    hi = -(lo + 1)
    cap = top - 1.0 if W <= 53 else 9.2e18  # only keeps the int64 conversion in range: v >= top -> hi
    for n in range(ar.size):
        v = np.floor(np.float64(pr[n]) * am * pbr[n])  # np: math.floor is an int64 in numba
        inside = np.int64(min(max(v, -top), cap))
        al = hi if v >= top else (lo if v < -top else inside)
        a = ar[n]
        s = np.int64(np.uint64(a) + np.uint64(al))
        s = (hi if al > 0 else lo) if ((a ^ s) & (al ^ s)) < 0 else s
        ar[n] = min(max(s, lo), hi)


@njit(cache=True)
def fixed_row_wrap(ar, pr, em, eb, W):
    """One step of one row, L = 1, wrapping: (P << sh) or (P >> -sh) modulo 2^W."""
    sx = np.uint64(64 - W)
    for n in range(ar.size):
        p = np.int64(pr[n])
        sh = em + eb[n]
        up = np.int64(np.uint64(p) << np.uint64(min(max(sh, 0), 63)))
        up = up if sh < 64 else np.int64(0)
        down = p >> np.int64(min(max(-sh, 0), 63))
        al = up if sh >= 0 else down
        u = np.uint64(ar[n]) + np.uint64(al)
        ar[n] = np.int64(u << sx) >> np.int64(sx)


@njit(cache=True)
def fixed_row_saturate53(ar, pr, am, pbr, W):
    """fixed_row_saturate for W <= 53, branch-free (vectorizes): floor(P * 2^sh) is exact in
    float64, clamped in float64 (the bounds are exact there, +-Inf clamps too), and every
    int64 sum of two W-bit values is exact before its clamp."""
    hi = (np.int64(1) << np.int64(W - 1)) - 1
    lo = -hi - 1
    hf = np.float64(hi)
    lf = np.float64(lo)
    for n in range(ar.size):
        v = np.floor(np.float64(pr[n]) * am * pbr[n])
        v = min(max(v, lf), hf)
        s = ar[n] + np.int64(v)
        ar[n] = min(max(s, lo), hi)


@njit(cache=True)
def fixed_row_plain(ar, pr, am, pbr):
    """One step where no aligned term and no partial sum can leave the W-bit range (the
    driver's bound): saturating, wrapping and plain int64 addition agree, and floor(P *
    2^sh) is exact in float64."""
    for n in range(ar.size):
        ar[n] += np.int64(np.floor(np.float64(pr[n]) * am * pbr[n]))


@njit(cache=True, nogil=True)
def fixed_fold_plain32(acc, P, pa32, pb32, js):
    """fixed_fold for L = 1 where the driver proved that every term and partial sum stays
    below 2^30 (datapath.fixed_sum_bound with W <= 32) and that (P * 2^ea) * 2^(eb + shift)
    is an exact float32 (float32_exact_steps): then floor() in float32 is exact and an int32
    accumulator holds every sum; saturating, wrapping and plain addition agree."""
    G, L, R, N = P.shape
    for m in range(R):
        ar = acc[m]
        for g in range(G):
            j = js[g]
            s = pa32[m, j]
            pr = P[g, 0, m]
            pbr = pb32[j]
            for n in range(N):
                ar[n] += np.int32(np.floor((np.float32(pr[n]) * s) * pbr[n]))


@njit(cache=True, nogil=True)
def step_major_int8(codes, table, out):
    """out[s, m, i] = table[codes[m, s * step + i]], 0 past K: a's int8 integers laid out
    step-major (out is (steps, M, step)), so that every step's (M, step) slice is one
    contiguous GEMM operand; zero codes pad K to whole steps."""
    M, K = codes.shape
    ns, _, step = out.shape
    for m in range(M):
        for s in range(ns):
            for i in range(step):
                c = s * step + i
                out[s, m, i] = table[codes[m, c]] if c < K else 0


@njit(cache=True, nogil=True)
def row_block_abs(codes, table, k, l1, mx):
    """Blocks along axis 1 of codes (M, K): l1[m, j] = sum |int|, mx[m, j] = max |int|."""
    M, K = codes.shape
    for m in range(M):
        for j in range(l1.shape[1]):
            s = 0
            t = 0
            for c in range(j * k, min(K, j * k + k)):
                v = abs(table[codes[m, c]])
                s += v
                t = max(t, v)
            l1[m, j] = s
            mx[m, j] = t


@njit(cache=True, nogil=True)
def col_block_abs(codes, table, k, l1, mx, n0, n1):
    """Blocks along axis 0 of codes (K, N), columns n0..n1: l1[j, n] = sum |int|, mx[j, n] =
    max |int| (l1, mx start at zero)."""
    K, N = codes.shape
    for c in range(K):
        j = c // k
        for n in range(n0, n1):
            v = abs(table[codes[c, n]])
            l1[j, n] += v
            mx[j, n] = max(mx[j, n], v)


@njit(cache=True, nogil=True)
def fixed_to_float(acc, scale, out):
    """out = float64(acc) * scale (scale = 2^-frac_bits, a normal float64: one rounding, of
    the int64 to float64 conversion, as numpy's astype + ldexp)."""
    R, N = acc.shape
    for m in range(R):
        for n in range(N):
            out[m, n] = np.float64(acc[m, n]) * scale


@njit(cache=True)
def fixed_row_wrap_near(ar, pr, em, eb, W):
    """fixed_row_wrap where the driver proved every shift sh = em + eb[n] <= 62 - bits(P), so
    P << sh never leaves int64 and no shift needs a guard (vectorizes)."""
    sx = np.int64(64 - W)
    for n in range(ar.size):
        p = np.int64(pr[n])
        sh = em + eb[n]
        al = (p << max(sh, 0)) >> min(max(-sh, 0), 63)
        u = np.uint64(ar[n]) + np.uint64(al)
        ar[n] = np.int64(u << np.uint64(sx)) >> sx


@njit(cache=True, nogil=True)
def fixed_fold(acc, P, ea, ebs, pa, pb, js, shift, w, W, saturate, near, plain):
    """acc <- acc + floor(P_g * 2^(ea[g, m] + ebs[g, n] + shift)) per step g, saturating or
    wrapping at W bits (W <= 64). ea (R, nb) / ebs (nb, N) are the integer scale exponents
    (pa, pb the same as powers of two, pb with the shift and limb weights 2^(l*w)).
    Arithmetic right shifts floor toward -inf, as hardware. ``near``: every shift of this
    call is <= 62 - bits(P) (the driver's proof for fixed_row_wrap_near). ``plain``: the
    driver proved that no partial sum can leave the W-bit range (fixed_row_plain)."""
    G, L, R, N = P.shape
    lo = -(np.int64(1) << np.int64(W - 1)) if W < 64 else np.int64(-9223372036854775808)
    hi = -(lo + 1)
    for task in range((R + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        X = np.empty(L, np.float64)
        ws = np.empty(L, np.int64)
        terms = np.empty(2 * L + 1, np.float64)
        for m in range(task * ROWS_PER_TASK, min(R, task * ROWS_PER_TASK + ROWS_PER_TASK)):
            ar = acc[m]
            for g in range(G):
                j = js[g]
                em = ea[m, j] + shift
                if L == 1 and plain:
                    fixed_row_plain(ar, P[g, 0, m], pa[m, j], pb[j, 0])
                    continue
                if L == 1 and not saturate and near:
                    fixed_row_wrap_near(ar, P[g, 0, m], em, ebs[j], W)
                    continue
                if L == 1 and not saturate:
                    fixed_row_wrap(ar, P[g, 0, m], em, ebs[j], W)
                    continue
                if L == 1 and W <= 53:
                    fixed_row_saturate53(ar, P[g, 0, m], pa[m, j], pb[j, 0], W)
                    continue
                if L == 1:
                    fixed_row_saturate(ar, P[g, 0, m], pa[m, j], pb[j, 0], W)
                    continue
                for n in range(N):
                    sh = em + ebs[j, n]
                    for l in range(L):
                        X[l] = P[g, l, m, n]
                        ws[l] = sh + l * w
                    al = aligned_limbs(X, ws, W, saturate, terms)
                    if saturate:
                        ar[n] = saturating_add(ar[n], al, lo, hi)
                    else:
                        ar[n] = sign_extend(np.uint64(ar[n]) + np.uint64(al), W)
