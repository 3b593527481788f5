"""Public entry points: fake_quantize, quantize (numba kernels behind a numpy/torch front).

Semantics: docs/mxsim_semantics.md. Kernels never see torch; torch inputs are converted to
numpy here (CUDA tensors go through the CPU and back, which is slow).
"""

from __future__ import annotations

import numpy as np

from .accumulators import FP32, Exact, FixedPoint, datapath_accumulator
from .formats import BlockFP, MXFPFormat, MXIntFormat, NVFP4Format, check_rounding, get_format
from .rounding import Rounding
from .datapath import matmul_cpu
from .kernels import quant as _q
from .kernels import serial_if_small
from .layout import from_blocked_2d, is_integer, matmul_operands, normalize_axis, to_blocked_2d
from .layout import from_numpy as _from_numpy
from .layout import is_torch as _is_torch
from .layout import to_numpy as _to_numpy
from .tensor import MXTensor, _interpreted
from .widths import check_lanes, datapath_widths  # noqa: F401  (datapath_widths: part of this API)


def _check_seed(seed) -> int:
    if not is_integer(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return int(seed) & 0xFFFFFFFF


@serial_if_small
def _run(x2, fmt, rounding, seed, inner, want_codes, want_deq):
    """Run the format's kernel on (R, L): returns (codes or None, scales, deq or None)."""
    R, L = x2.shape
    k = fmt.block_size
    nb = -(-L // k)
    mode = rounding.kernel_id
    sc = fmt.scale
    scale_args = (sc.exp_min, sc.exp_max, sc.bias, sc.nan_code)
    # the scale rule; rceil divides in float32 for float32 (and narrower) input
    rule_args = (sc.rule.kernel_id, x2.dtype != np.float64)
    scales = np.empty((R, nb), np.uint8)
    out_dtype = x2.dtype
    # float32 input takes the bit-pattern kernels (every rule and rounding); their powers of two
    # are float64 bit patterns, so the scale exponents must stay well inside float64's range
    fast = (isinstance(fmt, (MXIntFormat, MXFPFormat)) and x2.dtype == np.float32
            and -900 <= sc.exp_min and sc.exp_max <= 900)
    if isinstance(fmt, BlockFP):
        with np.errstate(over="ignore"):  # |x| > float32 max becomes Inf: a NaN block (contract)
            x2 = x2.astype(np.float32, copy=False)
    elif not fast:
        # the generic kernels compile once, for float64 (exact for float32 input and output)
        x2 = x2.astype(np.float64, copy=False)
    deq = np.empty((R, L) if want_deq else (1, 1), x2.dtype)
    if isinstance(fmt, MXIntFormat):
        codes = np.empty((R, L), np.int8) if want_codes else np.empty((1, 1), np.int8)
        if fast:
            _q.mxint_f32_fast(x2, x2.view(np.int32), k, fmt.element_bits, *scale_args, rule_args[0], mode, seed,
                              inner, want_codes, want_deq, codes, scales, deq)
        else:
            _q.mxint_kernel(x2, k, fmt.element_bits, *scale_args, *rule_args, mode, seed, inner, want_codes,
                            want_deq, codes, scales, deq)
    elif isinstance(fmt, MXFPFormat):
        codes = np.empty((R, L), np.uint8) if want_codes else np.empty((1, 1), np.uint8)
        if fast:
            _q.mxfp_f32(x2, x2.view(np.int32), k, fmt.mantissa_bits, fmt.exponent_bias, fmt.max_code,
                        float(fmt.max_normal), fmt.emax_elem, *scale_args, rule_args[0], fmt.exponent_bits, mode,
                        seed, inner, want_codes, want_deq, codes, scales, deq)
        else:
            _q.mxfp_kernel(x2, k, fmt.exponent_bits, fmt.mantissa_bits, fmt.exponent_bias, float(fmt.max_normal),
                           fmt.emax_elem, *scale_args, *rule_args, mode, seed, inner, want_codes, want_deq, codes,
                           scales, deq)
    else:
        codes = np.empty((R, L), np.int8) if want_codes else np.empty((1, 1), np.int8)
        _q.bfp_kernel(x2, x2.view(np.int32), k, fmt.width, sc.exp_min, sc.exp_max, sc.nan_code, sc.bias,
                      bool(fmt.zero_passthrough), mode, seed, inner, want_codes, want_deq, codes, scales, deq)
    if want_deq and not isinstance(fmt, BlockFP):
        with np.errstate(over="ignore"):  # ceil/even/rceil can reach 2^128: Inf in float32 (contract)
            deq = deq.astype(out_dtype, copy=False)
    return (codes if want_codes else None), scales, (deq if want_deq else None)


def _triton_ok() -> bool:
    try:
        import triton  # noqa: F401  (installed with torch on CUDA machines; not a dependency)
    except ImportError:
        return False
    return True


def _device_route(x, fmt, axis, rounding, seed):
    """(fmt, axis, rounding, seed) checked, when ``x`` is a CUDA tensor (or a CPU tensor under
    TRITON_INTERPRET=1) that the Triton kernels take; else None (the numba path, for CUDA
    input through host memory: scale encodings other than E8M0 for MX, or no Triton installed)."""
    import os

    if not _is_torch(x) or (x.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1"):
        return None
    fmt = get_format(fmt)
    from . import gpu as _gpu_probe  # noqa: F401  (import errors surface here, not later)

    if not _gpu_probe.handles_quantize(fmt) or not _triton_ok() or x.numel() == 0:
        return None
    import torch

    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"x must be a float16/bfloat16/float32/float64 tensor, got {x.dtype}")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (blocks run along axis)")
    return fmt, normalize_axis(axis, x.dim()), check_rounding(rounding), _check_seed(seed)


def _prepare(x, fmt, axis, rounding, seed):
    fmt = get_format(fmt)
    rounding = check_rounding(rounding)
    seed = _check_seed(seed)
    a, src = _to_numpy(x)
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension (blocks run along axis)")
    axis = normalize_axis(axis, a.ndim)
    return fmt, a, src, axis, rounding, seed


def _nvfp4_or_check(fmt, per_tensor_scale):
    """The NVFP4 front module for an NVFP4 format, else None (and no per-tensor scale)."""
    fmt = get_format(fmt)
    if isinstance(fmt, NVFP4Format):
        from . import nvfp4

        return fmt, nvfp4
    if per_tensor_scale is not None:
        raise ValueError(f"per_tensor_scale applies to NVFP4 only (two-level scaling), not to {fmt.name}")
    return fmt, None


def fake_quantize(x, fmt, axis=-1, rounding=Rounding.NEAREST_EVEN, seed=0, per_tensor_scale=None):
    """Quantize and dequantize ``x`` to ``fmt`` along ``axis``; same kind/dtype/shape/device.
    ``per_tensor_scale``: NVFP4's calibrated per-tensor scale (two level)."""
    fmt, nv = _nvfp4_or_check(fmt, per_tensor_scale)
    if nv is not None:
        return nv.fake_quantize(x, fmt, axis=axis, rounding=rounding, per_tensor_scale=per_tensor_scale)
    dev = _device_route(x, fmt, axis, rounding, seed)
    if dev is not None:
        from . import gpu

        return gpu.fake_quantize(x, *dev)
    fmt, a, src, axis, rounding, seed = _prepare(x, fmt, axis, rounding, seed)
    if a.size == 0:
        return _from_numpy(a.copy(), src)
    x2, inner, moved = to_blocked_2d(a, axis)
    _, _, deq = _run(x2, fmt, rounding, seed, inner, False, True)
    return _from_numpy(from_blocked_2d(deq, moved, axis), src)


def quantize(x, fmt, axis=-1, rounding=Rounding.NEAREST_EVEN, seed=0, per_tensor_scale=None):
    """Quantize ``x`` to ``fmt`` along ``axis``: an MXTensor of element and scale codes (an
    NVFP4Tensor for NVFP4, which also takes ``per_tensor_scale``)."""
    fmt, nv = _nvfp4_or_check(fmt, per_tensor_scale)
    if nv is not None:
        return nv.quantize(x, fmt, axis=axis, rounding=rounding, per_tensor_scale=per_tensor_scale)
    dev = _device_route(x, fmt, axis, rounding, seed)
    if dev is not None:
        from . import gpu

        codes, scales = gpu.quantize(x, *dev)
        return MXTensor(codes, scales, dev[0], dev[1], tuple(x.shape), src_torch=True, src_dtype=x.dtype,
                        src_device=x.device)
    fmt, a, src, axis, rounding, seed = _prepare(x, fmt, axis, rounding, seed)
    x2, inner, moved = to_blocked_2d(a, axis)
    if a.size == 0:
        nb = -(-a.shape[axis] // fmt.block_size)
        codes2 = np.zeros(x2.shape, np.uint8 if isinstance(fmt, MXFPFormat) else np.int8)
        scales2 = np.zeros((x2.shape[0], nb), np.uint8)
    else:
        codes2, scales2, _ = _run(x2, fmt, rounding, seed, inner, True, False)
    codes = from_blocked_2d(codes2, moved, axis)
    sshape = moved[:-1] + (scales2.shape[1],)
    scales = from_blocked_2d(scales2, sshape, axis)
    return MXTensor(np.ascontiguousarray(codes), np.ascontiguousarray(scales), fmt, axis, tuple(a.shape),
                    src_torch=src.is_torch, src_dtype=src.dtype, src_device=src.device)


# ---------------------------------------------------------------------------------------
# matmul


def overflowed(out, wide):
    """Where a FixedPoint GEMM's ``out`` differs from ``wide``, the same GEMM on FixedPoint(64)
    (matmul's return_overflow): a NaN output (a NaN scale, in both) is not overflowed."""
    if _is_torch(out):
        return (out != wide) & ~out.isnan()
    return (out != wide) & ~np.isnan(out)


def matmul(a, b, accumulator=Exact(), lanes=None, *, return_overflow=False):
    """a (..., K) blocked along K (its last axis) times b (K, N) blocked along K (axis 0).

    accumulator: ``Exact()`` (float64, correctly rounded), ``FP32(lanes)`` (fused RNE per lane
    step, float32 output) or a ``FixedPoint``; the spellings of mxsim.accumulators
    ("exact", "fp32:4", "fixed:24:8") are accepted too. ``lanes`` (legacy) applies to fp32 only.
    See docs/mxsim_semantics.md.

    ``return_overflow`` (FixedPoint only): return ``(out, overflowed)``, ``overflowed`` a boolean
    array of out's shape (on out's device) that is True where the output differs from the same
    GEMM on ``FixedPoint(64, frac_bits)`` (saturating), i.e. where the accumulator's overflow
    (saturation or wrap) changed the result; NaN outputs (NaN scales) are never overflowed.
    On the host it is those two GEMMs; on CUDA one kernel tracks the 64-bit result beside the
    accumulator (docs/mxsim_semantics.md, "Overflow").
    """
    acc = datapath_accumulator(accumulator, lanes)
    if return_overflow and not isinstance(acc, FixedPoint):
        raise ValueError(f"return_overflow needs a FixedPoint accumulator, got {acc}; "
                         "allowed: fixed:TOTAL:FRAC[:wrap]")
    if isinstance(getattr(a, "fmt", None), NVFP4Format) or isinstance(getattr(b, "fmt", None), NVFP4Format):
        from . import nvfp4  # E4M3 block scales multiply: its own datapath (contract, matmul)

        out = nvfp4.matmul(a, b, accumulator, lanes)
        if return_overflow:
            return out, overflowed(out, nvfp4.matmul(a, b, FixedPoint(64, acc.frac_bits)))
        return out
    if not isinstance(a, MXTensor) or not isinstance(b, MXTensor):
        raise ValueError("a and b must be MXTensor (use mxsim.quantize)")
    K, k = matmul_operands(a, b)
    lanes = check_lanes(acc.lanes, k) if isinstance(acc, FP32) else k
    if (a.device is None) != (b.device is None) or (a.device is not None and a.device != b.device):
        raise ValueError(f"a and b must be on the same device, got {a.device or 'host'} and {b.device or 'host'}")
    if a.device is not None:
        if a.device.type == "cpu" and not _interpreted(a):
            a, b = a.cpu(), b.cpu()
        else:
            from . import gpu

            return gpu.matmul(a, b, acc, lanes, overflow=return_overflow)

    batch = a.shape[:-1]
    M, N = int(np.prod(batch, dtype=np.int64)), b.shape[1]
    a_codes = np.ascontiguousarray(a.codes).reshape(M, K)
    ea = a.scale_exponents().reshape(M, -1)
    eb = b.scale_exponents()
    qsum = a.fmt.quantum_log2 + b.fmt.quantum_log2
    nan = a.scale_is_nan().reshape(M, -1).any(axis=1)[:, None] | b.scale_is_nan().any(axis=0)[None, :]
    if M == 0 or N == 0 or K == 0:
        out = np.zeros((M, N), np.float32 if isinstance(acc, FP32) else np.float64)
    else:
        out = matmul_cpu(a_codes, np.ascontiguousarray(b.codes), a.fmt, b.fmt, ea, eb, qsum, k, acc, lanes)
    if nan.any():  # a NaN scale on either side makes the output NaN
        out[np.broadcast_to(nan, out.shape)] = np.nan
    out = out.reshape(*batch, N)
    if return_overflow:  # on the host: the same GEMM on the 64-bit accumulator
        return out, overflowed(out, matmul(a, b, FixedPoint(64, acc.frac_bits)))
    return out
