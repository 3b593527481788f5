"""QuantLinear: y = Qx(x) W_q^T + Qlr(L(x) A) B (+ bias), every quantizer from mxsim.

* Fast path: mxsim.fake_quantize of x (blocks along in), matmuls in float32 on the
  dequantized W_q, A, B.
* ``exact=True``: the same layer through ``mxsim.matmul`` integer arithmetic (x and W_q
  blocked along the reduction dimension; the low-rank path too when the factors are blocked
  along the reduction dimension, ``factor_axis="reduction"``; with factors blocked along their
  last dimension (as published) no MX dot product applies, so that path is a float64 product
  of the dequantized values).
* LRC-style options: ``lowrank_input="unquantized"`` (the low-rank path reads x, not Qx(x)),
  ``lowrank_output_format=None`` (x·A not re-quantized), full-precision factors,
  ``input_transform`` (an orthogonal R: the layer computes f(x R) with W already rotated).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

import mxsim
from mxsim.tensor import MXTensor

LOWRANK_INPUTS = ("quantized", "unquantized")


def _deq(t) -> torch.Tensor:
    if isinstance(t, MXTensor):
        return torch.as_tensor(t.dequantize(), dtype=torch.float32)
    return torch.as_tensor(t).detach().to(torch.float32)


def transpose_mx(t: MXTensor) -> MXTensor:
    """The transpose of a 2-D MXTensor (codes and scales transposed, axis swapped)."""
    if len(t.shape) != 2:
        raise ValueError("transpose_mx needs a 2-D MXTensor")
    # dataclasses.replace keeps the subclass and its fields (NVFP4Tensor's per-tensor scale)
    return dataclasses.replace(t, codes=np.ascontiguousarray(t.codes.T), scales=np.ascontiguousarray(t.scales.T),
                               axis=1 - t.axis, shape=(t.shape[1], t.shape[0]))


def _fp_bits(t, fp_bits: int) -> int:
    if t is None:
        return 0
    if isinstance(t, MXTensor):
        return int(t.nbits)
    return int(t.numel()) * fp_bits


class QuantLinear(nn.Module):
    def __init__(self, weight, *, bias=None, x_format=None, A=None, B=None, lowrank_input="quantized",
                 lowrank_output_format=None, input_transform=None, exact=False, accumulator="exact",
                 fp_bits: int = 16, name: str = ""):
        """``weight``: MXTensor (out x in, blocked along in) or a float tensor (kept unquantized).
        ``A`` (in x k), ``B`` (k x out): MXTensor, float tensor, or both None (no correction)."""
        super().__init__()
        if isinstance(weight, MXTensor):
            if len(weight.shape) != 2 or weight.axis != 1:
                raise ValueError(f"weight MXTensor must be 2-D (out x in) blocked along in (axis 1); got shape "
                                 f"{weight.shape}, axis {weight.axis}")
        elif not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError("weight must be an MXTensor or a 2-D tensor (out x in)")
        out_f, in_f = tuple(weight.shape)
        if (A is None) != (B is None):
            raise ValueError("give both A and B, or neither")
        if A is not None:
            if len(A.shape) != 2 or len(B.shape) != 2 or A.shape[0] != in_f or B.shape[1] != out_f \
                    or A.shape[1] != B.shape[0]:
                raise ValueError(f"factor shapes do not match: W {out_f}x{in_f} needs A (in={in_f} x k) and "
                                 f"B (k x out={out_f}); got A {tuple(A.shape)}, B {tuple(B.shape)}")
        if lowrank_input not in LOWRANK_INPUTS:
            raise ValueError(f"lowrank_input must be one of {LOWRANK_INPUTS}, got {lowrank_input!r}")
        if bias is not None and tuple(bias.shape) != (out_f,):
            raise ValueError(f"bias must have shape ({out_f},), got {tuple(bias.shape)}")
        if input_transform is not None:
            input_transform = torch.as_tensor(input_transform).detach().to(torch.float32)
            if tuple(input_transform.shape) != (in_f, in_f):
                raise ValueError(f"input_transform must be ({in_f} x {in_f}), got {tuple(input_transform.shape)}")
        self.in_features, self.out_features = in_f, out_f
        self.w_mx = weight if isinstance(weight, MXTensor) else None
        self.a_mx = A if isinstance(A, MXTensor) else None
        self.b_mx = B if isinstance(B, MXTensor) else None
        self._A_src, self._B_src = A, B
        self.register_buffer("weight", _deq(weight).contiguous())
        self.register_buffer("A", None if A is None else _deq(A).contiguous())
        self.register_buffer("B", None if B is None else _deq(B).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())
        self.register_buffer("input_transform", input_transform)
        self.x_format = x_format
        self.lowrank_input = lowrank_input
        self.lowrank_output_format = lowrank_output_format
        self.exact = bool(exact)
        self.accumulator = accumulator
        self.fp_bits = int(fp_bits)
        self.name = name
        self.metrics: dict = {}

    @property
    def rank(self) -> int:
        return 0 if self.A is None else int(self.A.shape[1])

    # ----- bits -----
    @property
    def nbits(self) -> int:
        """Storage bits: W_q elements + block exponents, plus the factors (MX bits, or
        ``fp_bits`` per element when kept unquantized). Bias and rotation not counted."""
        w = self.w_mx.nbits if self.w_mx is not None else self.weight.numel() * self.fp_bits
        return int(w) + _fp_bits(self._A_src, self.fp_bits) + _fp_bits(self._B_src, self.fp_bits)

    @property
    def bits_per_weight(self) -> float:
        return self.nbits / (self.in_features * self.out_features)

    # ----- forward -----
    def _fq(self, x, fmt):
        if fmt is None:
            return x
        return mxsim.fake_quantize(x, fmt, axis=-1)

    def forward(self, x):
        if self.exact:
            return self._forward_exact(x)
        dtype = x.dtype
        x = x.to(torch.float32)
        if self.input_transform is not None:
            x = x @ self.input_transform
        xq = self._fq(x, self.x_format)
        y = torch.nn.functional.linear(xq, self.weight)
        if self.A is not None:
            h = (xq if self.lowrank_input == "quantized" else x) @ self.A
            h = self._fq(h, self.lowrank_output_format)
            y = y + h @ self.B
        if self.bias is not None:
            y = y + self.bias
        return y.to(dtype)

    def _mm(self, a2d: torch.Tensor, a_fmt, b_mx: MXTensor | None, b_deq: torch.Tensor):
        """a2d (M x K) @ b (K x N): integer MX matmul when a is quantized and b is an MXTensor
        blocked along K with the same block size; else float64 on dequantized values."""
        if a_fmt is not None and b_mx is not None and b_mx.axis == 0 and b_mx.fmt.block_size == a_fmt.block_size:
            a_mx = mxsim.quantize(a2d, a_fmt, axis=1)
            out = mxsim.matmul(a_mx, b_mx, accumulator=self.accumulator)
            return torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out).to(torch.float64)
        a = self._fq(a2d, a_fmt).to(torch.float64)
        return a @ b_deq.to(torch.float64)

    def _forward_exact(self, x):
        shape, dtype = x.shape, x.dtype
        x2 = x.reshape(-1, self.in_features).to(torch.float32)
        if self.input_transform is not None:
            x2 = x2 @ self.input_transform
        wT = transpose_mx(self.w_mx) if self.w_mx is not None else None
        y = self._mm(x2, self.x_format, wT, self.weight.T)
        if self.A is not None:
            if self.lowrank_input == "quantized":
                src, fmt = x2, self.x_format
            else:
                src, fmt = x2, None
            h = self._mm(src, fmt, self.a_mx, self.A).to(torch.float32)
            y = y + self._mm(h, self.lowrank_output_format, self.b_mx, self.B)
        if self.bias is not None:
            y = y + self.bias.to(torch.float64)
        return y.to(torch.float32).reshape(*shape[:-1], self.out_features).to(dtype)

    def extra_repr(self) -> str:
        wf = self.w_mx.fmt.name + f"/{self.w_mx.fmt.block_size}" if self.w_mx is not None else "fp"
        xf = "fp" if self.x_format is None else f"{self.x_format.name}/{self.x_format.block_size}"
        return (f"in={self.in_features}, out={self.out_features}, w={wf}, x={xf}, rank={self.rank}, "
                f"lowrank_input={self.lowrank_input}, exact={self.exact}")
