"""CPU driver of mxsim.matmul: exact integer sums from int8 / float GEMMs, accumulators in
fused numba kernels. Semantics: docs/mxsim_semantics.md (matmul); numbers: docs/mxsim_speed.md.

* "exact" (exact_by_digits): each row of a is aligned to its smallest block exponent and
  each column of b to its own, which turns sum_j P_j 2^E_j into ONE integer dot product
  over all of K times 2^(emin_a[m] + emin_b[n] + qsum). The aligned integers are split into
  balanced base-128 int8 digits, so the whole product is a few torch._int_mm GEMMs (int8
  tensor/AMX/VNNI units, int32 sums exact by construction) plus one combine pass; the
  single rounding is the int64 -> float64 conversion. Rows/columns whose scale spread needs
  too many digits (rare: > 20 bits of spread for MXINT8) go per block as below.
* Per step (fp32 lane steps, FixedPoint blocks, and "exact" where digits do not apply):
  the step sums P_j come from GEMMs that are exact here: int8 GEMMs into int32 where the
  formats' integers are int8 (MXINT, MXFP4, MXFP6_E2M3, ...), else BLAS on integer-valued
  floats: float32 while every partial sum is < 2^24 (any summation order), float64 < 2^53.
  Wider products (MXFP8_E5M2 x MXFP8_E5M2 or x MXFP8_E4M3: up to 2^68.6 per block) split
  a's integers into sign-magnitude limbs of w bits, a = sum_l a_l 2^(l*w), every limb GEMM
  exact in float64; the kernels take the limbs as separate exact terms (no int128 needed).
* The output is processed in row strips; for each strip, G steps of partials are written
  into one cache-resident buffer and one numba kernel (mxsim/kernels/matmul.py) folds them
  into the strip's accumulator in order. Strips are independent: a persistent pool of
  threads (torch's thread count; each thread sets its own torch thread count to 1, since
  OpenMP's is per thread) runs them with single-threaded GEMMs and GIL-free kernels, so
  no barrier is crossed per block and no M x N temporary goes through memory per block.
  The strip loop holds the GIL only for one GEMM call and one fold call per step: all
  that is fixed for a strip is sliced once per strip. The block sums stay torch GEMMs
  (oneDNN's int8 VNNI/AMX kernels): numba loops computing them were 5-9x slower, measured
  (docs/mxsim_speed.md, "How the CPU matmul works").
  Proofs from the scale exponents alone (float32_exact_steps, fixed_point_proofs) select
  branch-free kernels: fp32 terms that are exact float32 values (one float32 add is the
  fused step), fixed point sums that cannot overflow (saturate = wrap = plain add).
* Per-step "exact" accumulates in float64 with an error-free TwoSum per term and flags the
  (rare) outputs where a sum was inexact; those are recomputed as a correctly rounded sum
  of all their exact block terms.
Which path runs depends on the formats and the scales' spread, never changes the result.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
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
    torch.set_num_threads(1)  # this thread's; the pool threads set their own (_strip_worker)
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
    2^quantum_log2), so a codes array maps to its integers by one table lookup. The entries
    of MXFP Inf/NaN codes are the kernel's finite bit arithmetic (MXTensor.int_values refuses
    those codes; matmul's result on them is not defined)."""
    from .formats import MXFPFormat
    from .kernels import dequant as _dq
    from .tensor import _kind_params

    codes = np.arange(256, dtype=np.uint8)
    if not isinstance(fmt, MXFPFormat):
        codes = codes.view(np.int8)
    kind, eb, mb, _, _ = _kind_params(fmt)
    out = np.empty(256, np.int64)
    _dq.int_values_kernel(codes, kind, eb, mb, out)
    return out


