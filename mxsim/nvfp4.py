"""NVFP4: FP4 E2M1 elements in blocks of 16 with an FP8 E4M3 block scale and an optional
per-tensor FP32 scale (two-level scaling), as NVIDIA Blackwell and torchao's
``nvfp4_quantize`` define it. Contract: docs/mxsim_semantics.md, section NVFP4.

The block scales are not powers of two, so NVFP4 has its own quantized tensor
(``NVFP4Tensor``, an MXTensor with the per-tensor scale) and its own matmul datapath
(integer products times integer scale products); numba kernels in ``kernels/nvfp4.py``,
the independent torch referee in ``reference_nvfp4.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .accumulators import FP32, Exact, FixedPoint, datapath_accumulator
from .formats import NVFP4Format, get_format
from .kernels import nvfp4 as _k
from .kernels import pack as _pk
from .kernels import serial_if_small
from .kernels.dequant import KIND_MXFP
from .layout import (Source, from_blocked_2d, from_numpy, is_torch, matmul_operands, normalize_axis, stored_layout,
                     to_blocked_2d, to_numpy)
from .tensor import MXTensor

PTS_MIN = 2.0**-120  # smallest per-tensor scale: keeps fl32(1/p) / 2^-6 finite
F32_MAX = float(np.finfo(np.float32).max)


def check_per_tensor_scale(p, what="per_tensor_scale") -> float:
    """A per-tensor scale as the float32 value the recipe uses; ValueError names ``what``."""
    if is_torch(p) or isinstance(p, np.ndarray):
        if np.asarray(p.cpu() if is_torch(p) else p).size != 1:
            raise ValueError(f"{what} must be one number (a per-tensor scale), got shape {tuple(p.shape)}")
        p = float(p.reshape(-1)[0])
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a finite float32 in [2^-120, {F32_MAX:.4g}], got {p!r}")
    with np.errstate(over="ignore"):
        v = float(np.float32(p))
    if not (math.isfinite(v) and PTS_MIN <= v <= F32_MAX):
        raise ValueError(f"{what} must be a finite float32 in [2^-120, {F32_MAX:.4g}] (not 0, NaN or Inf), got {p!r}")
    return v


def tensor_scale_from_amax(amax: float) -> float:
    """torchao's per_tensor_amax_to_scale: fl32(amax / (448 * 6)), raised to 2^-120."""
    return max(float(np.float32(np.float32(amax) / np.float32(2688.0))), PTS_MIN)


@dataclass(eq=False)
class NVFP4Tensor(MXTensor):
    """codes: uint8 E2M1 patterns (low 4 bits); scales: uint8 E4M3 patterns;
    ``tensor_scale``: the per-tensor float32 scale of two-level scaling, or None."""

    tensor_scale: float | None = None

    @property
    def nbits(self) -> int:
        return self.numel * 4 + self.n_blocks * 8 + (32 if self.tensor_scale is not None else 0)

    def int_values(self) -> np.ndarray:
        """Elements as integers in units of 0.5 (2 * value, |.| <= 12), int64."""
        c = np.ascontiguousarray(self.codes)
        out = np.empty(c.shape, np.int64)
        if c.size:
            _k.int_values_kernel(c.reshape(-1), out.reshape(-1))
        return out

    def scale_units(self):
        """(E4M3 block scales as integers in units of 2^-9 (int64), NaN mask)."""
        s = np.ascontiguousarray(self.scales)
        out = np.empty(s.shape, np.int64)
        nan = np.empty(s.shape, np.bool_)
        if s.size:
            _k.scale_units_kernel(s.reshape(-1), out.reshape(-1), nan.reshape(-1))
        return out, nan

    def scale_exponents(self):
        raise ValueError("NVFP4 block scales are E4M3 values, not powers of two: use scale_units()")

    def scale_is_nan(self) -> np.ndarray:
        return (self.scales & 0x7F) == _k.E4M3_NAN

    def dequantize(self, dtype=None):
        c2, _, moved = to_blocked_2d(self.codes, self.axis)
        s2, _, _ = to_blocked_2d(self.scales, self.axis)
        out = np.empty(c2.shape, np.float32)
        two = self.tensor_scale is not None
        if c2.size:
            _k.dequant_kernel(c2, s2, self.fmt.block_size, self.tensor_scale if two else 1.0, two, out)
        vals = from_blocked_2d(out, moved, self.axis)
        src = Source(self.src_torch, self.src_dtype if dtype is None else dtype, self.src_device)
        if src.is_torch and src.device is None:
            import torch

            src.device = torch.device("cpu")
        if not src.is_torch and dtype is not None:
            src.dtype = np.dtype(dtype)
        return from_numpy(vals, src)

    def to_bytes(self) -> bytes:
        """[p as float32 little-endian, two level only] + scale bytes + the 4-bit stream."""
        c2, _, _ = to_blocked_2d(self.codes, self.axis)
        stream = np.zeros((c2.size * 4 + 7) // 8, np.uint8)
        if c2.size:
            _pk.pack_bits(c2.reshape(-1), 4, KIND_MXFP, stream)
        head = np.float32(self.tensor_scale).astype("<f4").tobytes() if self.tensor_scale is not None else b""
        return head + np.ascontiguousarray(self.scales).tobytes() + stream.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, fmt, shape, axis=-1) -> "NVFP4Tensor":
        fmt = get_format(fmt)
        if not isinstance(fmt, NVFP4Format):
            raise ValueError(f"fmt must be an NVFP4 format here, got {fmt.name}")
        shape, axis, sshape, n_scales, numel = stored_layout(shape, axis, fmt.block_size)
        head = 4 if fmt.two_level else 0
        expected = head + n_scales + (numel * 4 + 7) // 8
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data must be bytes, got {type(data).__name__}")
        if len(data) != expected:
            raise ValueError(f"data has {len(data)} bytes; {fmt.name} with shape {shape}, axis {axis} needs {expected}")
        buf = np.frombuffer(bytes(data), np.uint8)
        p = check_per_tensor_scale(float(buf[:4].view("<f4")[0]), "the stored per-tensor scale") if head else None
        scales = buf[head:head + n_scales].reshape(sshape).copy()
        raw = np.empty(numel, np.uint8)
        if numel:
            _pk.unpack_bits(buf[head + n_scales:], 4, KIND_MXFP, raw)
        moved = shape[:axis] + shape[axis + 1:] + (shape[axis],)
        codes = np.ascontiguousarray(from_blocked_2d(raw.reshape(moved), moved, axis))
        return cls(codes, scales, fmt, axis, shape, tensor_scale=p)


