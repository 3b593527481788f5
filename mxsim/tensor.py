"""MXTensor: element codes + scale codes of one quantized tensor, and their byte packing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .formats import BlockFP, MXFPFormat, get_format
from .kernels import dequant as _dq
from .kernels import pack as _pk
from .layout import Source, from_blocked_2d, from_numpy, stored_layout, to_blocked_2d


def _interpreted(t) -> bool:
    """Torch CPU codes under TRITON_INTERPRET=1: the Triton kernels run in the interpreter."""
    import os

    return t.device is not None and os.environ.get("TRITON_INTERPRET") == "1"


def _special_codes(fmt):
    """(max finite code, Inf code or -1) without sign, for the dequant kernel: MXFP codes above
    the first decode to NaN, except the Inf code (formats.MXFPFormat.inf_code)."""
    if isinstance(fmt, MXFPFormat):
        return fmt.max_code, -1 if fmt.inf_code is None else fmt.inf_code
    return 255, -1  # MXINT / BlockFP: every code is finite


def _special_element_codes(fmt, codes) -> np.ndarray:
    """The distinct MXFP element codes (sign included) above ``fmt.max_code``: the format's
    Inf/NaN patterns; empty for MXINT, BlockFP and the MXFP formats without special codes."""
    if not isinstance(fmt, MXFPFormat) or not codes.size:
        return np.empty(0, np.uint8)
    c = codes.view(np.uint8) if codes.dtype == np.int8 else codes.astype(np.uint8, copy=False)
    mag = c & np.uint8((1 << (fmt.exponent_bits + fmt.mantissa_bits)) - 1)
    return np.unique(c[mag > fmt.max_code])


def _kind_params(fmt):
    """(kind id, ebits, mbits, scale bias, NaN scale code) for the dequant/pack kernels."""
    sc = fmt.scale
    if isinstance(fmt, MXFPFormat):
        return _dq.KIND_MXFP, fmt.exponent_bits, fmt.mantissa_bits, sc.bias, sc.nan_code
    if isinstance(fmt, BlockFP):
        return _dq.KIND_BFP, 0, 0, sc.bias, sc.nan_code
    return _dq.KIND_MXINT, 0, 0, sc.bias, sc.nan_code


_NP_FLOATS = (np.float16, np.float32, np.float64)


def _check_dtype(dtype, torch_source: bool):
    """The ``dtype`` argument of dequantize: a float dtype of the source's kind (numpy: float16/32/64;
    torch: float16/bfloat16/float32/float64). Integer dtypes are refused rather than truncated."""
    if torch_source:
        import torch

        if dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            return dtype
        raise ValueError(f"dtype must be a torch float dtype (float16, bfloat16, float32, float64) for a tensor "
                         f"quantized from torch, got {dtype!r}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.type not in _NP_FLOATS:
        raise ValueError(f"dtype must be a numpy float dtype (float16, float32, float64) for an array quantized "
                         f"from numpy, got {dtype!r}")
    return dt


@dataclass(eq=False)
class MXTensor:
    """codes: x's shape (int8, or uint8 bit patterns for MXFP); scales: uint8, x's shape with
    ``axis`` replaced by the number of blocks. ``src_*`` record the input kind so that
    ``dequantize()`` returns what fake_quantize would have returned."""

    codes: np.ndarray
    scales: np.ndarray
    fmt: Any
    axis: int
    shape: tuple
    src_torch: bool = False
    src_dtype: Any = np.float32
    src_device: Any = None

    @property
    def n_blocks(self) -> int:
        return int(np.prod(self.scales.shape, dtype=np.int64))  # numpy or device (torch) scales

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbits(self) -> int:
        """Spec storage: every element's bits plus one scale per (possibly short) block."""
        return self.numel * self.fmt.element_bits + self.n_blocks * self.fmt.scale_bits

    # -- device placement: codes/scales may be torch tensors on a CUDA device (mxsim.gpu)

    @property
    def device(self):
        """Where codes and scales live: None for numpy (host), else the torch device."""
        return None if isinstance(self.codes, np.ndarray) else self.codes.device

    def _replace(self, codes, scales):
        # dataclasses.replace keeps the subclass and its fields (NVFP4Tensor's tensor_scale)
        return dataclasses.replace(self, codes=codes, scales=scales)

    def cpu(self) -> "MXTensor":
        """The same tensor with numpy codes/scales on the host (itself if already there)."""
        if self.device is None:
            return self
        return self._replace(self.codes.cpu().numpy(), self.scales.cpu().numpy())

    def to(self, device) -> "MXTensor":
        """Codes and scales moved to ``device`` ("cpu" gives numpy arrays, as quantize does)."""
        import torch

        device = torch.device(device)
        if device.type == "cpu":
            return self.cpu()
        codes = self.codes if self.device is not None else torch.from_numpy(np.ascontiguousarray(self.codes))
        scales = self.scales if self.device is not None else torch.from_numpy(np.ascontiguousarray(self.scales))
        return self._replace(codes.to(device), scales.to(device))

    def _blocked(self, arr):
        return to_blocked_2d(arr, self.axis)

    def int_values(self) -> np.ndarray:
        """int64 integer view: value = int * 2^(scale + quantum_log2) (see the contract).

        MXFP codes above ``fmt.max_code`` (E4M3 S.1111.111 = NaN, E5M2 S.11111.xx = Inf/NaN)
        have no integer: ValueError naming them (the kernel would return a finite number)."""
        if self.device is not None:
            return self.cpu().int_values()
        kind, eb, mb, _, _ = _kind_params(self.fmt)
        c = np.ascontiguousarray(self.codes)  # elementwise: no need to move the blocked axis
        special = _special_element_codes(self.fmt, c)
        if special.size:
            raise ValueError(f"int_values: {self.fmt.name} element codes "
                             f"{', '.join(f'{int(v):#04x}' for v in special[:8])}{' ...' if special.size > 8 else ''}"
                             f" are Inf/NaN (above max_normal's code {self.fmt.max_code:#04x}) and have no integer "
                             f"view; dequantize() decodes them")
        out = np.empty(c.shape, np.int64)
        if c.size:
            _dq.int_values_kernel(c.reshape(-1), kind, eb, mb, out.reshape(-1))
        return out

    def scale_exponents(self) -> np.ndarray:
        """Scale exponents (code - bias) as int64; NaN blocks are marked by ``scale_is_nan()``."""
        if self.device is not None:
            return self.cpu().scale_exponents()
        _, _, _, bias, _ = _kind_params(self.fmt)
        return self.scales.astype(np.int64) - bias

    def scale_is_nan(self) -> np.ndarray:
        if self.device is not None:
            return self.cpu().scale_is_nan()
        return self.scales == _kind_params(self.fmt)[4]

    def dequantize(self, dtype=None):
        """Values as the input kind (numpy/torch, device); ``dtype`` overrides the input dtype.
        Device codes (mxsim.gpu) dequantize on their device."""
        if self.device is not None and self.device.type != "cpu" or _interpreted(self):
            from . import gpu

            return gpu.dequantize(self, self.src_dtype if dtype is None else _check_dtype(dtype, True))
        if self.device is not None:
            return self.cpu().dequantize(dtype)
        kind, eb, mb, bias, nan_code = _kind_params(self.fmt)
        c2, _, moved = self._blocked(self.codes)
        s2, _, _ = self._blocked(self.scales)
        out = np.empty(c2.shape, np.float64)
        if c2.size:
            _dq.dequant_kernel(c2, s2, self.fmt.block_size, kind, eb, mb, self.fmt.quantum_log2, bias, nan_code,
                               *_special_codes(self.fmt), out)
        vals = from_blocked_2d(out, moved, self.axis)
        src = Source(self.src_torch, self.src_dtype if dtype is None else _check_dtype(dtype, self.src_torch),
                     self.src_device)
        if src.is_torch and src.device is None:
            import torch

            src.device = torch.device("cpu")
        return from_numpy(vals, src)

    def to_bytes(self) -> bytes:
        """Scale bytes (C order of ``scales``), then the element codes as one little-endian
        bit stream in C order with ``axis`` moved last; the last byte is zero padded."""
        if self.device is not None:
            return self.cpu().to_bytes()
        c2, _, _ = self._blocked(self.codes)
        b = self.fmt.element_bits
        stream = np.zeros((c2.size * b + 7) // 8, np.uint8)
        if c2.size:
            _pk.pack_bits(c2.reshape(-1).view(np.uint8), b, _kind_params(self.fmt)[0], stream)
        return np.ascontiguousarray(self.scales).tobytes() + stream.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, fmt, shape, axis=-1) -> "MXTensor":
        fmt = get_format(fmt)
        if getattr(fmt, "kind", None) == "nvfp4" and cls is MXTensor:
            from .nvfp4 import NVFP4Tensor

            return NVFP4Tensor.from_bytes(data, fmt, shape, axis)
        shape, axis, sshape, n_scales, numel = stored_layout(shape, axis, fmt.block_size)
        b = fmt.element_bits
        expected = n_scales + (numel * b + 7) // 8
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data must be bytes, got {type(data).__name__}")
        if len(data) != expected:
            raise ValueError(f"data has {len(data)} bytes; {fmt.name} with shape {shape}, axis {axis} needs {expected}")
        buf = np.frombuffer(bytes(data), np.uint8)
        scales = buf[:n_scales].reshape(sshape).copy()
        sc = fmt.scale
        if n_scales and int(scales.max()) > sc.nan_code:
            i = int(np.argmax(scales.reshape(-1) > sc.nan_code))
            raise ValueError(f"data: scale byte {int(scales.reshape(-1)[i]):#04x} (block {i}) is outside {fmt.name}'s "
                             f"{sc.bits}-bit scale codes 0..{sc.nan_code} ({sc.nan_code:#04x} = NaN)")
        raw = np.empty(numel, np.uint8)
        if numel:
            _pk.unpack_bits(buf[n_scales:], b, _kind_params(fmt)[0], raw)
        moved = shape[:axis] + shape[axis + 1:] + (shape[axis],)
        cdtype = np.uint8 if isinstance(fmt, MXFPFormat) else np.int8
        codes = np.ascontiguousarray(from_blocked_2d(raw.view(cdtype).reshape(moved), moved, axis))
        out = cls(codes, scales, fmt, axis, shape)
        if isinstance(fmt, MXFPFormat) and numel:
            # codes above max_normal are the format's NaN/Inf patterns (E4M3 S.1111.111, E5M2
            # exponent 11111), which no quantized block holds: refuse rather than decode them
            mag = codes.reshape(-1) & ((1 << (fmt.exponent_bits + fmt.mantissa_bits)) - 1)
            bad = mag > fmt.max_code
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"data: element code {int(codes.reshape(-1)[i]):#04x} (element {i}) is not a finite "
                                 f"{fmt.name} value (|x| <= {fmt.max_normal:g})")
        return out
