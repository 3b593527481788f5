"""The NVFP4 referee: pure torch, written apart from ``kernels/nvfp4.py`` (contract:
docs/mxsim_semantics.md, section NVFP4).

It follows torchao's recipe operation by operation in float32 torch arithmetic; the E4M3
block scale uses torch's own ``float8_e4m3fn`` cast, the E2M1 element is rounded by the
generic binade rule (frexp, ``torch.round``) rather than the kernels' decision table, and
matmul sums with Python integers. Works on CPU and CUDA tensors.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from .formats import get_format
from .reference import _exact_to_float, _f32_to_exact, _norm_axis, round_to_f32, round_to_f64

_E2M1_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # code -> magnitude (OCP MX v1.0 Table 4)


def _check(fmt, rounding, per_tensor_scale):
    from .nvfp4 import NVFP4Format, check_per_tensor_scale

    fmt = get_format(fmt)
    if not isinstance(fmt, NVFP4Format):
        raise ValueError(f"fmt must be NVFP4, got {fmt.name}")
    if str(getattr(rounding, "value", rounding)) != "nearest_even":
        raise ValueError(f"rounding: NVFP4 rounds to nearest even only, got {rounding!r}")
    p = None if per_tensor_scale is None else check_per_tensor_scale(per_tensor_scale)
    return fmt, p


def _blocks(t, axis, k):
    m = t.movedim(axis, -1)
    L = m.shape[-1]
    nb = -(-L // k)
    if nb * k - L:
        m = torch.nn.functional.pad(m, (0, nb * k - L))
    return m.reshape(*m.shape[:-1], nb, k), L


def _unblocks(b, L, axis):
    return b.reshape(*b.shape[:-2], b.shape[-2] * b.shape[-1])[..., :L].movedim(-1, axis)


def _e2m1_rne(a):
    """|value| of the E2M1 RNE cast of float64 a in [0, 6]: binade E = max(floor(log2 a), 0),
    step 2^(E-1), round(a / step) half to even."""
    _, ex = torch.frexp(torch.where(a > 0, a, torch.ones_like(a)))
    E = torch.clamp(ex.to(torch.int64) - 1, min=0)
    step = torch.pow(2.0, (E - 1).to(torch.float64))
    return torch.clamp(torch.round(a / step) * step, max=6.0)


def _run(x, fmt, axis, p):
    was_numpy = isinstance(x, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(x)) if was_numpy else x
    if t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"x must be float16, bfloat16, float32 or float64, got dtype {t.dtype}")
    ax = _norm_axis(axis, t.dim())
    x32 = t.to(torch.float32)  # float64 beyond the float32 range becomes Inf: a NaN block
    if p is None and fmt.two_level:
        fin = x32[torch.isfinite(x32)].abs()
        amax_t = fin.max() if fin.numel() else torch.zeros((), device=t.device)
        p = max(float((amax_t / 2688.0).to(torch.float32)), 2.0**-120)
    xb, L = _blocks(x32, ax, fmt.block_size)
    finite = torch.isfinite(xb)
    bad = ~finite.all(dim=-1)
    xb0 = torch.where(finite, xb, torch.zeros_like(xb))
    amax = xb0.abs().amax(dim=-1)
    bs = amax / 6.0  # float32 division
    if p is not None:
        pt = torch.tensor(p, dtype=torch.float32, device=t.device)
        bs = bs / pt
    sc8 = torch.clamp(bs, min=2.0**-6, max=448.0).to(torch.float8_e4m3fn)
    sc = sc8.to(torch.float32)
    rcp = (1.0 / pt) / sc if p is not None else 1.0 / sc  # float32 reciprocals, as torchao
    v = torch.clamp(xb0 * rcp.unsqueeze(-1), -6.0, 6.0)
    mag = _e2m1_rne(v.abs().to(torch.float64))
    grid = torch.tensor(_E2M1_GRID, dtype=torch.float64, device=t.device)
    code = torch.searchsorted(grid, mag.contiguous())
    neg = torch.signbit(v)
    codes = torch.where(neg, code | 8, code)
    codes = torch.where(bad.unsqueeze(-1), torch.zeros_like(codes), codes)
    scale_codes = torch.where(bad, torch.full_like(sc8.view(torch.uint8), 0x7F), sc8.view(torch.uint8))
    dscale = (pt * sc) if p is not None else sc  # torchao's get_hp_scales: p * sc in float32
    val = mag.to(torch.float32) * dscale.unsqueeze(-1)
    val = torch.where(neg, -val, val)
    val = torch.where(bad.unsqueeze(-1), torch.full_like(val, float("nan")), val)
    return t, was_numpy, ax, L, codes, scale_codes, val, p


def fake_quantize(x, fmt, axis=-1, rounding="nearest_even", per_tensor_scale=None):
    fmt, p = _check(fmt, rounding, per_tensor_scale)
    t, was_numpy, ax, L, _, _, val, _ = _run(x, fmt, axis, p)
    out = _unblocks(val, L, ax).to(t.dtype).contiguous()
    return out.numpy() if was_numpy else out


def quantize(x, fmt, axis=-1, rounding="nearest_even", per_tensor_scale=None):
    """(codes uint8, scales uint8, per-tensor scale or None)."""
    fmt, p = _check(fmt, rounding, per_tensor_scale)
    t, _, ax, L, codes, sc, _, p = _run(x, fmt, axis, p)
    c = _unblocks(codes, L, ax).to(torch.uint8).contiguous()
    return c, sc.movedim(-1, ax).contiguous(), p


def _e4m3_units(c):
    """E4M3 code -> signed integer value / 2^-9 (Python ints), None for NaN."""
    if c & 0x7F == 0x7F:
        return None
    e, m = (c >> 3) & 0xF, c & 7
    n = m if e == 0 else (8 + m) << (e - 1)
    return -n if c & 0x80 else n


def _e2m1_halves(c):
    n = int(_E2M1_GRID[c & 7] * 2)
    return -n if c & 8 else n


def matmul(a_codes, a_scales, b_codes, b_scales, block_size=16, accumulator="exact", lanes=None,
           pa=None, pb=None):
    """a (M, K) blocked along axis 1, b (K, N) along axis 0. Python integers throughout: per
    block T = (sum ia*ib) * ja * jb with weight 2^-20, then the accumulator, then pa * pb."""
    from .accumulators import FP32, Exact, datapath_accumulator

    acc = datapath_accumulator(accumulator, lanes)
    k = block_size
    A = [[_e2m1_halves(int(c)) for c in row] for row in a_codes.cpu().tolist()]
    B = [[_e2m1_halves(int(c)) for c in row] for row in b_codes.cpu().tolist()]
    SA = [[_e4m3_units(int(c)) for c in row] for row in a_scales.cpu().tolist()]
    SB = [[_e4m3_units(int(c)) for c in row] for row in b_scales.cpu().tolist()]
    M, K, N = len(A), len(B), len(B[0]) if B else 0
    nb = -(-K // k)
    step = (k if acc.lanes is None else acc.lanes) if isinstance(acc, FP32) else k
    c = Fraction(1 if pa is None else pa) * Fraction(1 if pb is None else pb)
    out = np.zeros((M, N), np.float32 if isinstance(acc, FP32) else np.float64)
    for m in range(M):
        for n in range(N):
            if any(SA[m][j] is None for j in range(nb)) or any(SB[j][n] is None for j in range(nb)):
                out[m, n] = np.nan
                continue
            terms = []  # (integer, in units of 2^-20), in order along K
            for c0 in range(0, K, step):
                j = c0 // k
                s = sum(A[m][i] * B[i][n] for i in range(c0, min(c0 + step, K)))
                terms.append(s * SA[m][j] * SB[j][n])
            if isinstance(acc, Exact):
                tot = Fraction(sum(terms), 2**20) * c
                out[m, n] = _exact_to_float_frac(tot)
            elif isinstance(acc, FP32):
                x = 0.0
                for tm in terms:
                    if x != x or abs(x) == float("inf"):
                        break
                    xn, xe = _f32_to_exact(x) if x != 0.0 else (0, 0)
                    e = min(xe, -20)
                    s = (xn << (xe - e)) + (tm << (-20 - e))
                    x = 0.0 if s == 0 else round_to_f32(s, e)
                alpha = np.float32(np.float32(1.0 if pa is None else pa) * np.float32(1.0 if pb is None else pb))
                with np.errstate(over="ignore"):
                    out[m, n] = np.float32(x) * alpha  # float32 product: one rounding
            else:
                W, fb = acc.total_bits, acc.frac_bits
                lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
                tot = 0
                for tm in terms:
                    sh = fb - 20
                    al = tm << sh if sh >= 0 else tm >> -sh  # floor
                    if acc.saturate:
                        tot = min(max(tot + min(max(al, lo), hi), lo), hi)
                    else:
                        tot = ((tot + al - lo) % (1 << W)) + lo
                out[m, n] = _exact_to_float_frac(Fraction(tot, 2**fb) * c)
    return torch.from_numpy(out)


def _exact_to_float_frac(q: Fraction) -> float:
    """float64 nearest-even of a dyadic rational."""
    if q == 0:
        return 0.0
    den = q.denominator
    assert den & (den - 1) == 0
    return round_to_f64(q.numerator, -(den.bit_length() - 1))


__all__ = ["fake_quantize", "quantize", "matmul", "_exact_to_float"]
