"""mxsim on CUDA tensors: Triton kernels (quant.py, quant_f32.py, bfp.py, mm_kernel.py), results stay on the device.

The third implementation of docs/mxsim_semantics.md beside the numba kernels and the torch
referee; mxsim.fake_quantize / quantize / MXTensor.dequantize / matmul route CUDA tensors
here. Covered in Triton: MXINT2-8 and every MXFP element format, every scale rule, every
rounding mode (the stochastic stream is the CPU's: same hash of the same flat index), any block size and axis,
BlockFP quantization, and matmul for every format pair (MXFP8_E5M2 included: its block sums
beyond int64 as two int64 words; BlockFP operands included) and accumulator, on the device.
Exact-accumulator outputs whose float64 running sum became inexact (rare: extreme scale
spreads) are recomputed on the CPU, those rows only.
Quantize: float32/bfloat16/float16 input takes the float32/int32 bit-pattern kernel
(quant_f32.py: native narrow loads, fused fake_quantize, values in the caller's dtype);
float64 input the float64 kernel (quant.py).

With TRITON_INTERPRET=1 the same functions run on CPU tensors through Triton's interpreter
(how tests/mxsim/test_gpu.py checks them where there is no GPU).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..accumulators import FP32, Exact
from ..formats import BlockFP, MXFPFormat, MXIntFormat

BLOCK_ELEMS = 2048  # elements per quantize program (blocks x padded block size)
# matmul launch configurations (BM, BN, num_warps, num_stages), explicit so that a GPU run
# can tune them (benchmarks/bench_matmul.py --configs): "fast" = the float32/int32 epilogue
# (one limb pair, fp32 or FixedPoint up to 32 bits), "exact" = float64 TwoSum, "general" =
# every other case (limbs, WIDE, int64 fixed point). "fast" is the best FixedPoint(32,16) row
# of the H200 sweep of nine configurations (docs/results/bench_matmul_cuda_configs.csv: 0.32
# of torch._int_mm, fp32 0.54; the earlier guess 128x128x8x3 gave 0.24 and 0.41); "exact" is
# the measured 64x64 tile of the first H200 run.
# "shadow" (FixedPoint with return_overflow: the float64 twin beside the accumulator) is not
# measured yet: 8 warps, because at 4 warps ptxas spills both the fast and the general code to
# the stack (448 / 688 bytes; 0 at 8 warps: tests/mxsim/test_gpu_compile.py, no GPU needed).
MM_CONFIGS = {"fast": (64, 64, 4, 3), "exact": (64, 64, 4, 3), "general": (64, 64, 4, 3), "shadow": (64, 64, 8, 3)}
MM_FAST = True  # the proof-selected float32/int32 epilogue; tests switch it off to compare
MM_GROUP = 8  # row tiles that sweep the column tiles together (L2 reuse of B panels)


def handles(fmt) -> bool:
    """Whether the Triton quantize kernels cover ``fmt``: MXINT and MXFP with any scale encoding
    (the kernels read its bias, NaN code and exponent range from ``fmt.scale``) and rule."""
    return isinstance(fmt, (MXIntFormat, MXFPFormat))


def _scale_args(fmt) -> dict:
    """The block-scale encoding as the quantize kernels' constexprs."""
    sc = fmt.scale
    return dict(SBIAS=sc.bias, SNAN=sc.nan_code, SMIN=sc.exp_min, SMAX=sc.exp_max)


def triton_cdiv(a, b):
    return -(-a // b)


def _next_pow2(n):
    return 1 << max(0, (int(n) - 1).bit_length())


def _hseed(seed):
    from ..kernels.quant import seed_hash

    return int(seed_hash(seed))


def _blocked(x, axis):
    """(contiguous (R, L) view with the blocked axis last, inner, moved shape)."""
    moved = x.movedim(axis, -1)
    L = moved.shape[-1]
    R = moved.numel() // L if L else 0
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64)) if axis + 1 < x.dim() else 1
    return moved.contiguous().reshape(R, L), max(inner, 1), moved.shape


