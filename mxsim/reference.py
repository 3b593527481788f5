"""The referee: an independent pure-PyTorch implementation of docs/mxsim_semantics.md.

Written apart from ``mxsim/kernels`` (numba) on purpose: the only things shared are the format
dataclasses of ``mxsim/formats.py`` (with their scale encodings), the ``Rounding`` and the
accumulator types. It works on CPU and CUDA tensors (it is the GPU path).

Design notes (why each step is exact):

* MX formats compute on float64 values. Every float32 input times a power of two in
  [2^-133, 2^142] stays exact in float64 (the exponent range of float64 is far wider), so the
  scaled value ``v`` is exact, and ``|v| - floor(|v|)`` is exact (Sterbenz), so every rounding
  decision (ties, stochastic threshold) is taken on exact numbers. No ``|v| + 0.5`` trick.
* ``floor(log2(.))`` comes from ``torch.frexp`` (binary exponent), never from a float log2.
* BlockFP follows the authors' float32 torch ops: ``torch.log2`` on a float32 tensor and
  ``ceil``; ``fl32(|x| + fl32(1e-9))``; ``torch.round`` (half to even) for "nearest_even".
* The stochastic-rounding hash (lowbias32) is evaluated in int64 with 32-bit masks; the
  multiplications by 32-bit constants are split into 16-bit halves so no int64 product can
  overflow.
* ``matmul`` is a referee for small sizes: the per-block integer products are exact int64
  sums; accumulation across blocks uses Python integers (arbitrary precision) and a
  hand-written round-to-nearest-even to float32/float64.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from .accumulators import FP32, Exact, datapath_accumulator
from .formats import BlockFP, MXFPFormat, MXIntFormat, ScaleRule, check_rounding, get_format
from .rounding import Rounding

__all__ = ["fake_quantize", "quantize", "dequantize", "matmul", "lowbias32", "uniform_u"]

_M32 = 0xFFFFFFFF
_F32_1E9 = float(np.float32(1e-9))  # fl32(1e-9), exactly representable in float64
_F32_1E8 = float(np.float32(1e-8))  # fl32(1e-8)


# --------------------------------------------------------------------------------------
# input handling


def _as_tensor(x):
    """Return (tensor, was_numpy). Rejects integer, bool and complex input."""
    was_numpy = isinstance(x, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(x)) if was_numpy else x
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"x must be a torch tensor or numpy array, got {type(x).__name__}")
    if t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"x must be float16, bfloat16, float32 or float64, got dtype {t.dtype}")
    return t, was_numpy


def _norm_axis(axis, ndim):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"axis must be an integer, got {axis!r}")
    a = int(axis)
    if ndim == 0:
        raise ValueError("x must have at least one dimension")
    if not -ndim <= a < ndim:
        raise ValueError(f"axis {axis} out of range for a tensor of {ndim} dimensions (allowed: {-ndim}..{ndim - 1})")
    return a % ndim


def _to_blocks(t, axis, k, fill=0):
    """Move ``axis`` last and split it into blocks of k (zero/fill padded).

    Returns (blocks of shape (..., nb, k), moved shape (..., L)).
    """
    m = t.movedim(axis, -1)
    L = m.shape[-1]
    nb = -(-L // k)
    pad = nb * k - L
    if pad:
        m = torch.nn.functional.pad(m, (0, pad), value=fill) if m.dtype.is_floating_point else torch.cat(
            [m, torch.full((*m.shape[:-1], pad), fill, dtype=m.dtype, device=m.device)], dim=-1
        )
    return m.reshape(*m.shape[:-1], nb, k), L


def _from_blocks(b, L, axis):
    m = b.reshape(*b.shape[:-2], b.shape[-2] * b.shape[-1])[..., :L]
    return m.movedim(-1, axis)


# --------------------------------------------------------------------------------------
# stochastic rounding hash


def _mul32(x, c):
    """(x * c) mod 2^32 for int64 tensors 0 <= x < 2^32 and a 32-bit constant c, overflow free."""
    lo = c & 0xFFFF
    hi = c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def lowbias32(x):
    """lowbias32 on an int64 tensor holding uint32 values (or a Python int)."""
    if isinstance(x, int):
        x &= _M32
        x ^= x >> 16
        x = (x * 0x7FEB352D) & _M32
        x ^= x >> 15
        x = (x * 0x846CA68B) & _M32
        x ^= x >> 16
        return x
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def uniform_u(index, seed):
    """u = (h >> 8) * 2^-24 (float64) for flat indices ``index`` (int64 tensor)."""
    s = lowbias32((int(seed) & _M32) ^ 0x9E3779B9)
    h = lowbias32((index & _M32) ^ s)
    return (h >> 8).to(torch.float64) * 2.0**-24


def _round_magnitude(t, rounding, u=None):
    """Round non-negative float64 tensor ``t`` to an integer-valued float64 tensor."""
    fl = torch.floor(t)
    if rounding is Rounding.FLOOR:
        return fl
    f = t - fl  # exact
    if rounding is Rounding.NEAREST_EVEN:
        return torch.round(t)  # half to even, exact on float64
    if rounding is Rounding.NEAREST_AWAY:
        return fl + (f >= 0.5).to(t.dtype)
    if rounding is Rounding.STOCHASTIC:
        up = (f > 0) & (f >= 1.0 - u)
        return fl + up.to(t.dtype)
    raise ValueError(f"unknown rounding {rounding!r}")


def _flat_index_blocks(shape, axis, k, device):
    idx = torch.arange(int(np.prod(shape)) if len(shape) else 1, dtype=torch.int64, device=device).reshape(shape)
    blocks, _ = _to_blocks(idx, axis, k, fill=0)
    return blocks


def _pow2(e):
    """2^e (float64) for an integer tensor e in [-1022, 1023], built from the bit pattern
    (torch.ldexp/pow may go through float32 or a libm pow; this is exact by construction)."""
    if isinstance(e, int):
        return 2.0**e
    return ((e.to(torch.int64) + 1023) << 52).view(torch.float64)


def _floor_log2(a):
    """floor(log2(a)) for positive finite float64 a, from the binary exponent."""
    _, ex = torch.frexp(a)
    return ex.to(torch.int64) - 1


# --------------------------------------------------------------------------------------
# MX formats (float64 arithmetic)


def _rule_exponent(amax, fmt, f32_input):
    """Unclamped shared exponent of blocks with amax > 0 under the format's scale rule
    (docs/mxsim_semantics.md, "Scale rules"), from frexp: amax = m * 2^e, m in [0.5, 1)."""
    rule = fmt.scale.rule
    if isinstance(fmt, MXIntFormat):
        emax, mbits, max_pos = 0, fmt.element_bits - 2, float(fmt.max_code) * 2.0**fmt.quantum_log2
    else:
        emax, mbits, max_pos = fmt.emax_elem, fmt.mantissa_bits, float(fmt.max_normal)
    m, e = torch.frexp(amax)
    e = e.to(torch.int64)
    if rule is ScaleRule.FLOOR:
        return e - 1 - emax
    if rule is ScaleRule.CEIL:
        return e - (m == 0.5).to(torch.int64) - emax
    if rule is ScaleRule.EVEN:
        # amax rounded half up to mbits fraction bits leaves its binade iff m >= 1 - 2^-(mbits+2)
        return e - 1 + (m >= 1.0 - 2.0 ** -(mbits + 2)).to(torch.int64) - emax
    if rule is ScaleRule.RCEIL:
        d = amax / max_pos
        if f32_input:
            d = d.to(torch.float32).to(torch.float64)  # the float32 quotient
        dm, de = torch.frexp(torch.where(d > 0, d, torch.ones_like(d)))
        s = de.to(torch.int64) - (dm == 0.5).to(torch.int64)
        return torch.where(d > 0, s, torch.full_like(s, fmt.scale.exp_min))
    raise ValueError(f"scale rule {rule} is not an MX rule")


def _mx_quantize_blocks(xb, fmt, rounding, u, f32_input=True):
    """xb: float64 blocks (..., nb, k). Returns (int codes (int64), scale codes (int64), value float64)."""
    finite = torch.isfinite(xb)
    any_bad = not bool(finite.all())
    bad = ~finite.all(dim=-1)
    xb0 = xb.masked_fill(~finite, 0.0) if any_bad else xb
    absx = xb0.abs()
    amax = absx.amax(dim=-1)
    zero = amax == 0
    sc = fmt.scale
    s = torch.clamp(_rule_exponent(amax.masked_fill(zero, 1.0), fmt, f32_input), sc.exp_min, sc.exp_max)
    s = s.masked_fill(zero, sc.exp_min)
    s_e = s.unsqueeze(-1)
    neg = torch.signbit(xb0)
    if isinstance(fmt, MXIntFormat):
        q = fmt.quantum_log2
        a = absx * _pow2(-(s_e + q))  # exact
        n = _round_magnitude(a, rounding, u)
        n = torch.clamp(n, max=float(fmt.max_code))
        n_i = n.to(torch.int64)
        codes = torch.where(neg, -n_i, n_i)
        if any_bad:  # zero blocks have n = 0 already
            codes = codes.masked_fill(bad.unsqueeze(-1), 0)
        value = codes.to(torch.float64) * _pow2(s_e + q)  # code 0 -> +0.0
    else:
        v = absx * _pow2(-s_e)  # exact
        mb = fmt.mantissa_bits
        E = torch.clamp(_floor_log2(torch.where(v > 0, v, torch.ones_like(v))), min=fmt.emin)
        E = torch.where(v > 0, E, torch.full_like(E, fmt.emin))
        a = v * _pow2(mb - E)  # v / step, exact
        n = _round_magnitude(a, rounding, u)
        r = n * _pow2(E - mb)
        r = torch.clamp(r, max=fmt.max_normal)
        # integer view: multiples of the subnormal step 2^(emin - mb)
        I = (r * 2.0 ** (mb - fmt.emin)).to(torch.int64)
        sub = I < (1 << mb)
        e_field = _floor_log2(torch.where(sub, torch.ones_like(r), I.to(torch.float64))) - mb
        e_field = torch.clamp(e_field, min=0)
        mant = torch.where(sub, I, (I >> e_field) - (1 << mb))
        bexp = torch.where(sub, torch.zeros_like(I), e_field + 1)
        nbits = fmt.exponent_bits + mb
        codes = (neg.to(torch.int64) << nbits) | (bexp << mb) | mant
        zb = zero.unsqueeze(-1)
        codes = codes.masked_fill(zb | bad.unsqueeze(-1), 0)
        mag = r * _pow2(s_e)
        value = torch.where(neg, -mag, mag).masked_fill(zb, 0.0)  # zero block: +0.0
    scale_codes = torch.where(bad, torch.full_like(s, sc.nan_code), s + sc.bias)
    if any_bad:
        value = value.masked_fill(bad.unsqueeze(-1), float("nan"))
    return codes, scale_codes, value


# --------------------------------------------------------------------------------------
# BlockFP (float32 arithmetic, as the authors' torch code)


def _bfp_quantize_blocks(xb, fmt, rounding, u):
    """xb: float32 blocks (..., nb, k) (padding zeros). Returns (codes, scale codes, value f32, sgn)."""
    finite = torch.isfinite(xb)
    bad = ~finite.all(dim=-1)
    xb0 = torch.where(finite, xb, torch.zeros_like(xb))
    amax = xb0.abs().amax(dim=-1)  # float32
    good = ~bad
    gmax = amax[good]
    if gmax.numel():
        nz = gmax[gmax > 0]
        if nz.numel() == 0:
            amax = torch.where(good, torch.ones_like(amax), amax)
        else:
            amax = torch.where(good & (amax == 0), nz.min(), amax)
    amax = torch.where(good, amax, torch.ones_like(amax))
    e = torch.ceil(torch.log2(amax.contiguous()))  # float32 log2 as torch computes it
    sc = fmt.scale
    e = torch.clamp(e, sc.exp_min, sc.exp_max).to(torch.int64)
    e_e = e.unsqueeze(-1)
    nudge = torch.tensor(_F32_1E9, dtype=torch.float32, device=xb.device)
    v = xb0.abs() + nudge  # float32 add
    w = fmt.width
    a = v.to(torch.float64) * _pow2(w - 1 - e_e)  # exact product
    m = _round_magnitude(a, rounding, u)
    m = torch.clamp(m, 0, float(fmt.max_code)).to(torch.int64)
    sgn = torch.sign(xb0 + nudge).to(torch.int64)  # float32 add, then sign
    codes = sgn * m
    mag = m.to(torch.float64) * _pow2(e_e - (w - 1))  # exact in float32
    value = (sgn.to(torch.float64) * mag).to(torch.float32)
    # sign of zero as the float product fl32(sgn*2^e) * (m/2^(w-1)) gives it
    negzero = (sgn < 0) & (m == 0)
    value = torch.where(negzero, torch.full_like(value, -0.0), value)
    codes = torch.where(bad.unsqueeze(-1), torch.zeros_like(codes), codes)
    value = torch.where(bad.unsqueeze(-1), torch.full_like(value, float("nan")), value)
    scale_codes = torch.where(bad, torch.full_like(e, sc.nan_code), e + sc.bias)
    return codes, scale_codes, value


# --------------------------------------------------------------------------------------
# public functions


def _run(x, fmt, axis, rounding, seed):
    fmt = get_format(fmt)
    rounding = check_rounding(rounding)
    t, was_numpy = _as_tensor(x)
    ax = _norm_axis(axis, t.dim())
    k = fmt.block_size
    if isinstance(fmt, BlockFP):
        work = t.to(torch.float32)
    else:
        work = t.to(torch.float64)
    xb, L = _to_blocks(work, ax, k)
    u = None
    if rounding is Rounding.STOCHASTIC:
        idx = _flat_index_blocks(tuple(t.shape), ax, k, t.device)
        u = uniform_u(idx, seed)
    if isinstance(fmt, BlockFP):
        codes, sc, val = _bfp_quantize_blocks(xb, fmt, rounding, u)
    else:
        codes, sc, val = _mx_quantize_blocks(xb, fmt, rounding, u, f32_input=t.dtype != torch.float64)
    return fmt, t, was_numpy, ax, L, codes, sc, val


def fake_quantize(x, fmt, axis=-1, rounding=Rounding.NEAREST_EVEN, seed=0):
    """Quantize and dequantize; same type, dtype, shape and device as ``x``."""
    fmt, t, was_numpy, ax, L, codes, sc, val = _run(x, fmt, axis, rounding, seed)
    out = _from_blocks(val, L, ax)
    if isinstance(fmt, BlockFP) and fmt.zero_passthrough:
        t32 = t.to(torch.float32)  # float64 input: rounded to float32 first (RNE)
        tiny = t32.abs() <= _F32_1E8
        res = torch.where(tiny, t32, out)
    else:
        res = out
    if t.dtype in (torch.float16, torch.bfloat16):
        res = res.to(torch.float32).to(t.dtype)  # values exact in float32; one rounding
    else:
        res = res.to(t.dtype)
    res = res.contiguous()
    return res.numpy() if was_numpy else res


def quantize(x, fmt, axis=-1, rounding=Rounding.NEAREST_EVEN, seed=0):
    """Return (codes, scales): codes with x's shape (int8, or uint8 bit patterns for MXFP),
    scales uint8 with ``axis`` replaced by the number of blocks."""
    fmt, t, was_numpy, ax, L, codes, sc, val = _run(x, fmt, axis, rounding, seed)
    c = _from_blocks(codes, L, ax)
    c = c.to(torch.uint8) if isinstance(fmt, MXFPFormat) else c.to(torch.int8)
    s = sc.movedim(-1, ax).to(torch.uint8)
    return c.contiguous(), s.contiguous()


def _int_view(codes, fmt):
    """Signed integer element value in units of 2^quantum_log2 (int64)."""
    c = codes.to(torch.int64)
    if isinstance(fmt, MXFPFormat):
        c = c & 0xFF
        mb = fmt.mantissa_bits
        nb = fmt.exponent_bits + mb
        sign = (c >> nb) & 1
        bexp = (c >> mb) & ((1 << fmt.exponent_bits) - 1)
        mant = c & ((1 << mb) - 1)
        mag = torch.where(bexp == 0, mant, (mant + (1 << mb)) << torch.clamp(bexp - 1, min=0))
        return torch.where(sign == 1, -mag, mag), sign == 1
    return c, torch.zeros_like(c, dtype=torch.bool)


def _scale_exp(scales, fmt):
    s = scales.to(torch.int64)
    return s - fmt.scale.bias, s == fmt.scale.nan_code


def dequantize(codes, scales, fmt, axis=-1, dtype=torch.float32):
    """Values of (codes, scales); NaN where the scale is NaN. Code 0 gives +0.0 except MXFP's
    sign-bit-only code, which gives -0.0."""
    fmt = get_format(fmt)
    ax = _norm_axis(axis, codes.dim())
    iv, negz = _int_view(codes, fmt)
    se, nan = _scale_exp(scales, fmt)
    ib, L = _to_blocks(iv, ax, fmt.block_size)
    nzb, _ = _to_blocks(negz.to(torch.int64), ax, fmt.block_size)
    se = se.movedim(ax, -1).unsqueeze(-1)
    nan = nan.movedim(ax, -1).unsqueeze(-1)
    val = ib.to(torch.float64) * _pow2(se + fmt.quantum_log2)
    val = torch.where((nzb == 1) & (ib == 0), torch.full_like(val, -0.0), val)
    if isinstance(fmt, MXFPFormat):  # the element's own Inf/NaN codes (formats: max_code, inf_code)
        cb, _ = _to_blocks((codes.to(torch.int64) & 0xFF), ax, fmt.block_size)
        sign = 1 << (fmt.exponent_bits + fmt.mantissa_bits)
        mag = cb & (sign - 1)
        special = torch.full_like(val, float("nan"))
        if fmt.inf_code is not None:
            inf = torch.where((cb & sign) != 0, float("-inf"), float("inf")).to(val.dtype)
            special = torch.where(mag == fmt.inf_code, inf, special)
        val = torch.where(mag > fmt.max_code, special, val)
    val = torch.where(nan, torch.full_like(val, float("nan")), val)
    out = _from_blocks(val, L, ax)
    if dtype in (torch.float16, torch.bfloat16):
        out = out.to(torch.float32)
    return out.to(dtype).contiguous()


# --------------------------------------------------------------------------------------
# matmul (referee: exact integer arithmetic, small sizes)


def _exact_to_float(n: int, e: int, mbits: int, emin: int, emax: int) -> float:
    """Round n * 2^e (exact, n a Python int) to a binary float with ``mbits`` fraction bits,
    normal exponents [emin, emax], subnormals, round to nearest even, overflow to inf.
    Returns a Python float holding the (exactly representable) result. Zero gives +0.0
    (callers handle the sign of zero)."""
    if n == 0:
        return 0.0
    neg = n < 0
    a = -n if neg else n
    # value = a * 2^e; exponent of leading bit
    lead = a.bit_length() - 1 + e
    q = max(lead, emin) - mbits  # quantum of the result's binade
    # round a * 2^(e - q) to integer, RNE
    sh = e - q
    if sh >= 0:
        r = a << sh
    else:
        d = -sh
        r = a >> d
        rem = a - (r << d)
        half = 1 << (d - 1)
        if rem > half or (rem == half and (r & 1)):
            r += 1
    # r * 2^q ; carry may have bumped to next binade: fine for range check below
    if r == 0:
        return -0.0 if neg else 0.0
    if r.bit_length() - 1 + q > emax:
        return float("-inf") if neg else float("inf")
    val = float(r) * 2.0**q if -1074 <= q <= 971 else float(Fraction(r) * Fraction(2) ** q)
    return -val if neg else val


def round_to_f32(n: int, e: int) -> float:
    """Correctly rounded (RNE) float32 value of n*2^e, as a Python float (sign kept on underflow)."""
    return _exact_to_float(n, e, 23, -126, 127)


def round_to_f64(n: int, e: int) -> float:
    return _exact_to_float(n, e, 52, -1022, 1023)


def matmul(a_codes, a_scales, fmt_a, b_codes, b_scales, fmt_b, accumulator=Exact(), lanes=None):
    """Referee matmul of a (M x K, blocked along axis 1) and b (K x N, blocked along axis 0).

    ``accumulator``: an mxsim accumulator (``Exact()``, ``FP32(lanes)``, ``FixedPoint``; their
    string spellings are parsed at this boundary); ``lanes`` (legacy) applies to fp32 only.
    Returns float64 (M x N) for exact and fixed point, float32 for fp32.
    """
    fmt_a, fmt_b = get_format(fmt_a), get_format(fmt_b)
    acc = datapath_accumulator(accumulator, lanes)
    lanes = acc.lanes if isinstance(acc, FP32) else None
    if fmt_a.block_size != fmt_b.block_size:
        raise ValueError(f"matmul: block sizes differ (a: {fmt_a.block_size}, b: {fmt_b.block_size})")
    k = fmt_a.block_size
    M, K = a_codes.shape
    K2, N = b_codes.shape
    if K != K2:
        raise ValueError(f"matmul: inner dimensions differ (a: {K}, b: {K2})")
    if lanes is None:
        lanes = k
    if lanes < 1 or k % lanes:
        raise ValueError(f"matmul: lanes must divide the block size {k}, got {lanes}")
    nb = -(-K // k)
    ia, _ = _int_view(a_codes.cpu(), fmt_a)
    ib, _ = _int_view(b_codes.cpu(), fmt_b)
    sa, na = _scale_exp(a_scales.cpu(), fmt_a)  # (M, nb)
    sb, nbn = _scale_exp(b_scales.cpu(), fmt_b)  # (nb, N)
    nan = (na.any(dim=1)[:, None] | nbn.any(dim=0)[None, :]) if nb else torch.zeros(M, N, dtype=torch.bool)
    qsum = fmt_a.quantum_log2 + fmt_b.quantum_log2
    # per step partial sums S[m, n, step] (exact int64) with their block index
    steps = []  # (start, stop, block)
    for j in range(nb):
        lo, hi = j * k, min((j + 1) * k, K)
        st = lo
        while st < hi:
            steps.append((st, min(st + lanes, hi), j))
            st += lanes
    if not isinstance(acc, FP32):
        steps = [(j * k, min((j + 1) * k, K), j) for j in range(nb)]
    E = (sa[:, None, :] + sb.t()[None, :, :] + qsum) if nb else None  # (M, N, nb)
    widest = int(ia.abs().max()) * int(ib.abs().max()) * k if ia.numel() and ib.numel() else 0
    if widest < 2**62:
        S = torch.stack([ia[:, lo:hi] @ ib[lo:hi, :] for lo, hi, _ in steps], dim=-1) if steps else None
        S_l = S.tolist() if S is not None else None
    else:  # MXFP8_E5M2 products (up to 2^63.6) overflow int64: Python integers
        ia_o, ib_o = np.array(ia.tolist(), dtype=object), np.array(ib.tolist(), dtype=object)
        per_step = [(ia_o[:, lo:hi] @ ib_o[lo:hi, :]).tolist() for lo, hi, _ in steps]
        S_l = [[[ps[m][n] for ps in per_step] for n in range(N)] for m in range(M)]
    E_l = E.tolist() if E is not None else None
    nan_l = nan.tolist()
    blk = [j for _, _, j in steps]
    out = np.zeros((M, N), dtype=np.float32 if isinstance(acc, FP32) else np.float64)
    for m in range(M):
        for n in range(N):
            if nan_l[m][n]:
                out[m, n] = np.nan
                continue
            Ps = S_l[m][n] if steps else []
            Es = E_l[m][n] if nb else []
            if isinstance(acc, Exact):
                if not Ps:
                    out[m, n] = 0.0
                    continue
                emin = min(Es)
                tot = sum(p << (e - emin) for p, e in zip(Ps, Es))
                out[m, n] = round_to_f64(tot, emin)
            elif isinstance(acc, FP32):
                out[m, n] = _fp32_accumulate(Ps, [Es[j] for j in blk])
            else:
                W, fb, ov = acc.total_bits, acc.frac_bits, acc.overflow
                lo_, hi_ = -(1 << (W - 1)), (1 << (W - 1)) - 1
                A = 0
                for p, e in zip(Ps, Es):
                    sh = e + fb
                    al = p << sh if sh >= 0 else p >> -sh  # floor
                    if ov == "saturate":
                        al = min(max(al, lo_), hi_)
                        A = min(max(A + al, lo_), hi_)
                    else:
                        A = ((A + al - lo_) % (1 << W)) + lo_
                out[m, n] = round_to_f64(A, -fb)
    return torch.from_numpy(out)


def _f32_to_exact(v: float):
    """(n, e) with v == n * 2^e exactly, for a finite float."""
    fr = Fraction(v)
    num, den = fr.numerator, fr.denominator
    e = -(den.bit_length() - 1)  # den is a power of two
    return num, e


def _fp32_accumulate(Ps, Es):
    """acc <- fl32(acc + S*2^E) per step, fused (one RNE rounding), acc starts at +0.0.
    Sign of zero per IEEE 754 addition: an exact zero sum is +0.0 unless both operands are
    -0.0 (S = 0 counts as +0.0); a nonzero sum that underflows keeps its sign."""
    acc = 0.0
    for p, e in zip(Ps, Es):
        if acc != acc or acc in (float("inf"), float("-inf")):
            continue  # inf + finite = inf
        if acc == 0.0:
            an, ae = 0, 0
        else:
            an, ae = _f32_to_exact(acc)
        em = min(ae, e)
        tot = (an << (ae - em)) + (p << (e - em))
        if tot == 0:
            acc = 0.0  # (+-x) + (-+x) and (-0) + (+0) are +0.0 under RNE
            continue
        acc = round_to_f32(tot, em)
    return acc
