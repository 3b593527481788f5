"""Array layout helpers shared by the numpy/torch front (api.py) and MXTensor (tensor.py).

Two concerns, both about how an array reaches a kernel and comes back, neither about a format:

* the input kind round trip: ``to_numpy`` turns a numpy array or torch tensor into a float32/
  float64 numpy array and remembers what it was (``Source``); ``from_numpy`` casts a result back
  to that kind, dtype and device;
* the blocked layout: ``to_blocked_2d`` moves the blocked axis last and flattens the rest, so
  each block is a contiguous run of a row of an (R, L) array (what every kernel takes);
  ``from_blocked_2d`` undoes it; ``normalize_axis`` checks an axis argument;
  ``stored_layout`` is the layout of a tensor read back from bytes, ``matmul_operands`` the
  layout every matmul (MX, NVFP4, the partial-sum range) takes.
"""

from __future__ import annotations

import numpy as np

_FLOAT_NP = (np.float16, np.float32, np.float64)


class Source:
    """What the input was, so outputs can be returned as the same kind."""

    __slots__ = ("is_torch", "dtype", "device")

    def __init__(self, is_torch, dtype, device=None):
        self.is_torch, self.dtype, self.device = is_torch, dtype, device


def is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def is_integer(v) -> bool:
    """True for Python and numpy integers (not bools): what every integer argument accepts."""
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer))


def to_numpy(x, name="x"):
    """(float32/float64 numpy array, Source). Narrow floats are widened to float32 (exact)."""
    if is_torch(x):
        import torch

        if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise ValueError(f"{name} must be a float16/bfloat16/float32/float64 tensor, got {x.dtype}")
        src = Source(True, x.dtype, x.device)
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
        src = Source(False, a.dtype)
        if a.dtype == np.float16:
            a = a.astype(np.float32)
        elif not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        return a, src
    raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


def from_numpy(a: np.ndarray, src: Source):
    """Cast a float32/float64 result to the input's kind, dtype (RNE) and device."""
    if src.is_torch:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(a)).to(src.dtype)
        return t.to(src.device) if src.device.type != "cpu" else t
    return a.astype(src.dtype, copy=False)


def normalize_axis(axis, ndim) -> int:
    if not is_integer(axis):
        raise ValueError(f"axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-d input (allowed: {-ndim}..{ndim - 1})")
    return int(axis) % ndim


def to_blocked_2d(a: np.ndarray, axis: int):
    """Move ``axis`` last and flatten the rest: (contiguous (R, L) array, inner, moved shape)."""
    moved = np.moveaxis(a, axis, -1)
    L = a.shape[axis]
    # An explicit row count: reshape(-1, 0) is ambiguous for empty blocked axes.
    rows = int(np.prod(moved.shape[:-1], dtype=np.int64))
    x2 = np.ascontiguousarray(moved).reshape(rows, L)
    inner = int(np.prod(a.shape[axis + 1:], dtype=np.int64))
    return x2, max(inner, 1), moved.shape


def from_blocked_2d(y2: np.ndarray, moved_shape, axis: int) -> np.ndarray:
    return np.moveaxis(y2.reshape(moved_shape), -1, axis)


def stored_layout(shape, axis, block_size: int):
    """(shape, axis, scale shape, number of scales, number of elements) of a blocked tensor of
    ``shape`` read back from bytes; ``shape`` must be integer sizes (numpy integers too)."""
    if is_integer(shape):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(is_integer(d) for d in shape):
        raise ValueError(f"shape must be a tuple of integer sizes, got {shape!r}")
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0 or any(d < 0 for d in shape):
        raise ValueError(f"shape must be a non-empty tuple of sizes >= 0, got {shape!r}")
    axis = normalize_axis(axis, len(shape))
    nb = -(-shape[axis] // block_size)
    sshape = shape[:axis] + (nb,) + shape[axis + 1:]
    return shape, axis, sshape, int(np.prod(sshape, dtype=np.int64)), int(np.prod(shape, dtype=np.int64))


def matmul_operands(a, b):
    """(K, block size) of ``a (..., K) @ b (K, N)``: a blocked along its last axis, b 2-D blocked
    along axis 0, both with one block size (the layout of every mxsim matmul)."""
    if a.axis != len(a.shape) - 1:
        raise ValueError(f"a must be blocked along its last axis (K), got axis {a.axis}")
    if len(b.shape) != 2 or b.axis != 0:
        raise ValueError(f"b must be 2-D (K, N) blocked along axis 0, got shape {b.shape} axis {b.axis}")
    K = a.shape[-1]
    if b.shape[0] != K:
        raise ValueError(f"a's K ({K}) and b's K ({b.shape[0]}) differ")
    k = a.fmt.block_size
    if b.fmt.block_size != k:
        raise ValueError(f"a and b must share the block size, got {k} and {b.fmt.block_size}")
    return K, k
