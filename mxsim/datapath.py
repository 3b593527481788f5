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
  BLAS into one cache-resident buffer and one numba kernel (mxsim/kernels/matmul.py) folds
  them into the strip's accumulator in order. Strips are independent: a pool of threads
  (torch's thread count) runs them, each with single-threaded BLAS and GIL-free kernels, so
  the integer work runs at BLAS speed on every core with no barrier per block, and no
  M x N float64 temporary goes through memory per block.
* "exact" accumulates in float64 with an error-free TwoSum per term and flags the (rare)
  outputs where a sum was inexact; those are recomputed as a correctly rounded sum of all
  their exact block terms.
"""

from __future__ import annotations

import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .accumulators import FP32, Exact
from .kernels import matmul as _mm

STRIP_ROWS = 256  # rows of the output per strip (at most)
MIN_STRIP_ROWS = 64  # single-threaded BLAS on K-slices is within ~1.15x of one full GEMM from here
STRIP_BYTES = 1 << 20  # target size of one strip's partials buffer: stays in a core's L2
GROUP_STEPS = 2  # steps folded per kernel call (fewer calls; the buffer grows with it)


@contextlib.contextmanager
def _blas_per_thread():
    """IEEE float32 GEMMs, single-threaded inside each strip worker; restored afterwards.

    torch may be told to run float32 matmuls in bf16/tf32 (set_float32_matmul_precision);
    the block sums need IEEE float32. Parallelism comes from the strip threads instead of
    torch's intra-op pool (whose spinning threads fight the workers)."""
    import torch

    old_prec, old_threads = torch.get_float32_matmul_precision(), torch.get_num_threads()
    torch.set_float32_matmul_precision("highest")
    torch.set_num_threads(1)
    try:
        yield old_threads
    finally:
        torch.set_num_threads(old_threads)
        torch.set_float32_matmul_precision(old_prec)


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


@functools.lru_cache(maxsize=None)
def int_table(fmt) -> np.ndarray:
    """int64[256]: the integer view of every element code byte (the contract's int = value /
    2^quantum_log2), so a codes array maps to its integers by one table lookup."""
    from .formats import MXFPFormat
    from .tensor import MXTensor

    codes = np.arange(256, dtype=np.uint8)
    if not isinstance(fmt, MXFPFormat):
        codes = codes.view(np.int8)
    nb = -(-256 // fmt.block_size)
    return MXTensor(codes, np.zeros(nb, np.uint8), fmt, 0, (256,)).int_values()


def integers(codes: np.ndarray, fmt, dtype) -> np.ndarray:
    """The integer view of ``codes`` in ``dtype`` (exact: every |int| < 2^24 for float32 use)."""
    return int_table(fmt).astype(dtype)[codes.view(np.uint8)]


def _steps(K, k, lanes):
    """(c0, c1, block index) of every step along K, in order."""
    return [(c0, min(c0 + lanes, K), c0 // k) for c0 in range(0, K, lanes)]


def _strip_worker(r0s, rows, ctx):
    """Run the strips starting at rows r0s: BLAS block sums into a private buffer, then the
    accumulator kernel, step group by step group (the strip's accumulator stays in cache)."""
    import torch

    At, Bt, steps, G, L, dt, acc, out, flag, ea, eb, pa_all, shift, pb, w = ctx
    M, N = out.shape
    buf = np.empty((G, L, rows, N), dt)
    buf_t = torch.from_numpy(buf)
    for r0 in r0s:
        r1 = min(M, r0 + rows)
        R = r1 - r0
        for g0 in range(0, len(steps), G):
            grp = steps[g0:g0 + G]
            js = np.array([j for _, _, j in grp], np.int64)
            for gi, (c0, c1, _) in enumerate(grp):
                for l in range(L):
                    torch.mm(At[l][r0:r1, c0:c1], Bt[c0:c1], out=buf_t[gi, l, :R])
            P = buf[:len(grp), :, :R] if R == rows else np.ascontiguousarray(buf[:len(grp), :, :R])
            if isinstance(acc, FP32):
                _mm.fp32_fold(out[r0:r1], P, pa_all[r0:r1], pb, js)
            elif isinstance(acc, Exact):
                _mm.exact_fold(out[r0:r1], flag[r0:r1], P, pa_all[r0:r1], pb, js)
            else:
                _mm.fixed_fold(out[r0:r1], P, ea[r0:r1], eb, pa_all[r0:r1], pb, js, shift, w, acc.total_bits,
                               acc.saturate)


def matmul_cpu(a_codes, b_codes, fmt_a, fmt_b, ea, eb, qsum, k, acc, lanes):
    """a_codes (M, K), b_codes (K, N) element codes; ea (M, nb), eb (nb, N) scale exponents.

    Returns the (M, N) result of the accumulator (float64, or float32 for FP32), before the
    NaN mask of NaN scales (the caller applies it). Uses torch's thread count as workers.
    The GEMM type is chosen from the formats' largest integers, so it does not depend on
    the data."""
    import torch

    M, K = a_codes.shape
    N = b_codes.shape[1]
    step = lanes if isinstance(acc, FP32) else k
    steps = _steps(K, k, step)
    dt, L, w = limb_plan(fmt_a.max_int, fmt_b.max_int, step)
    if L == 1:
        At = [torch.from_numpy(integers(a_codes, fmt_a, dt))]
    else:
        Al = split_limbs(integers(a_codes, fmt_a, np.int64), L, w)
        At = [torch.from_numpy(Al[l].astype(dt)) for l in range(L)]
    Bt = torch.from_numpy(integers(b_codes, fmt_b, dt))
    flag = None
    if isinstance(acc, FP32):
        out = np.zeros((M, N), np.float32)
    elif isinstance(acc, Exact):
        out = np.zeros((M, N), np.float64)
        flag = np.zeros((M, N), np.bool_)
    else:
        out = np.zeros((M, N), np.int64)
    shift = qsum + (acc.frac_bits if not isinstance(acc, (FP32, Exact)) else 0)
    pb = np.ldexp(1.0, eb[:, None, :] + shift + (np.arange(L, dtype=np.int64) * w)[None, :, None])  # (nb, L, N)
    ctx = (At, Bt, steps, 0, L, dt, acc, out, flag, ea, eb, np.ldexp(1.0, ea), shift, pb, w)
    with _blas_per_thread() as workers:
        # strips of 64..STRIP_ROWS rows, at least one per worker when M allows
        per_row = L * N * np.dtype(dt).itemsize
        rows = min(STRIP_ROWS, max(MIN_STRIP_ROWS, STRIP_BYTES // per_row))  # cache-sized strips
        rows = max(MIN_STRIP_ROWS, min(rows, -(-M // workers)))  # ... and one per worker at least
        rows = min(rows, M)
        G = max(1, min(GROUP_STEPS, len(steps), STRIP_BYTES // (rows * per_row)))
        ctx = ctx[:3] + (G,) + ctx[4:]
        starts = list(range(0, M, rows))
        workers = max(1, min(workers, len(starts)))
        if workers == 1:
            _strip_worker(starts, rows, ctx)
        else:
            with ThreadPoolExecutor(workers) as pool:
                for f in [pool.submit(_strip_worker, starts[i::workers], rows, ctx) for i in range(workers)]:
                    f.result()
    if isinstance(acc, Exact):
        rr, cc = np.nonzero(flag)
        if rr.size:
            Al = split_limbs(integers(a_codes, fmt_a, np.int64), L, w)
            _mm.exact_fallback(out, rr, cc, Al, integers(b_codes, fmt_b, np.int64), ea, eb, k, qsum, w)
    elif not isinstance(acc, FP32):
        out = np.ldexp(out.astype(np.float64), -acc.frac_bits)
    return out