def integers(codes: np.ndarray, fmt, dtype) -> np.ndarray:
    """The integer view of ``codes`` in ``dtype`` (exact: every |int| < 2^24 for float32 use).
    Where the integer is the code byte itself (MXINT), no table lookup."""
    if codes_are_integers(fmt):
        return codes.view(np.int8).astype(dtype, copy=False)
    return int_table(fmt).astype(dtype)[codes.view(np.uint8)]


@functools.lru_cache(maxsize=None)
def codes_are_integers(fmt) -> bool:
    return bool(np.array_equal(int_table(fmt), np.arange(256, dtype=np.uint8).view(np.int8)))


@functools.lru_cache(maxsize=None)
def int_bound(fmt) -> int:
    """max |int| over every code byte (the formats' max_int, or 128 for an MXINT8 code -128)."""
    return int(np.abs(int_table(fmt)).max())


@functools.lru_cache(maxsize=None)
def int8_gemm_is_exact() -> bool:
    """Whether torch._int_mm sums int8 products exactly in int32 here. Checked once on the
    products that would saturate a 16-bit pair sum (u8 x s8 instructions without VNNI) and
    on random codes, against int64 arithmetic; if not, the float BLAS path is used."""
    import torch

    try:
        g = torch.Generator().manual_seed(0)
        cases = [(torch.full((17, 96), va, dtype=torch.int8), torch.full((96, 9), vb, dtype=torch.int8))
                 for va, vb in ((127, 127), (-128, 127), (127, -128), (-128, -128))]
        cases.append((torch.randint(-127, 128, (33, 200), generator=g).to(torch.int8),
                      torch.randint(-127, 128, (200, 40), generator=g).to(torch.int8)))
        return all(torch.equal(torch._int_mm(a, b).long(), a.long() @ b.long()) for a, b in cases)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def fits_int8(fmt) -> bool:
    """Every integer of ``fmt`` (the contract's int, for every code byte) is an int8."""
    return int(int_table(fmt).min()) >= -128 and int(int_table(fmt).max()) <= 127


@functools.lru_cache(maxsize=4)
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """A persistent pool of ``workers`` threads (one per thread count asked for): starting
    threads for every matmul cost ~0.1 ms each, which many small matmuls (a model forward
    through the datapath) would pay hundreds of times. Keyed by the process id: a forked
    child has the parent's pool object but none of its threads."""
    return ThreadPoolExecutor(workers, thread_name_prefix="mxsim")


def _run_tasks(fn, args):
    """fn(*a) for every a in ``args``, on the persistent pool of that many threads (inline
    when there is one, or when called from a pool thread: a task waiting on tasks queued
    behind it would deadlock); the first exception is raised after every task has finished."""
    if len(args) == 1 or threading.current_thread().name.startswith("mxsim"):
        for a in args:
            fn(*a)
        return
    futures = [_pool(len(args), os.getpid()).submit(fn, *a) for a in args]
    for f in futures:
        f.exception()
    for f in futures:
        f.result()


