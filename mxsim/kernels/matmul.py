"""numba accumulation kernels for MX matmul. Semantics: docs/mxsim_semantics.md (matmul).

The exact block (or lane-step) integer sums P come from BLAS in the api (exact there, see
api._partials); these kernels only fold them into the selected accumulator, in order.
"""

import math

import numpy as np
from numba import njit, prange

_POW2 = np.array([2.0 ** (i - 1000) for i in range(2001)])  # 2^E by lookup: ldexp is a libm call


@njit(cache=True, inline="always")
def two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(cache=True, parallel=True)
def exact_step(acc, flag, P, ea, eb, qsum):
    """acc += P * 2^(ea[m] + eb[n] + qsum) in float64; flag where an addition was inexact.

    P * 2^E is exact (|P| < 2^53, |E| < 600), so acc is exact until flag is set.
    """
    M, N = acc.shape
    for m in prange(M):
        for n in range(N):
            t = float(P[m, n]) * _POW2[1000 + ea[m] + eb[n] + qsum]  # exact: |E| < 600
            s, e = two_sum(acc[m, n], t)
            acc[m, n] = s
            if e != 0.0:
                flag[m, n] = True


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


@njit(cache=True, parallel=True)
def exact_fallback(out, rows, cols, A, B, ea_blk, eb_blk, k, qsum):
    """Recompute out[rows[i], cols[i]] as the correctly rounded sum of every block's exact term.

    A: (M, K) int64, B: (K, N) int64, ea_blk (M, nb), eb_blk (nb, N) scale exponents.
    """
    K = A.shape[1]
    nb = ea_blk.shape[1]
    for i in prange(rows.size):
        m = rows[i]
        n = cols[i]
        terms = np.empty(nb, np.float64)
        for j in range(nb):
            p = 0
            for c in range(j * k, min(j * k + k, K)):
                p += A[m, c] * B[c, n]
            terms[j] = math.ldexp(float(p), ea_blk[m, j] + eb_blk[j, n] + qsum)
        out[m, n] = fsum(terms, nb)


@njit(cache=True, parallel=True)
def fp32_step(acc, P, ea, eb, qsum):
    """acc <- fl32(acc + P * 2^E): one rounding (RNE) of the exact sum.

    The exact sum is rounded to float64 with round-to-odd (TwoSum tells which side the
    exact value lies on), then to float32: 53 >= 24 + 2 bits, so no double-rounding error.
    """
    M, N = acc.shape
    for m in prange(M):
        for n in range(N):
            x = float(acc[m, n])
            t = float(P[m, n]) * _POW2[1000 + ea[m] + eb[n] + qsum]  # exact: |E| < 600
            s, e = two_sum(x, t)
            if e != 0.0 and math.isfinite(s):
                mant, _ = math.frexp(s)
                if int(math.ldexp(abs(mant), 53)) & 1 == 0:  # s even: the odd neighbour toward e
                    s = np.nextafter(s, math.copysign(np.inf, e))
            acc[m, n] = np.float32(s)


@njit(cache=True, inline="always")
def _wrap(v, W):
    """v (uint64 bit pattern) reduced to a W-bit two's complement int64."""
    if W == 64:
        return np.int64(v)
    mask = (np.uint64(1) << np.uint64(W)) - np.uint64(1)
    v = v & mask
    if v >> np.uint64(W - 1):
        return np.int64(v) - (np.int64(1) << np.int64(W))
    return np.int64(v)


@njit(cache=True, parallel=True)
def fixed_step(acc, P, ea, eb, shift0, W, saturate):
    """acc <- acc + floor(P * 2^(E + frac_bits)), saturating or wrapping at W bits (W <= 64).

    shift0 = qa + qb + frac_bits. P is int64 (exact block sum).
    """
    M, N = acc.shape
    hi = np.int64((np.uint64(1) << np.uint64(W - 1)) - np.uint64(1))
    lo = -hi - 1
    for m in prange(M):
        for n in range(N):
            p = P[m, n]
            sh = ea[m] + eb[n] + shift0
            if p == 0:
                continue
            if sh < 0:
                al = p >> min(-sh, 63)  # arithmetic shift: floor toward -inf
                if saturate:
                    al = min(max(al, lo), hi)
            elif saturate:
                # |p| < 2^62; shifting past the range saturates
                nbits = 0
                ap = abs(p)
                while ap > 0:
                    nbits += 1
                    ap >>= 1
                if nbits + sh > W - 1:
                    al = hi if p > 0 else lo
                else:
                    al = p << sh
            else:
                al = _wrap(np.uint64(p) << np.uint64(sh), W) if sh < 64 else np.int64(0)
            a = acc[m, n]
            if saturate:
                if al > 0 and a > hi - al:
                    a = hi
                elif al < 0 and a < lo - al:
                    a = lo
                else:
                    a = a + al
            else:
                a = _wrap(np.uint64(a) + np.uint64(al), W)
            acc[m, n] = a


@njit(cache=True, parallel=True)
def fold_rows(A, ea, k, out, smax, spread, absmax_sum):
    """Fold block scales into a's integers relative to each row's largest exponent.

    out[m, c] = A[m, c] * 2^(ea[m, j] - smax[m]); blocks whose integers are all zero do not
    count for smax / spread (their exponent is irrelevant). absmax_sum[m] = sum |A[m, :]|.
    """
    M, K = A.shape
    nb = ea.shape[1]
    for m in prange(M):
        hi = -(1 << 40)
        lo = 1 << 40
        tot = 0
        for j in range(nb):
            nz = False
            for c in range(j * k, min(j * k + k, K)):
                v = A[m, c]
                if v != 0:
                    nz = True
                    tot += abs(v)
            if nz:
                hi = max(hi, ea[m, j])
                lo = min(lo, ea[m, j])
        if hi < lo:
            hi = 0
            lo = 0
        smax[m] = hi
        spread[m] = hi - lo
        absmax_sum[m] = tot
        for j in range(nb):
            f = math.ldexp(1.0, min(max(ea[m, j] - hi, -1000), 0))
            for c in range(j * k, min(j * k + k, K)):
                out[m, c] = A[m, c] * f


@njit(cache=True, parallel=True)
def fold_cols(B, eb, k, out, smax, spread, absmax):
    """fold_rows for b (K, N) blocked along axis 0; absmax[n] = max |B[:, n]|."""
    K, N = B.shape
    nb = eb.shape[0]
    nz = np.zeros((nb, N), np.bool_)
    absmax[:] = 0
    for c in range(K):  # row order: B is C-contiguous
        j = c // k
        for n in range(N):
            v = abs(B[c, n])
            if v != 0:
                nz[j, n] = True
                absmax[n] = max(absmax[n], v)
    fac = np.empty((nb, N))
    for n in prange(N):
        hi = -(1 << 40)
        lo = 1 << 40
        for j in range(nb):
            if nz[j, n]:
                hi = max(hi, eb[j, n])
                lo = min(lo, eb[j, n])
        if hi < lo:
            hi = 0
            lo = 0
        smax[n] = hi
        spread[n] = hi - lo
        for j in range(nb):
            fac[j, n] = math.ldexp(1.0, min(max(eb[j, n] - hi, -1000), 0))
    for c in prange(K):
        j = c // k
        for n in range(N):
            out[c, n] = B[c, n] * fac[j, n]
