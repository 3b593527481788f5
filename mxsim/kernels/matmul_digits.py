"""numba kernels of the CPU "exact" matmul by int8 digits. Semantics: docs/mxsim_semantics.md.

The driver (mxsim/datapath.py, ``exact_by_digits``) aligns every row of a to its smallest
block exponent, a'[m, i] = int_a[m, i] * 2^(ea[m, j(i)] - emin_a[m]) (an exact integer), and
every column of b the same way, so that

    sum_j P_j * 2^E_j  =  (sum_i a'[m, i] * b'[i, n]) * 2^(emin_a[m] + emin_b[n] + qa + qb).

The aligned integers are cut into balanced base-128 digits (every digit in [-64, 64], or the
integer itself when it fits in 7 bits), whose products are summed exactly in int32 by
torch._int_mm over all of K at once; the digit sums are combined with their weights 2^(7s)
modulo 2^64 (the true sum is < 2^63, so the modular sum is it) and converted to float64 once:
that conversion is the one correctly rounded (RNE) step the contract asks for.
"""

import numpy as np
from numba import njit

NONE = 1 << 40  # "no nonzero block yet" exponent


@njit(cache=True, inline="always")
def bit_length(v):
    n = 0
    while v:
        v >>= 1
        n += 1
    return n


@njit(cache=True, nogil=True)
def row_exponents(codes, table, ea, k, emin, bits):
    """Rows of a (blocks along axis 1): emin[m] = the smallest exponent of a block holding a
    nonzero integer (0 for a zero row), bits[m] = the bit length of max |a'| of the row."""
    M, K = codes.shape
    nb = ea.shape[1]
    blk = np.empty(nb, np.int64)
    for m in range(M):
        lo = NONE
        for j in range(nb):
            mx = 0
            for c in range(j * k, min(K, j * k + k)):
                mx = max(mx, abs(table[codes[m, c]]))
            blk[j] = mx
            if mx != 0 and ea[m, j] < lo:
                lo = ea[m, j]
        lo = 0 if lo == NONE else lo
        b = 0
        for j in range(nb):
            if blk[j] != 0:
                b = max(b, bit_length(blk[j]) + ea[m, j] - lo)
        emin[m] = lo
        bits[m] = b


@njit(cache=True, nogil=True)
def col_exponents(codes, table, eb, k, emin, bits, n0, n1):
    """Columns n0..n1 of b (blocks along axis 0): as row_exponents, per column n."""
    K, N = codes.shape
    nb = eb.shape[0]
    blk = np.zeros((nb, N), np.int64)
    for c in range(K):
        j = c // k
        for n in range(n0, n1):
            blk[j, n] = max(blk[j, n], abs(table[codes[c, n]]))
    for n in range(n0, n1):
        lo = NONE
        for j in range(nb):
            if blk[j, n] != 0 and eb[j, n] < lo:
                lo = eb[j, n]
        lo = 0 if lo == NONE else lo
        b = 0
        for j in range(nb):
            if blk[j, n] != 0:
                b = max(b, bit_length(blk[j, n]) + eb[j, n] - lo)
        emin[n] = lo
        bits[n] = b


@njit(cache=True, inline="always")
def digits_of(v, d, L, out, base, stride):
    """The L balanced base-128 digits of v * 2^d into out[base], out[base + stride], ... (low
    first); the caller guarantees |v * 2^d| <= 2^(7L - 1) (or <= 127 for L = 1)."""
    r = v << d
    for l in range(L - 1):
        dl = ((r + 64) & 127) - 64
        out[base + l * stride] = dl
        r = (r - dl) >> 7
    out[base + (L - 1) * stride] = r


@njit(cache=True, nogil=True)
def row_digits(codes, table, ea, k, emin, keep, out):
    """out (M, L, K) int8: the digits of a' (low digit first); rows with keep[m] False get 0."""
    M, K = codes.shape
    L = out.shape[1]
    nb = ea.shape[1]
    for m in range(M):
        o = out[m].reshape(L * K)
        if not keep[m]:
            o[:] = 0
            continue
        for j in range(nb):
            d = max(ea[m, j] - emin[m], 0)  # < 0 only in zero blocks
            for c in range(j * k, min(K, j * k + k)):
                digits_of(table[codes[m, c]], d, L, o, c, K)


@njit(cache=True, nogil=True)
def col_digits(codes, table, eb, k, emin, keep, n0, n1, out):
    """out (L, K, N) int8 for the columns n0..n1: the digits of b' in REVERSED order (out[L-1]
    is the low digit), so that a digit-weight group is one contiguous K-concatenation."""
    K, N = codes.shape
    L = out.shape[0]
    tmp = np.empty(L, np.int64)
    for c in range(K):
        j = c // k
        for n in range(n0, n1):
            if not keep[n]:
                for l in range(L):
                    out[l, c, n] = 0
                continue
            d = max(eb[j, n] - emin[n], 0)
            digits_of(table[codes[c, n]], d, L, tmp, 0, 1)
            for l in range(L):
                out[L - 1 - l, c, n] = tmp[l]


@njit(cache=True, nogil=True)
def combine_digits(C, shifts, sa, sb, out):
    """out[m, n] = float64(sum_t C[t, m, n] * 2^shifts[t]) * sa[m] * sb[n] (sum modulo 2^64:
    exact, the true sum is < 2^63; sa, sb powers of two kept in float64's normal range)."""
    T, R, N = C.shape
    acc = np.empty(N, np.uint64)
    for m in range(R):
        acc[:] = 0
        for t in range(T):
            s = np.uint64(shifts[t])
            c = C[t, m]
            for n in range(N):
                acc[n] += np.uint64(np.int64(c[n])) << s
        o = out[m]
        am = sa[m]
        for n in range(N):
            o[n] = np.float64(np.int64(acc[n])) * am * sb[n]