def _check_rounding(rounding):
    if str(getattr(rounding, "value", rounding)) != "nearest_even":
        raise ValueError(f"rounding: NVFP4 rounds to nearest even only (torchao's recipe), got {rounding!r}")


def _prepare(x, fmt, axis, rounding, per_tensor_scale):
    _check_rounding(rounding)
    p = None if per_tensor_scale is None else check_per_tensor_scale(per_tensor_scale)
    a, src = to_numpy(x)
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension (blocks run along axis)")
    axis = normalize_axis(axis, a.ndim)
    with np.errstate(over="ignore"):  # beyond float32: Inf, a NaN block (contract)
        a32 = a.astype(np.float32, copy=False)
    if p is None and fmt.two_level:  # the max over the finite elements, one read of x
        m = _k.finite_amax_bits(np.ascontiguousarray(a32).reshape(-1).view(np.int32)) if a32.size else 0
        p = tensor_scale_from_amax(float(np.array([m], np.int32).view(np.float32)[0]))
    return a32, src, axis, p


@serial_if_small
def _run(a32, fmt, axis, p, want_codes, want_deq):
    x2, _, moved = to_blocked_2d(a32, axis)
    R, L = x2.shape
    nb = -(-L // fmt.block_size)
    scales = np.zeros((R, nb), np.uint8)
    codes = np.zeros((R, L) if want_codes else (1, 1), np.uint8)
    deq = np.empty((R, L) if want_deq else (1, 1), np.float32)
    if x2.size:
        _k.quantize_kernel(x2, x2.view(np.int32), fmt.block_size, 1.0 if p is None else p, p is not None, want_codes, want_deq,
                           codes, scales, deq)
    return x2, moved, codes, scales, deq


def fake_quantize(x, fmt, axis=-1, rounding="nearest_even", per_tensor_scale=None):
    if is_torch(x) and x.device.type != "cpu":
        from . import reference_nvfp4

        return reference_nvfp4.fake_quantize(x, fmt, axis=axis, rounding=rounding, per_tensor_scale=per_tensor_scale)
    a32, src, axis, p = _prepare(x, fmt, axis, rounding, per_tensor_scale)
    _, moved, _, _, deq = _run(a32, fmt, axis, p, False, True)
    return from_numpy(from_blocked_2d(deq.reshape(moved) if deq.size else deq.reshape(moved), moved, axis), src)


def quantize(x, fmt, axis=-1, rounding="nearest_even", per_tensor_scale=None) -> NVFP4Tensor:
    a32, src, axis, p = _prepare(x, fmt, axis, rounding, per_tensor_scale)
    _, moved, codes2, scales2, _ = _run(a32, fmt, axis, p, True, False)
    codes = from_blocked_2d(codes2, moved, axis)
    scales = from_blocked_2d(scales2, moved[:-1] + (scales2.shape[1],), axis)
    if p is not None and not fmt.two_level:
        fmt = fmt.with_two_level(True)  # a given per-tensor scale makes it two level
    return NVFP4Tensor(np.ascontiguousarray(codes), np.ascontiguousarray(scales), fmt, axis, tuple(a32.shape),
                       src_torch=src.is_torch, src_dtype=src.dtype, src_device=src.device, tensor_scale=p)


# ---------------------------------------------------------------------------------------
# matmul


def _round_scaled(total: np.ndarray, shift: int, pa, pb) -> np.ndarray:
    """float64 nearest-even of total * 2^shift * pa * pb, computed exactly (one rounding)."""
    c = Fraction(1 if pa is None else pa) * Fraction(1 if pb is None else pb)
    if c == 1:
        return np.ldexp(total.astype(np.float64), shift)  # int64 -> float64 rounds once (RNE)
    n, d = c.numerator, c.denominator  # d is a power of two (float32 values)
    e = shift - (d.bit_length() - 1)
    flat = [math.ldexp(float(int(t) * n), e) for t in total.reshape(-1)]  # int -> float is RNE
    return np.array(flat, np.float64).reshape(total.shape)


def matmul(a: NVFP4Tensor, b: NVFP4Tensor, accumulator=Exact(), lanes=None) -> np.ndarray:
    """a (..., K) blocked along K times b (K, N) blocked along axis 0, both NVFP4 (contract:
    docs/mxsim_semantics.md, matmul, NVFP4)."""
    acc = datapath_accumulator(accumulator, lanes)
    for t, name in ((a, "a"), (b, "b")):
        if not isinstance(t, NVFP4Tensor):
            raise ValueError(f"{name}: NVFP4 matmul needs both operands in NVFP4, got {t.fmt.name}")
    K, k = matmul_operands(a, b)
    if isinstance(acc, FP32):
        lanes = k if acc.lanes is None else acc.lanes
        if lanes < 1 or k % lanes:
            raise ValueError(f"lanes must be a positive integer dividing the block size {k}, got {lanes!r}")
    else:
        lanes = k
    batch = a.shape[:-1]
    M, N = int(np.prod(batch, dtype=np.int64)), b.shape[1]
    A = a.int_values().reshape(M, K).astype(np.float32)  # GEMMs of these are exact: |sums| < 2^24
    B = b.int_values().astype(np.float32)
    ja, na = a.scale_units()
    jb, nb_ = b.scale_units()
    ja, na = ja.reshape(M, -1), na.reshape(M, -1)
    nan = na.any(axis=1)[:, None] | nb_.any(axis=0)[None, :]
    pa, pb = a.tensor_scale, b.tensor_scale
    if isinstance(acc, Exact):
        bound = K * 144 * int(np.abs(ja).max(initial=0)) * int(np.abs(jb).max(initial=0))
        if bound >= 2**63:
            raise ValueError(f"K = {K} is too long for the exact NVFP4 accumulator (int64 sum); K < 2^20 fits")
        total = np.zeros((M, N), np.int64)
        for c0 in range(0, K, k):
            j = c0 // k
            _k.exact_step(total, (A[:, c0:c0 + k] @ B[c0:c0 + k]).astype(np.float64), ja[:, j].copy(), jb[j].copy())
        out = _round_scaled(total, _k.WEIGHT_LOG2, pa, pb)
    elif isinstance(acc, FP32):
        out = np.zeros((M, N), np.float32)
        for c0 in range(0, K, lanes):
            j = c0 // k
            P = (A[:, c0:c0 + lanes] @ B[c0:c0 + lanes]).astype(np.float64)
            _k.fp32_step(out, P, ja[:, j].copy(), jb[j].copy())
        if pa is not None or pb is not None:
            alpha = np.float32(np.float32(1.0 if pa is None else pa) * np.float32(1.0 if pb is None else pb))
            with np.errstate(over="ignore"):
                out = (out.astype(np.float64) * float(alpha)).astype(np.float32)  # exact product, one rounding
    else:
        fp: FixedPoint = acc
        total = np.zeros((M, N), np.int64)
        for c0 in range(0, K, k):
            j = c0 // k
            P = (A[:, c0:c0 + k] @ B[c0:c0 + k]).astype(np.float64)
            _k.fixed_step(total, P, ja[:, j].copy(), jb[j].copy(), fp.frac_bits + _k.WEIGHT_LOG2, fp.total_bits,
                          fp.saturate)
        out = _round_scaled(total, -fp.frac_bits, pa, pb)
    out = np.where(nan, np.nan, out).astype(out.dtype)
    return out.reshape(*batch, N)