def _quant_buffers(x2, fmt, want_codes, want_deq, deq_dtype, block_elems):
    """Shapes and outputs of a quantize launch on (R, L) x2: blocks per row, lanes per block
    (the block size rounded up to a power of two), blocks per program, and the code, scale and
    value buffers (a 1-element placeholder for an output not wanted)."""
    R, L = x2.shape
    nb = -(-L // fmt.block_size)
    KP = _next_pow2(fmt.block_size)
    BR = max(1, block_elems // KP)
    dev = x2.device
    is_fp = isinstance(fmt, MXFPFormat)
    codes = torch.empty((R, L) if want_codes else (1,), dtype=torch.uint8 if is_fp else torch.int8, device=dev)
    deq = torch.empty((R, L) if want_deq else (1,), dtype=deq_dtype, device=dev)
    scales = torch.empty((R, nb), dtype=torch.uint8, device=dev)
    return R, L, nb, KP, BR, codes, scales, deq


def _launch_quant(x2, fmt, rounding, seed, inner, want_codes, want_deq, deq_dtype):
    from . import quant as Q

    R, L, nb, KP, BR, codes, scales, deq = _quant_buffers(x2, fmt, want_codes, want_deq, deq_dtype, BLOCK_ELEMS)
    k, is_fp = fmt.block_size, isinstance(fmt, MXFPFormat)
    if R * nb:
        grid = (triton_cdiv(R * nb, BR),)
        Q.mx_quant_kernel[grid](
            x2, codes, scales, deq, R, L, nb, inner, _hseed(seed), K=k, KP=KP, BR=BR, IS_FP=is_fp,
            BITS=fmt.element_bits, EBITS=getattr(fmt, "exponent_bits", 0), MBITS=getattr(fmt, "mantissa_bits", 0),
            BIAS=getattr(fmt, "exponent_bias", 0), EMAX=fmt.emax_elem, MAX_NORMAL=float(fmt.element_max),
            MODE=rounding.kernel_id, RULE=fmt.scale.rule.kernel_id,
            RMBITS=getattr(fmt, "mantissa_bits", fmt.element_bits - 2), F32_IN=x2.dtype != torch.float64,
            WANT_CODES=want_codes, WANT_DEQ=want_deq, **_scale_args(fmt))
    return codes, scales, deq


# elements per program of the bit-pattern kernel (blocks x padded block size) and its warps:
# 8 elements per thread. Swept on the H200 at 16384^2 (benchmarks/bench_quantize.py --tile,
# docs/mxsim_speed.md): 1024/4 was the only tile with every float32 format >= 70% of clone and
# the best bfloat16 one; 4096/8 (16 per thread) left MXFP4 at 61% (f32) and 45% (bf16)
BLOCK_ELEMS_F32 = 1024
QUANT_WARPS = 4
_IN_KIND = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


def _exact_f32(fmt) -> bool:
    """Whether the bit-pattern kernel (quant_f32.py) takes ``fmt``: every MX value N * 2^t it
    builds needs t >= -149 (float32's subnormal step), i.e. the element step 2^quantum_log2 at
    the smallest scale 2^exp_min at least 2^-149 (with E8M0's 2^-127: every standard format);
    the others take the float64 kernel."""
    return fmt.quantum_log2 + fmt.scale.exp_min >= -149


QUANT_FAST = True  # the float32 element path of the bit-pattern kernel; tests switch it off to compare


def _fast_range(fmt):
    """(lo, hi): the block exponents s for which the bit-pattern kernel's float32 element path
    (quant_f32.py, _elems_float) is exact for ``fmt``, or None where it never is. The values are
    scaled by 2^b, b = s (MXFP) or s + 2 - bits (MXINT); exactness needs 2^b and 2^-b normal
    float32s (-126 <= b <= 126) and every element below 2^-126 (or a subnormal |x| below
    2^-126 * 2^-b) to be under 2^-25 element steps: b >= -101 for MXINT (step 2^b); MXFP
    (steps >= 2^(emin - mbits)) b >= mbits - emin - 101, and its element grid in float32:
    2^(emin - mbits) normal, 2^(mbits - te) normal for te <= emax, mbits - emin <= 101 (then
    an element under 2^-126 is under 2^-25 steps), max_normal an exact float32. Tiles with a
    block outside (rare: amax below about 2^-95 or near 2^127, or an encoding whose exponents
    reach past float32's) take the integer path."""
    if isinstance(fmt, MXIntFormat):
        q = 2 - fmt.element_bits
        return -101 - q, 126 - q
    m, emin, emax = fmt.mantissa_bits, fmt.emin, fmt.emax_elem
    if not (emin - m >= -126 and emax <= 126 + m and m - emin <= 101
            and float(np.float32(fmt.max_normal)) == fmt.max_normal):
        return None
    return max(m - emin - 101, -126), 126


def _bits_view(t):
    """The int32 (float32) / int16 (bfloat16) view the kernel reads or writes as bit patterns."""
    return t.view(torch.int32) if t.dtype == torch.float32 else t.view(torch.int16) if t.dtype == torch.bfloat16 else t


def _launch_f32(x2, fmt, rounding, seed, inner, want_codes, want_deq):
    """The bit-pattern kernel on (R, L) float32/bfloat16/float16 x2: no widened copy, the
    values written in x2's dtype (fused fake_quantize: no codes array)."""
    from . import quant_f32 as Q

    R, L, nb, KP, BR, codes, scales, deq = _quant_buffers(x2, fmt, want_codes, want_deq, x2.dtype, BLOCK_ELEMS_F32)
    k, is_fp = fmt.block_size, isinstance(fmt, MXFPFormat)
    fast = _fast_range(fmt) if QUANT_FAST else None
    if R * nb:
        Q.mx_quant_f32_kernel[(triton_cdiv(R * nb, BR),)](
            _bits_view(x2), codes, scales, _bits_view(deq), R, L, nb, inner, _hseed(seed), K=k, KP=KP, BR=BR,
            FLAT=L % k == 0, IN_KIND=_IN_KIND[x2.dtype], OUT_KIND=_IN_KIND[x2.dtype], IS_FP=is_fp,
            BITS=fmt.element_bits, EBITS=getattr(fmt, "exponent_bits", 0), MBITS=getattr(fmt, "mantissa_bits", 0),
            BIAS=getattr(fmt, "exponent_bias", 0), EMAX=fmt.emax_elem, MAX_CODE=fmt.max_code if is_fp else 0,
            MAX_POS=float(fmt.element_max), MODE=rounding.kernel_id, RULE=fmt.scale.rule.kernel_id,
            RMBITS=getattr(fmt, "mantissa_bits", fmt.element_bits - 2), WANT_CODES=want_codes, WANT_DEQ=want_deq,
            FAST=fast is not None, FAST_LO=fast[0] if fast else 0, FAST_HI=fast[1] if fast else 0,
            NOMASK=L % k == 0 and k == KP and (R * nb) % BR == 0,
            num_warps=QUANT_WARPS, **_scale_args(fmt))
    return codes, scales, deq


def handles_quantize(fmt) -> bool:
    """Whether quantize / fake_quantize run in Triton: handles(fmt), and BlockFP (bfp.py)."""
    return handles(fmt) or isinstance(fmt, BlockFP)


@functools.lru_cache(maxsize=None)
def _bfp_thresholds_cpu():
    """int32[277]: for each binade E = -149..127 of a float32 amax (index E + 149; subnormals
    by their leading bit), the smallest 23-bit normalised fraction whose BlockFP exponent is
    E + 1 (below it, E), read off the numba path's bfp_exponent_of_bits over every subnormal
    and every normal fraction below its BFP_LOG2_FREE (from there on it is E + 1 by its proof).
    The exponent grows with amax (log2 and the float32 rounding are monotone): checked here."""
    from ..kernels.quant import BFP_LOG2_FREE, bfp_exponents

    thr = np.full(277, 1 << 23, np.int32)
    sub = np.arange(1, 1 << 23, dtype=np.int64)
    normal = ((np.arange(1, 255, dtype=np.int64)[:, None] << 23) | np.arange(BFP_LOG2_FREE)).ravel()
    bits = np.concatenate([sub, normal])
    out = np.empty(bits.size, np.int64)
    bfp_exponents(bits.astype(np.int32).view(np.float32), out)
    p = np.floor(np.log2(sub)).astype(np.int64)  # exact for integers < 2^23 (the leading bit)
    fl = np.concatenate([p - 149, (normal >> 23) - 127])
    fr = np.concatenate([(sub - (1 << p)) << (23 - p), normal & 0x7FFFFF])
    up = out - fl
    if not np.isin(up, (0, 1)).all():
        raise AssertionError("BlockFP exponent outside {E, E + 1}")
    for e in range(-149, 128):
        sel = fl == e
        u, f = up[sel], fr[sel]  # in increasing fraction order
        if u.size and (np.diff(u) < 0).any():
            raise AssertionError(f"BlockFP exponent not monotone in binade {e}")
        hit = np.flatnonzero(u == 1)
        thr[e + 149] = f[hit[0]] if hit.size else (BFP_LOG2_FREE if e >= -126 else 1 << 23)
    return torch.from_numpy(thr)


_F32_1E9 = np.float32(1e-9)


def _launch_bfp(x2, fmt, rounding, seed, inner, want_codes, want_deq):
    """BlockFP on (R, L) float32 x2 (bfp.py): (codes, scales, float32 deq)."""
    from . import bfp as B

    R, L, nb, KP, BR, codes, scales, deq = _quant_buffers(x2, fmt, want_codes, want_deq, torch.float32, BLOCK_ELEMS)
    k, dev = fmt.block_size, x2.device
    amax = torch.empty(max(R * nb, 1), dtype=torch.int32, device=dev)
    thr = _bfp_thresholds_cpu().to(dev)
    sc = fmt.scale
    kw = dict(K=k, KP=KP, BR=BR, WIDTH=fmt.width, EXP_MIN=sc.exp_min, EXP_MAX=sc.exp_max, SBIAS=sc.bias,
              SNAN=sc.nan_code, PASSTHROUGH=bool(fmt.zero_passthrough), EPS_BITS=int(_F32_1E9.view(np.int32)),
              TINY_BITS=int(np.float32(1e-8).view(np.int32)), EPS=float(_F32_1E9), MODE=rounding.kernel_id,
              WANT_CODES=want_codes, WANT_DEQ=want_deq)
    if R * nb:
        grid = (triton_cdiv(R * nb, BR),)
        xb, db = x2.view(torch.int32), deq.view(torch.int32)
        args = (xb, codes, scales, db, amax)
        B.bfp_quant_kernel[grid](*args, amax, thr, R, L, nb, inner, _hseed(seed), PASS=0, **kw)
        # the zero blocks' amax: the smallest nonzero block amax bits (NaN/Inf blocks' bits are
        # >= Inf's and never lower it), 1.0 if there is none; on the device, no host sync
        inf = 0x7F800000
        low = torch.where(amax > 0, amax, torch.full_like(amax, inf)).min().clamp(max=inf)
        repl = torch.where(low >= inf, torch.full_like(low, 0x3F800000), low).reshape(1)
        B.bfp_quant_kernel[grid](*args, repl, thr, R, L, nb, inner, _hseed(seed), PASS=1, **kw)
    return codes, scales, deq


def _quant(x, fmt, axis, rounding, seed, want_codes, want_deq):
    """(codes, scales, deq, moved shape): BlockFP through bfp.py on float32 (float64 input
    rounded to float32 first, as the contract); MX float32/bfloat16/float16 through the bit-pattern
    kernel, float64 (and formats outside _exact_f32: float32 widened) through the float64 one."""
    t = x.detach()
    if isinstance(fmt, BlockFP):
        x2, inner, moved = _blocked(t.float(), axis)  # float64 beyond float32's range: Inf, a NaN block
        codes, scales, deq = _launch_bfp(x2, fmt, rounding, seed, inner, want_codes, want_deq)
        return codes, scales, deq.to(x.dtype) if want_deq else deq, moved
    if t.dtype in _IN_KIND and _exact_f32(fmt):
        x2, inner, moved = _blocked(t, axis)
        return (*_launch_f32(x2, fmt, rounding, seed, inner, want_codes, want_deq), moved)
    if t.dtype != torch.float64:
        t = t.float()  # exact; the float64 kernel's float32 arithmetic contract (F32_IN)
    x2, inner, moved = _blocked(t, axis)
    codes, scales, deq = _launch_quant(x2, fmt, rounding, seed, inner, want_codes, want_deq, t.dtype)
    if want_deq and deq.dtype != x.dtype:
        deq = deq.to(x.dtype)
    return codes, scales, deq, moved


def fake_quantize(x, fmt, axis, rounding, seed):
    """x on the device (MX formats); same dtype, shape and device."""
    _, _, deq, moved = _quant(x, fmt, axis, rounding, seed, False, True)
    return deq.reshape(moved).movedim(-1, axis).contiguous()


def quantize(x, fmt, axis, rounding, seed):
    """(codes, scales) on the device, laid out as the CPU's MXTensor fields."""
    codes2, scales2, _, moved = _quant(x, fmt, axis, rounding, seed, True, False)
    codes = codes2.reshape(moved).movedim(-1, axis).contiguous()
    scales = scales2.reshape(tuple(moved[:-1]) + (scales2.shape[1],)).movedim(-1, axis).contiguous()
    return codes, scales


@functools.lru_cache(maxsize=None)
def _lut_cpu(fmt):
    from ..datapath import int_table

    return torch.from_numpy(int_table(fmt))  # int64: MXFP8_E5M2 integers reach 2^31.8


def _lut(fmt, device):
    return _lut_cpu(fmt).to(device)


def dequantize(t, dtype):
    """Values of an MXTensor whose codes/scales are on the device, as ``dtype`` there."""
    from . import quant as Q

    fmt = t.fmt
    k = fmt.block_size
    c2, _, moved = _blocked(t.codes, t.axis)
    s2, _, _ = _blocked(t.scales, t.axis)
    R, L = c2.shape
    nb = s2.shape[1] if R else 0
    work = torch.float64 if dtype == torch.float64 else torch.float32
    out = torch.empty((R, L), dtype=work, device=c2.device)
    if R * L:
        KP = _next_pow2(k)
        BR = max(1, BLOCK_ELEMS // KP)
        fp = isinstance(fmt, MXFPFormat)
        neg_zero = (1 << (fmt.exponent_bits + fmt.mantissa_bits)) if fp else 0
        inf_code = fmt.inf_code if fp and fmt.inf_code is not None else -1
        Q.dequant_kernel[(triton_cdiv(R * nb, BR),)](
            c2, s2, _lut(fmt, c2.device), out, R, L, nb, fmt.quantum_log2, fmt.scale.bias, fmt.scale.nan_code,
            K=k, KP=KP, BR=BR, NEG_ZERO_BIT=neg_zero, MAX_CODE=fmt.max_code if fp else 0, INF_CODE=inf_code)
    return out.reshape(moved).movedim(-1, t.axis).to(dtype).contiguous()


def _limbs(ints: torch.Tensor, max_int: int) -> torch.Tensor:
    """(L, ...) int8 sign-magnitude limbs of 7 bits: ints = sum_l limb_l * 2^(7l)."""
    L = max(1, -(-int(max_int).bit_length() // 7))
    if L == 1:
        return ints.to(torch.int8).unsqueeze(0).contiguous()
    mag, neg = ints.abs(), ints < 0
    out = []
    for l in range(L):
        v = (mag >> (7 * l)) & 127
        out.append(torch.where(neg, -v, v).to(torch.int8))
    return torch.stack(out).contiguous()


def _tile_ranges(e, T):
    """(NS, 2, tiles) int32: per step, the min and max of e (NS, L) over each run of T entries."""
    import torch.nn.functional as F

    NS, L = e.shape
    nt = triton_cdiv(L, T)
    pad = nt * T - L
    lo = F.pad(e, (0, pad), value=1 << 20).reshape(NS, nt, T).amin(-1)
    hi = F.pad(e, (0, pad), value=-(1 << 20)).reshape(NS, nt, T).amax(-1)
    return torch.stack([lo, hi], 1).contiguous()


def _int8_operand(t, fmt, M, K, dev):
    """(L, M, K) int8 limbs of the integer view of codes t reshaped (M, K): MXINT and BlockFP
    codes are their integers (no copy); others go through the format's table."""
    codes = t.reshape(M, K).contiguous()
    if isinstance(fmt, (MXIntFormat, BlockFP)):
        return codes.view(torch.int8).unsqueeze(0)
    return _limbs(_lut(fmt, dev)[codes.view(torch.uint8).long()], _max_abs_int(fmt))


@functools.lru_cache(maxsize=None)
def _max_abs_int(fmt):
    return int(_lut_cpu(fmt).abs().max())  # every code byte (> max_int for E5M2's NaN codes)


def _mm_handles(fmt) -> bool:
    """Whether the matmul kernel takes ``fmt``: MXINT, MXFP, BlockFP whose scale exponents stay
    within +-200, so every 2^E of the kernel (E up to 2 * 201 + 512 frac bits + quanta) is a
    normal float64."""
    sc = fmt.scale
    return isinstance(fmt, (MXIntFormat, MXFPFormat, BlockFP)) and -200 <= sc.exp_min and sc.exp_max <= 200


def matmul(a, b, acc, lanes, overflow=False):
    """a (..., K), b (K, N) MXTensors with device codes; the result on that device. With
    ``overflow`` (FixedPoint): ``(result, overflowed)`` (mxsim.matmul's return_overflow), the
    kernel tracking the 64-bit sum beside the accumulator (mm_kernel: SHADOW)."""
    from . import mm_kernel as MM

    fa, fb = a.fmt, b.fmt
    k = fa.block_size
    K = a.shape[-1]
    batch = a.shape[:-1]
    M, N = int(np.prod(batch, dtype=np.int64)), b.shape[1]
    dev = a.codes.device
    out_dtype = torch.float32 if isinstance(acc, FP32) else torch.float64
    if not (_mm_handles(fa) and _mm_handles(fb)):  # other scale encodings: the CPU path
        from ..api import matmul as cpu_matmul

        out = cpu_matmul(a.cpu(), b.cpu(), acc, return_overflow=overflow)
        if overflow:
            return tuple(torch.from_numpy(np.ascontiguousarray(o)).to(dev) for o in out)
        return torch.from_numpy(np.ascontiguousarray(out)).to(dev)
    if M == 0 or N == 0 or K == 0:
        out = torch.zeros(*batch, N, dtype=out_dtype, device=dev)
        return (out, torch.zeros(out.shape, dtype=torch.bool, device=dev)) if overflow else out
    A8 = _int8_operand(a.codes, fa, M, K, dev)
    B8 = _int8_operand(b.codes, fb, K, N, dev)
    step = lanes if isinstance(acc, FP32) else k
    qsum = fa.quantum_log2 + fb.quantum_log2
    if isinstance(acc, Exact):
        kind, shift, W, sat, frac = 0, qsum, 64, False, 0
    elif isinstance(acc, FP32):
        kind, shift, W, sat, frac = 1, qsum, 64, False, 0
    else:
        kind, shift, W, sat, frac = 2, qsum + acc.frac_bits, acc.total_bits, acc.saturate, acc.frac_bits
    sa = a.scales.reshape(M, -1)
    ea = sa.to(torch.int32) - (fa.scale.bias - shift)  # the quanta (and frac_bits) ride on a's side
    eb = b.scales.to(torch.int32) - fb.scale.bias
    nanr = (sa == fa.scale.nan_code).any(1).to(torch.int8)
    nanc = (b.scales == fb.scale.nan_code).any(0).to(torch.int8)
    if step != k:  # fp32 lane steps: each step is a "block" carrying its block's scale
        blk = torch.arange(0, K, step, device=dev) // k
        ea, eb = ea[:, blk], eb[blk]
    ea, eb = ea.t().contiguous(), eb.contiguous()  # (steps, M), (steps, N): coalesced per step
    nsteps = ea.shape[0]
    bound = _max_abs_int(fa) * _max_abs_int(fb) * step  # |P| <= bound
    wide = bound >= 1 << 53
    one = A8.shape[0] * B8.shape[0] == 1
    fast = MM_FAST and one and kind != 0 and bound < 1 << 24 and (kind == 1 or W <= 32)
    shadow = bool(overflow) and kind == 2
    BM, BN, warps, stages = MM_CONFIGS["shadow" if shadow else "fast" if fast else "exact" if kind == 0 else "general"]
    ntm, ntn = triton_cdiv(M, BM), triton_cdiv(N, BN)
    if fast:
        tra, trb = _tile_ranges(ea, BM), _tile_ranges(eb, BN)
    else:
        tra = trb = torch.zeros(1, dtype=torch.int32, device=dev)
    out = torch.empty((M, N), dtype=torch.float32 if kind == 1 else torch.float64, device=dev)
    flag = torch.empty((M, N) if kind == 0 or shadow else (1,), dtype=torch.int8, device=dev)
    hi = (1 << (W - 1)) - 1
    MM.mx_matmul_kernel[(ntm * ntn,)](
        A8, B8, ea, eb, tra, trb, nanr, nanc, out, flag, M, N, K, nsteps, ntm, ntn,
        BLK=step, KP=max(32, _next_pow2(step)), LA=A8.shape[0], LB=B8.shape[0], BM=BM, BN=BN, GROUP=MM_GROUP,
        ACC=kind, W=W, SATURATE=sat, HI=hi, LO=-hi - 1, FRAC=frac, WIDE=wide, FAST=fast,
        PBITS=bound.bit_length(), SHADOW=shadow, num_warps=warps, num_stages=stages)
    if kind == 0:
        rows = torch.nonzero(flag.any(1)).flatten()
        if rows.numel():  # rare: redo those rows exactly on the CPU (correctly rounded fsum)
            from ..api import matmul as cpu_matmul

            redo = cpu_matmul(_host_rows(a, rows.cpu().numpy(), M, K), b.cpu(), acc)
            out[rows] = torch.from_numpy(np.ascontiguousarray(redo)).to(dev)
    if shadow:
        rows = torch.nonzero((flag == 2).any(1)).flatten()
        if rows.numel():  # rare: a 64-bit partial sum beyond 2^53, where the kernel's float64 twin
            # is not exact; those rows' FixedPoint(64) GEMM on the CPU decides
            from ..accumulators import FixedPoint
            from ..api import matmul as cpu_matmul
            from ..api import overflowed

            r = rows.cpu().numpy()
            wide = cpu_matmul(_host_rows(a, r, M, K), b.cpu(), FixedPoint(64, acc.frac_bits))
            bad = overflowed(out[rows].cpu().numpy(), wide)
            flag[rows] = torch.from_numpy(bad.astype(np.int8)).to(dev)
        return out.reshape(*batch, N), (flag == 1).reshape(*batch, N)
    return out.reshape(*batch, N)


def _host_rows(a, r, M, K):
    """Rows ``r`` (numpy indices) of the (M, K) operand ``a`` as a host MXTensor."""
    from ..tensor import MXTensor

    host = a.cpu()
    return MXTensor(np.ascontiguousarray(host.codes.reshape(M, K)[r]),
                    np.ascontiguousarray(host.scales.reshape(M, -1)[r]), a.fmt, 1, (r.size, K))
