"""Public entry points: fake_quantize, quantize (numba kernels behind a numpy/torch front).

Semantics: docs/mxsim_semantics.md. Kernels never see torch; torch inputs are converted to
numpy here (CUDA tensors go through the CPU and back, which is slow).
"""

from __future__ import annotations

import numpy as np

from .formats import BlockFP, MXFPFormat, MXIntFormat, check_rounding, get_format
from .kernels import quant as _q

_FLOAT_NP = (np.float16, np.float32, np.float64)


class _Src:
    """What the input was, so outputs can be returned as the same kind."""

    __slots__ = ("is_torch", "dtype", "device")

    def __init__(self, is_torch, dtype, device=None):
        self.is_torch, self.dtype, self.device = is_torch, dtype, device


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _to_numpy(x, name="x"):
    """(float32/float64 numpy array, _Src). Narrow floats are widened to float32 (exact)."""
    if _is_torch(x):
        import torch

        if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise ValueError(f"{name} must be a float16/bfloat16/float32/float64 tensor, got {x.dtype}")
        src = _Src(True, x.dtype, x.device)
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        return t.numpy(), src
    if isinstance(x, np.ndarray) or np.isscalar(x):
        a = np.asarray(x)
        if a.dtype.type not in _FLOAT_NP:
            raise ValueError(f"{name} must be a float16/float32/float64 array, got dtype {a.dtype}")
        src = _Src(False, a.dtype)
        if a.dtype == np.float16:
            a = a.astype(np.float32)
        return a, src
    raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


def _from_numpy(a: np.ndarray, src: _Src):
    """Cast a float32/float64 result to the input's kind, dtype (RNE) and device."""
    if src.is_torch:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(a)).to(src.dtype)
        return t.to(src.device) if src.device.type != "cpu" else t
    return a.astype(src.dtype, copy=False)


def normalize_axis(axis, ndim) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-d input (allowed: {-ndim}..{ndim - 1})")
    return int(axis) % ndim


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return int(seed) & 0xFFFFFFFF


def to_blocked_2d(a: np.ndarray, axis: int):
    """Move ``axis`` last and flatten the rest: (contiguous (R, L) array, inner, moved shape)."""
    moved = np.moveaxis(a, axis, -1)
    L = a.shape[axis]
    x2 = np.ascontiguousarray(moved).reshape(-1, L)
    inner = int(np.prod(a.shape[axis + 1:], dtype=np.int64))
    return x2, max(inner, 1), moved.shape


def from_blocked_2d(y2: np.ndarray, moved_shape, axis: int) -> np.ndarray:
    return np.moveaxis(y2.reshape(moved_shape), -1, axis)


def _run(x2, fmt, rounding, seed, inner, want_codes, want_deq):
    """Run the format's kernel on (R, L): returns (codes or None, scales, deq or None)."""
    R, L = x2.shape
    k = fmt.block_size
    nb = -(-L // k)
    mode = _q.ROUNDING_IDS[rounding]
    scales = np.empty((R, nb), np.uint8)
    if isinstance(fmt, BlockFP):
        x2 = x2.astype(np.float32, copy=False)
    dummy_deq = np.empty((1, 1), x2.dtype)
    deq = np.empty((R, L), x2.dtype) if want_deq else dummy_deq
    if isinstance(fmt, MXIntFormat):
        codes = np.empty((R, L), np.int8) if want_codes else np.empty((1, 1), np.int8)
        if x2.dtype == np.float32 and mode != _q.RN_STOCH:
            _q.mxint_f32_fast(x2, x2.view(np.int32), k, fmt.element_bits, mode, want_codes, want_deq,
                              codes, scales, deq)
        else:
            _q.mxint_kernel(x2, k, fmt.element_bits, mode, seed, inner, want_codes, want_deq, codes, scales, deq)
    elif isinstance(fmt, MXFPFormat):
        codes = np.empty((R, L), np.uint8) if want_codes else np.empty((1, 1), np.uint8)
        _q.mxfp_kernel(x2, k, fmt.exponent_bits, fmt.mantissa_bits, fmt.exponent_bias, float(fmt.max_normal),
                       fmt.emax_elem, mode, seed, inner, want_codes, want_deq, codes, scales, deq)
    else:
        codes = np.empty((R, L), np.int8) if want_codes else np.empty((1, 1), np.int8)
        _q.bfp_kernel(x2, k, fmt.width, fmt.exp_min, fmt.exp_max, fmt.nan_code, fmt.bias,
                      bool(fmt.zero_passthrough), mode, seed, inner, want_codes, want_deq, codes, scales, deq)
    return (codes if want_codes else None), scales, (deq if want_deq else None)


def _prepare(x, fmt, axis, rounding, seed):
    fmt = get_format(fmt)
    check_rounding(rounding)
    seed = _check_seed(seed)
    a, src = _to_numpy(x)
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension (blocks run along axis)")
    axis = normalize_axis(axis, a.ndim)
    return fmt, a, src, axis, seed


def fake_quantize(x, fmt, axis=-1, rounding="nearest_even", seed=0):
    """Quantize and dequantize ``x`` to ``fmt`` along ``axis``; same kind/dtype/shape/device."""
    fmt, a, src, axis, seed = _prepare(x, fmt, axis, rounding, seed)
    if a.size == 0:
        return _from_numpy(a.copy(), src)
    x2, inner, moved = to_blocked_2d(a, axis)
    _, _, deq = _run(x2, fmt, rounding, seed, inner, False, True)
    return _from_numpy(from_blocked_2d(deq, moved, axis), src)


def quantize(x, fmt, axis=-1, rounding="nearest_even", seed=0):
    """Quantize ``x`` to ``fmt`` along ``axis``: an MXTensor of element and scale codes."""
    from .tensor import MXTensor

    fmt, a, src, axis, seed = _prepare(x, fmt, axis, rounding, seed)
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
