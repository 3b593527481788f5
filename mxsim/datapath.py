"""CPU driver of mxsim.matmul: exact block sums from BLAS, accumulators in fused numba kernels.

Semantics: docs/mxsim_semantics.md (matmul). Design (docs/mxsim_speed.md has the numbers):

* The block (or fp32 lane-step) integer sums P_j are computed by BLAS, which is exact here:
  every partial sum of integer products is an integer bounded by max|a| * max|b| * step, so a
  float32 GEMM is exact while that bound is < 2^24 (MXINT8 x MXINT8: 127*127*32 < 2^19) and
  a float64 GEMM while it is < 2^53, in any summation order. Wider products (MXFP8_E5M2 x
  MXFP8_E5M2 or x MXFP8_E4M3: up to 2^68.6 per block) split a's integers into sign-magnitude
  limbs of w bits, a = sum_l a_l 2^(l*w), with w chosen so that every limb GEMM is exact in
  float64; the kernels take the limbs as separate exact terms (no int128 needed).
* The output is processed in row strips; for each strip, G steps of partials are written by
  BLAS into one cache-resident buffer and one numba kernel (mxsim/kernels/matmul.py, rows in
  parallel) folds them into the strip's accumulator in order. So the integer work runs at
  BLAS speed on every core, and no M x N float64 temporary goes through memory per block.
* "exact" accumulates in float64 with an error-free TwoSum per term and flags the (rare)
  outputs where a sum was inexact; those are recomputed as a correctly rounded sum of all
  their exact block terms.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .accumulators import FP32, Exact
from .kernels import matmul as _mm

STRIP_ROWS = 256  # rows of the output per strip: BLAS is efficient from ~200 rows on
STRIP_BYTES = 8 << 20  # cap of one strip's partials buffer (G steps x limbs x rows x N)
GROUP_STEPS = 4  # steps folded per kernel call


@contextlib.contextmanager
def _exact_float32_gemm():
    """torch may be told to run float32 matmuls in bf16/tf32 (set_float32_matmul_precision);
    the block sums need IEEE float32, so force it for the duration of the call."""
    import torch

    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def limb_plan(max_a: int, max_b: int, step: int):
    """(GEMM dtype, number of limbs L, limb width w) for integers |a| <= max_a, |b| <= max_b
    summed over ``step`` products: float32 if the sums stay < 2^24, float64 if < 2^53 (one
    limb), else float64 with a split into L limbs of w bits each (every limb sum < 2^53)."""
    bound = max_a * max_b * step
    if bound < 2**24:
        return np.float32, 1, 0
    if bound < 2**53:
        return np.float64, 1, 0
    w = 53 - (max_b * step).bit_length()  # 2^w * max_b * step < 2^53
    if w < 1:
        raise ValueError(f"matmul: block sums of {step} products of integers up to {max_b} exceed the exact "
                         "float64 GEMM range even with one-bit limbs; use a smaller block size")
    return np.float64, -(-max_a.bit_length() // w), w


def split_limbs(A: np.ndarray, L: int, w: int) -> np.ndarray:
    """(L, M, K) int64 sign-magnitude limbs: A = sum_l out[l] * 2^(l*w), |out[l]| < 2^w."""
    if L == 1:
        return A[None]
    mag, neg = np.abs(A), A < 0
    out = np.empty((L,) + A.shape, np.int64)
    for l in range(L):
        v = (mag >> (l * w)) & ((1 << w) - 1)
        out[l] = np.where(neg, -v, v)
    return out


def _steps(K, k, lanes):
    """(c0, c1, block index) of every step along K, in order."""
    return [(c0, min(c0 + lanes, K), c0 // k) for c0 in range(0, K, lanes)]


def matmul_cpu(Ai, Bi, ea, eb, qsum, k, acc, lanes):
    """Ai (M, K), Bi (K, N) int64 integer views; ea (M, nb), eb (nb, N) scale exponents.

    Returns the (M, N) result of the accumulator (float64, or float32 for FP32), before the
    NaN mask of NaN scales (the caller applies it)."""
    import torch

    M, K = Ai.shape
    N = Bi.shape[1]
    step = lanes if isinstance(acc, FP32) else k
    steps = _steps(K, k, step)
    dt, L, w = limb_plan(int(np.abs(Ai).max(initial=0)), int(np.abs(Bi).max(initial=0)), step)
    Al = split_limbs(Ai, L, w)
    At = [torch.from_numpy(Al[l].astype(dt)) for l in range(L)]
    Bt = torch.from_numpy(Bi.astype(dt))
    if isinstance(acc, FP32):
        out = np.zeros((M, N), np.float32)
    elif isinstance(acc, Exact):
        out = np.zeros((M, N), np.float64)
        flag = np.zeros((M, N), np.bool_)
    else:
        out = np.zeros((M, N), np.int64)
    pa_all = np.ldexp(1.0, ea)  # 2^ea, exact
    shift = qsum + (acc.frac_bits if not isinstance(acc, (FP32, Exact)) else 0)
    limb_w = np.arange(L, dtype=np.int64) * w
    G = max(1, min(GROUP_STEPS, len(steps), STRIP_BYTES // max(1, L * min(M, STRIP_ROWS) * N * np.dtype(dt).itemsize)))
    rows = min(M, STRIP_ROWS)
    buf = np.empty((G, L, rows, N), dt)
    buf_t = torch.from_numpy(buf)
    with _exact_float32_gemm():
        for r0 in range(0, M, rows):  # the strip's accumulator stays in cache across all steps
            r1 = min(M, r0 + rows)
            R = r1 - r0
            for g0 in range(0, len(steps), G):
                grp = steps[g0:g0 + G]
                js = np.array([j for _, _, j in grp])
                for gi, (c0, c1, _) in enumerate(grp):
                    for l in range(L):
                        torch.mm(At[l][r0:r1, c0:c1], Bt[c0:c1], out=buf_t[gi, l, :R])
                P = buf[:len(grp), :, :R] if R == rows else np.ascontiguousarray(buf[:len(grp), :, :R])
                pa = np.ascontiguousarray(pa_all[r0:r1, js].T)  # (g, R)
                pb = np.ldexp(1.0, eb[js][:, None, :] + shift + limb_w[None, :, None])  # (g, L, N)
                if isinstance(acc, FP32):
                    _mm.fp32_fold(out[r0:r1], P, pa, pb)
                elif isinstance(acc, Exact):
                    _mm.exact_fold(out[r0:r1], flag[r0:r1], P, pa, pb)
                else:
                    _mm.fixed_fold(out[r0:r1], P, np.ascontiguousarray(ea[r0:r1, js].T), np.ascontiguousarray(eb[js]),
                                   pa, pb, shift, w, acc.total_bits, acc.saturate)
    if isinstance(acc, Exact):
        rr, cc = np.nonzero(flag)
        if rr.size:
            _mm.exact_fallback(out, rr, cc, Al, Bi, ea, eb, k, qsum, w)
    elif not isinstance(acc, FP32):
        out = np.ldexp(out.astype(np.float64), -acc.frac_bits)
    return out