def _pool_map(fn, n, workers, min_chunk=16):
    """fn(i0, i1) over ``workers`` contiguous chunks of range(n) on threads (GIL-free kernels)."""
    chunks = max(1, min(workers, n // min_chunk))
    bounds = [n * i // chunks for i in range(chunks + 1)]
    _run_tasks(fn, [(bounds[i], bounds[i + 1]) for i in range(chunks)])


DIGIT_BITS = 7  # balanced base-128 digits: every digit product and int32 digit sum is exact
MAX_DIGITS = 4  # per operand (aligned integers up to 27 bits); rows/columns beyond go per block
MAX_DIGIT_GEMMS = 9  # digits_a * digits_b; beyond it the per-block path is cheaper
INT32_TERMS = 1 << 17  # digit products per int32 sum: 2^17 * 2^14 = 2^31 (|digit| <= 127)
PANEL_BYTES = 1 << 26  # int32 digit sums held at once (row panels of the output)


def _digit_count(bits: int) -> int:
    """Digits for integers of ``bits`` bits: the value itself up to 7 bits, else L digits
    cover |v| <= 2^(7L - 1) (balanced digits in [-64, 63], see kernels/matmul_digits.py)."""
    return 1 if bits <= DIGIT_BITS else -(-(bits + 1) // DIGIT_BITS)


def exact_by_digits(a_codes, b_codes, fmt_a, fmt_b, ea, eb, qsum, k, workers):
    """The "exact" matmul as int8 digit GEMMs over all of K (kernels/matmul_digits.py).

    Returns (out, slow_rows, slow_cols) — out is exact except in the rows/columns whose
    aligned integers need more than MAX_DIGITS digits (those the caller recomputes per
    block) — or None where the digit path does not apply or would cost more."""
    import torch

    from .kernels import matmul_digits as _dg

    M, K = a_codes.shape
    N = b_codes.shape[1]
    ta, tb = int_table(fmt_a), int_table(fmt_b)
    ca, cb = a_codes.view(np.uint8), b_codes.view(np.uint8)
    emin_a, bits_a = np.empty(M, np.int64), np.empty(M, np.int64)
    emin_b, bits_b = np.empty(N, np.int64), np.empty(N, np.int64)
    _pool_map(lambda i0, i1: _dg.row_exponents(ca[i0:i1], ta, ea[i0:i1], k, emin_a[i0:i1], bits_a[i0:i1]), M, workers)
    _pool_map(lambda i0, i1: _dg.col_exponents(cb, tb, eb, k, emin_b, bits_b, i0, i1), N, workers)
    cap = DIGIT_BITS * MAX_DIGITS - 1
    keep_a, keep_b = bits_a <= cap, bits_b <= cap
    if not keep_a.any() or not keep_b.any():
        return None
    ba, bb = int(bits_a[keep_a].max()), int(bits_b[keep_b].max())
    La, Lb = _digit_count(ba), _digit_count(bb)
    lo_a, hi_a = int(emin_a[keep_a].min()), int(emin_a[keep_a].max())
    lo_b, hi_b = int(emin_b[keep_b].min()) + qsum, int(emin_b[keep_b].max()) + qsum
    if (La * Lb > MAX_DIGIT_GEMMS or ba + bb + K.bit_length() > 63  # int64 sum: |C| < 2^63
            or min(lo_a, lo_b, lo_a + lo_b) < -1022 or max(hi_a, hi_b, hi_a + hi_b) + 63 > 1023):
        return None  # (exponents: the scaling of float64(C) by 2^e stays exact, normal range)
    Ad = np.empty((M, La, K), np.int8)
    Bd = np.empty((Lb, K, N), np.int8)
    _pool_map(lambda i0, i1: _dg.row_digits(ca[i0:i1], ta, ea[i0:i1], k, emin_a[i0:i1], keep_a[i0:i1], Ad[i0:i1]),
              M, workers)
    _pool_map(lambda i0, i1: _dg.col_digits(cb, tb, eb, k, emin_b, keep_b, i0, i1, Bd), N, workers)
    # one int32 GEMM per digit weight s (pairs p + q = s concatenated along K), K chunked so
    # that every int32 sum stays exact
    kc = max(1, INT32_TERMS // min(La, Lb))
    gemms = []  # (p0, p1, t0, t1, c0, c1, shift)
    for s in range(La + Lb - 1):
        p0, p1 = max(0, s - Lb + 1), min(La - 1, s) + 1
        t0 = Lb - 1 - s + p0  # Bd holds the digits reversed: q = s - p descending
        for c0 in range(0, K, kc):
            gemms.append((p0, p1, t0, t0 + p1 - p0, c0, min(K, c0 + kc), DIGIT_BITS * s))
    shifts = np.array([g[-1] for g in gemms], np.int64)
    sa = np.ldexp(1.0, emin_a)
    sb = np.ldexp(1.0, emin_b + qsum)
    out = np.empty((M, N), np.float64)
    rows = max(1, min(M, PANEL_BYTES // (4 * N * len(gemms))))
    C = torch.empty((len(gemms), rows, N), dtype=torch.int32)
    Cn = C.numpy()
    At = torch.from_numpy(Ad)
    Bt = [torch.from_numpy(Bd)[t0:t1, c0:c1].reshape(-1, N) for _, _, t0, t1, c0, c1, _ in gemms]
    for r0 in range(0, M, rows):
        r1 = min(M, r0 + rows)
        for g, (p0, p1, _, _, c0, c1, _) in enumerate(gemms):  # a view unless K is chunked
            torch._int_mm(At[r0:r1, p0:p1, c0:c1].reshape(r1 - r0, -1), Bt[g], out=C[g, :r1 - r0])
        _pool_map(lambda i0, i1: _dg.combine_digits(Cn[:, i0:i1], shifts, sa[r0 + i0:r0 + i1], sb,
                                                    out[r0 + i0:r0 + i1]), r1 - r0, workers)
    return out, np.flatnonzero(~keep_a), np.flatnonzero(~keep_b)


def _steps(K, k, lanes):
    """(c0, c1, block index) of every step along K, in order."""
    return [(c0, min(c0 + lanes, K), c0 // k) for c0 in range(0, K, lanes)]


def _strip_worker(r0s, rows, ctx):
    """Run the strips starting at rows r0s: block sums into a private buffer (int8 GEMMs into
    int32, or float BLAS), then the accumulator kernel, step group by step group (the
    strip's accumulator stays in cache). FixedPoint accumulates a strip in a private int64
    buffer and writes it out as float64 once, while it is in cache. Everything that does
    not change from step to step is sliced once per strip: this loop holds the GIL, and at
    ~1,000 steps per matmul its per-step Python is what other workers wait for."""
    import torch

    At, Bt, steps, G, L, dt, acc, out, flag, ea, eb, pa_all, shift, pb, w, f32, fixed = ctx
    # torch's (OpenMP) thread count is per thread: a pool thread starts at the default (all
    # cores), so every GEMM it calls would start its own team of that many threads (measured:
    # 2 workers no faster than 1; 16 workers x 16 threads oversubscribe). One thread each.
    torch.set_num_threads(1)
    M, N = out.shape
    buf = np.empty((G, L, rows, N), dt)
    buf_t = torch.from_numpy(buf)
    groups = [(g0, np.array([j for _, _, j in steps[g0:g0 + G]], np.int64)) for g0 in range(0, len(steps), G)]
    if fixed is not None:
        near, plain, scale, p32 = fixed
        strip = np.empty((rows, N), np.int32 if p32 else np.int64) if scale else None
    int8 = dt == np.int32
    for r0 in r0s:
        r1 = min(M, r0 + rows)
        R = r1 - r0
        views = [buf_t[gi, 0, :R] for gi in range(G)]
        if int8:  # At: (steps, M, step) int8, Bt: (steps, step, N) int8
            a_steps = At[:, r0:r1].unbind(0)
        else:
            a_limbs = [[At[l][r0:r1, c0:c1] for l in range(L)] for c0, c1, _ in steps]
        o, pa = out[r0:r1], pa_all[r0:r1]
        if fixed is not None:
            a = strip[:R] if scale else o
            a[:] = 0
        if isinstance(acc, FP32) and f32 is not None:
            pa32, ok = f32[0][r0:r1], f32[2][r0:r1]

            def fold(P, js):
                _mm.fp32_fold_f32(o, P, pa, pb, pa32, f32[1], ok, js)
        elif isinstance(acc, FP32):
            def fold(P, js):
                _mm.fp32_fold(o, P, pa, pb, js)
        elif isinstance(acc, Exact):
            fl = flag[r0:r1]

            def fold(P, js):
                _mm.exact_fold(o, fl, P, pa, pb, js)
        elif p32:
            pa32 = p32[0][r0:r1]

            def fold(P, js):
                _mm.fixed_fold_plain32(a, P, pa32, p32[1], js)
        else:
            eas = ea[r0:r1]

            def fold(P, js):
                _mm.fixed_fold(a, P, eas, eb, pa, pb, js, shift, w, acc.total_bits, acc.saturate, near, plain)
        for g0, js in groups:
            for gi in range(len(js)):
                if int8:
                    torch._int_mm(a_steps[g0 + gi], Bt[g0 + gi], out=views[gi])
                    continue
                c0, c1, _ = steps[g0 + gi]
                for l in range(L):
                    torch.mm(a_limbs[g0 + gi][l], Bt[c0:c1], out=buf_t[gi, l, :R])
            P = buf[:len(js), :, :R] if R == rows else np.ascontiguousarray(buf[:len(js), :, :R])
            fold(P, js)
        if fixed is not None and scale:
            _mm.fixed_to_float(a, scale, o)


def float32_exact_steps(ea, eb, shift, bound):
    """(pa32, pb32, ok): 2^ea and 2^(eb + shift) as float32, and ok[m, j] = True where every
    term P * 2^(ea[m, j] + eb[j, n] + shift) with |P| <= bound, and the partial product
    P * 2^ea[m, j], is an exact float32 for every n (so the fused step is one float32 add).
    NaN scales (exponent 128 here) only make ok False, which costs time, not exactness."""
    bits = int(bound).bit_length()  # |P| < 2^bits
    fb = eb + shift
    fmin, fmax = fb.min(axis=1), fb.max(axis=1)  # per block, over n
    ok = ((bits <= 24) & (ea >= -149) & (ea + bits <= 128) & (fmin >= -149)[None, :] & (fmax <= 127)[None, :]
          & (ea + fmin[None, :] >= -149) & (ea + fmax[None, :] + bits <= 128))
    pa32 = np.ldexp(np.float32(1), np.clip(ea, -149, 127)).astype(np.float32)
    pb32 = np.ldexp(np.float32(1), np.clip(fb, -149, 127)).astype(np.float32)
    return pa32, pb32, ok


def fixed_point_proofs(ea, eb, shift, bound, acc, L):
    """(near, plain, scale) for a FixedPoint accumulator, from the scale exponents only:
    near: every shift + bits(P) <= 62 (wrap needs no shift guards); plain: the sum over
    blocks of max |floor(P * 2^sh)| < 2^(W-2), so no term or partial sum can saturate or
    wrap (exponent 128, a NaN scale, just spoils the proofs); scale: 2^-frac_bits when it
    is a normal float64 (the strips are then written out as float64 directly), else 0."""
    if L != 1:
        return False, False, 0.0
    near = int(ea.max()) + int(eb.max()) + shift + int(bound).bit_length() <= 62
    e = np.minimum(ea.max(axis=0) + eb.max(axis=1) + shift, 1000)  # per block
    plain = bool(np.sum(np.ldexp(float(bound), e) + 1.0) < 2.0 ** (acc.total_bits - 2))
    return near, plain, (math.ldexp(1.0, -acc.frac_bits) if abs(acc.frac_bits) <= 1022 else 0.0)


def fixed_sum_bound(a_codes, b_codes, fmt_a, fmt_b, ea, eb, k, shift, workers=1):
    """An upper bound, from the codes, of sum_j max_mn |floor(P_j[m, n] * 2^sh)|: |P_j| <=
    min(l1(a block) * max|b block|, max|a block| * l1(b block)); the maximum over m of the a
    factor times the maximum over n of the b factor bounds every (m, n); floor adds <= 1."""
    M, K = a_codes.shape
    nb = ea.shape[1]
    l1a, mxa = np.zeros((M, nb), np.int64), np.zeros((M, nb), np.int64)
    l1b, mxb = np.zeros((nb, b_codes.shape[1]), np.int64), np.zeros((nb, b_codes.shape[1]), np.int64)
    ca, cb, ta, tb = a_codes.view(np.uint8), b_codes.view(np.uint8), int_table(fmt_a), int_table(fmt_b)
    _pool_map(lambda i0, i1: _mm.row_block_abs(ca[i0:i1], ta, k, l1a[i0:i1], mxa[i0:i1]), M, workers)
    _pool_map(lambda i0, i1: _mm.col_block_abs(cb, tb, k, l1b, mxb, i0, i1), b_codes.shape[1], workers)
    ea, eb = np.minimum(ea, 1000), np.minimum(eb, 1000)
    x1, xm = np.ldexp(l1a, ea).max(axis=0), np.ldexp(mxa, ea).max(axis=0)
    y1, ym = np.ldexp(l1b, eb).max(axis=1), np.ldexp(mxb, eb).max(axis=1)
    return float(np.sum(np.ldexp(np.minimum(x1 * ym, xm * y1), shift) + 1.0))


def matmul_cpu(a_codes, b_codes, fmt_a, fmt_b, ea, eb, qsum, k, acc, lanes):
    """a_codes (M, K), b_codes (K, N) element codes; ea (M, nb), eb (nb, N) scale exponents.

    Returns the (M, N) result of the accumulator (float64, or float32 for FP32), before the
    NaN mask of NaN scales (the caller applies it). Uses torch's thread count as workers.
    "exact" takes the int8 digit GEMMs where they apply (exact_by_digits), per block the
    rest; the other accumulators go per step. The path depends on the data's scale spread,
    never the result."""
    import torch

    if isinstance(acc, Exact) and int8_gemm_is_exact():
        res = exact_by_digits(a_codes, b_codes, fmt_a, fmt_b, ea, eb, qsum, k, torch.get_num_threads())
        if res is not None:
            out, slow_a, slow_b = res
            if slow_a.size:
                out[slow_a] = per_step(a_codes[slow_a], b_codes, fmt_a, fmt_b, ea[slow_a], eb, qsum, k, acc, lanes)
            fast_a = np.setdiff1d(np.arange(a_codes.shape[0]), slow_a)
            if slow_b.size and fast_a.size:
                sub = per_step(a_codes[fast_a], np.ascontiguousarray(b_codes[:, slow_b]), fmt_a, fmt_b, ea[fast_a],
                               np.ascontiguousarray(eb[:, slow_b]), qsum, k, acc, lanes)
                out[np.ix_(fast_a, slow_b)] = sub
            return out
    return per_step(a_codes, b_codes, fmt_a, fmt_b, ea, eb, qsum, k, acc, lanes)


def per_step(a_codes, b_codes, fmt_a, fmt_b, ea, eb, qsum, k, acc, lanes):
    """The per-step path: exact block (or lane-step) sums by GEMMs per step, folded into
    the accumulator by the kernels of mxsim/kernels/matmul.py (strips on threads)."""
    import torch

    M, K = a_codes.shape
    N = b_codes.shape[1]
    step = lanes if isinstance(acc, FP32) else k
    steps = _steps(K, k, step)
    dt, L, w = limb_plan(fmt_a.max_int, fmt_b.max_int, step)
    if (L == 1 and fits_int8(fmt_a) and fits_int8(fmt_b) and int_bound(fmt_a) * int_bound(fmt_b) * step < 2**31
            and int8_gemm_is_exact()):
        # int8 GEMMs into int32 (exact: 128 * 128 * step < 2^31); K padded with zero codes
        # to whole steps, a laid out step-major so every step's slice is contiguous
        dt, ns = np.int32, len(steps)
        Ai = np.empty((ns, M, step), np.int8)
        ca, ta = a_codes.view(np.uint8), int_table(fmt_a).astype(np.int8)
        _pool_map(lambda i0, i1: _mm.step_major_int8(ca[i0:i1], ta, Ai[:, i0:i1]), M, torch.get_num_threads())
        At = torch.from_numpy(Ai)
        Bi = np.zeros((ns * step, N), np.int8)
        Bi[:K] = integers(b_codes, fmt_b, np.int8)
        Bt = torch.from_numpy(Bi).reshape(ns, step, N).unbind(0)
    elif L == 1:
        At = [torch.from_numpy(integers(a_codes, fmt_a, dt))]
        Bt = torch.from_numpy(integers(b_codes, fmt_b, dt))
    else:
        Al = split_limbs(integers(a_codes, fmt_a, np.int64), L, w)
        At = [torch.from_numpy(Al[l].astype(dt)) for l in range(L)]
        Bt = torch.from_numpy(integers(b_codes, fmt_b, dt))
    flag = f32 = fixed = None
    if isinstance(acc, FP32):
        out = np.zeros((M, N), np.float32)
        if L == 1:
            f32 = float32_exact_steps(ea, eb, qsum, int_bound(fmt_a) * int_bound(fmt_b) * step)
    elif isinstance(acc, Exact):
        out = np.zeros((M, N), np.float64)
        flag = np.zeros((M, N), np.bool_)
    shift = qsum + (acc.frac_bits if not isinstance(acc, (FP32, Exact)) else 0)
    if not isinstance(acc, (FP32, Exact)):
        bound = max(fmt_a.max_int, int_bound(fmt_a)) * max(fmt_b.max_int, int_bound(fmt_b)) * step
        near, plain, scale = fixed_point_proofs(ea, eb, shift, bound, acc, L)
        p32 = None  # int32 accumulators and float32 terms (fixed_fold_plain32)
        if scale and dt == np.int32 and acc.total_bits <= 32:
            plain = plain or fixed_sum_bound(a_codes, b_codes, fmt_a, fmt_b, ea, eb, k, shift,
                                             torch.get_num_threads()) < 2.0**(acc.total_bits - 2)
            pa32, pb32, ok = float32_exact_steps(ea, eb, shift, bound)
            p32 = (pa32, pb32) if plain and ok.all() else None
        fixed = (near, plain, scale, p32)
        out = np.empty((M, N), np.float64) if scale else np.zeros((M, N), np.int64)
    pb = np.ldexp(1.0, eb[:, None, :] + shift + (np.arange(L, dtype=np.int64) * w)[None, :, None])  # (nb, L, N)
    ctx = (At, Bt, steps, 0, L, dt, acc, out, flag, ea, eb, np.ldexp(1.0, ea), shift, pb, w, f32, fixed)
    with _blas_per_thread() as workers:
        # strips of 64..STRIP_ROWS rows, at least one per worker when M allows
        per_row = L * N * np.dtype(dt).itemsize
        rows = min(STRIP_ROWS, max(MIN_STRIP_ROWS, STRIP_BYTES // per_row))  # cache-sized strips
        rows = max(MIN_STRIP_ROWS, min(rows, -(-M // workers)))  # ... and one per worker at least
        rows = min(rows // 32 * 32 or rows, M)  # whole AMX/AVX tiles of rows
        G = max(1, min(GROUP_STEPS, len(steps), STRIP_BYTES // (rows * per_row)))
        ctx = ctx[:3] + (G,) + ctx[4:]
        starts = list(range(0, M, rows))
        workers = max(1, min(workers, len(starts)))
        _run_tasks(_strip_worker, [(starts[i::workers], rows, ctx) for i in range(workers)])
    if isinstance(acc, Exact):
        rr, cc = np.nonzero(flag)
        if rr.size:
            Al = split_limbs(integers(a_codes, fmt_a, np.int64), L, w)
            _mm.exact_fallback(out, rr, cc, Al, integers(b_codes, fmt_b, np.int64), ea, eb, k, qsum, w)
    elif not isinstance(acc, (FP32, Exact)) and not fixed[2]:  # 2^-frac_bits not a normal float64
        out = np.ldexp(out.astype(np.float64), -acc.frac_bits)
    return out
