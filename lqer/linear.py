"""QuantLinear: y = Qx(x) W_q^T + Qlr(L(x) A) B (+ bias), every quantizer from mxsim.

The layer's ``accumulator`` (an mxsim accumulator: ``Float()``, ``Exact()``, ``FP32(lanes)``,
``FixedPoint(total, frac, overflow)``) says how each GEMM is computed:

* ``Float()`` (default): mxsim.fake_quantize of x (blocks along in), matmuls in float32 on the
  dequantized W_q, A, B (the emulation every perplexity used before the datapath).
* a datapath accumulator: every GEMM whose two operands are MX blocked along the reduction
  dimension with one block size runs through ``mxsim.matmul`` on the codes:
    - ``main``: Q(x) @ W_q^T (always MX for a quantized layer; else the accumulator is refused),
    - ``lowrank_in``: Q(x) @ A (MX when A is blocked along in: ``factor_axis="reduction"``),
    - ``lowrank_out``: Q(h) @ B with h the ``lowrank_in`` result re-quantized to
      ``lowrank_output_format`` straight from the accumulator's output (MX when B is blocked
      along k). A GEMM whose operands are not MX (LRC's unquantized input and FP16 factors,
      factors blocked along their last dim as published, no re-quantization of h) stays the
      float32 matmul of the Float path; ``datapath()`` says which GEMM ran how, and why.
  The GEMM outputs (float64 for exact/fixed point, float32 for fp32) are cast to float32; the
  low-rank output is added to the main output and then the bias, both in float32 (the adds
  after the accumulator are not part of the MX dot-product unit).
  ``accumulators`` (per GEMM, e.g. FixedPoint fraction bits from lqer.datapath's calibration)
  overrides the layer-wide accumulator for the GEMMs it names.
* ``exact=True`` (legacy) is ``accumulator=Exact()`` unless an accumulator is given.
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
from mxsim.accumulators import Exact, FixedPoint, Float, check_accumulator_fits, parse_accumulator
from mxsim.tensor import MXTensor

LOWRANK_INPUTS = ("quantized", "unquantized")


def _deq(t) -> torch.Tensor:
    if isinstance(t, MXTensor):
        return torch.as_tensor(t.dequantize(), dtype=torch.float32)
    return torch.as_tensor(t).detach().to(torch.float32)


def transpose_mx(t: MXTensor) -> MXTensor:
    """The transpose of a 2-D MXTensor (codes and scales transposed, axis swapped), where its
    codes live (numpy on the host, a torch tensor on its device)."""
    if len(t.shape) != 2:
        raise ValueError("transpose_mx needs a 2-D MXTensor")

    def tr(a):
        return a.T.contiguous() if isinstance(a, torch.Tensor) else np.ascontiguousarray(a.T)

    # dataclasses.replace keeps the subclass and its fields (NVFP4Tensor's per-tensor scale)
    return dataclasses.replace(t, codes=tr(t.codes), scales=tr(t.scales), axis=1 - t.axis,
                               shape=(t.shape[1], t.shape[0]))


def mx_on(t: MXTensor, device) -> MXTensor:
    """``t`` with its codes where ``device`` says: None = numpy on the host (mxsim's CPU path),
    a torch device = torch tensors there (mxsim.gpu; a CPU torch device only under
    TRITON_INTERPRET=1, where mxsim.quantize returns such codes). ``t`` itself if already there."""
    if device is None:
        return t.cpu()
    if t.device == device:
        return t
    if device.type == "cpu":
        h = t.cpu()
        return dataclasses.replace(h, codes=torch.from_numpy(np.ascontiguousarray(h.codes)),
                                   scales=torch.from_numpy(np.ascontiguousarray(h.scales)))
    return t.to(device)


def _fp_bits(t, fp_bits: int) -> int:
    if t is None:
        return 0
    if isinstance(t, MXTensor):
        return int(t.nbits)
    return int(t.numel()) * fp_bits


def _as_torch(out, device) -> torch.Tensor:
    """mxsim.matmul's result (numpy, or a torch tensor on a device path) as a torch tensor on ``device``."""
    t = out if isinstance(out, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(out))
    return t.to(device)


class QuantLinear(nn.Module):
    def __init__(self, weight, *, bias=None, x_format=None, A=None, B=None, lowrank_input="quantized",
                 lowrank_output_format=None, input_transform=None, exact=False, accumulator=None,
                 accumulators=None, fp_bits: int = 16, name: str = ""):
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
        self.metrics: dict = {}
        self._weight_sides = {}  # (gemm, device) -> K x N MXTensor there, built on first datapath use
        self.count_overflow = False
        self.overflow_counts: dict = {}
        if accumulator is None:
            accumulator = Exact() if exact else Float()
        self.fp_bits = int(fp_bits)
        self.name = name
        self.set_accumulator(accumulator, accumulators)

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
            return self._forward_datapath(x)
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

    # ----- the datapath -----
    @property
    def exact(self) -> bool:
        """True when the GEMMs run on mxsim's integer datapath (any accumulator but Float)."""
        return not isinstance(self.accumulator, Float)

    def gemm_operands(self) -> dict:
        """Per GEMM ("main", and "lowrank_in"/"lowrank_out" with a correction): ``(a_fmt, b)``
        when both operands are MX blocked along the reduction with one block size (b the
        weight-side MXTensor, K x N), else a string saying why the GEMM stays float."""
        def mx_pair(a_fmt, b_mx, b_axis, what):
            if a_fmt is None:
                return f"float ({what}: the input side is not quantized)"
            if not isinstance(b_mx, MXTensor):
                return f"float ({what}: the weight side is not an MX tensor)"
            if not isinstance(a_fmt, mxsim.formats.FORMAT_CLASSES) or isinstance(a_fmt, mxsim.NVFP4Format):
                return f"float ({what}: {a_fmt} is not an MX block format)"
            if b_mx.axis != b_axis:
                return f"float ({what}: the factor is blocked along its last dim, not the reduction; " \
                       f"factor_axis='reduction' puts it on the datapath)"
            if b_mx.fmt.block_size != a_fmt.block_size:
                return (f"float ({what}: block sizes differ, {a_fmt.block_size} vs {b_mx.fmt.block_size})")
            return (a_fmt, b_mx)

        out = {"main": mx_pair(self.x_format, self.w_mx, 1, "main")}
        if self.A is not None:
            a_in = self.x_format if self.lowrank_input == "quantized" else None
            out["lowrank_in"] = mx_pair(a_in, self.a_mx, 0, "lowrank_in")
            out["lowrank_out"] = mx_pair(self.lowrank_output_format, self.b_mx, 0, "lowrank_out")
        return out

    def set_accumulator(self, accumulator, accumulators=None) -> None:
        """Set the layer-wide accumulator (any mxsim spelling) and optional per-GEMM ones
        (``{"main": FixedPoint(...), ...}``); everything is checked before anything changes.

        Refused with the layer's name: a datapath accumulator on a layer whose main GEMM is not
        MX (a full-precision or LLM.int8 layer, unquantized input); a FixedPoint narrower than
        one block's integer sum (mxsim.datapath_widths' sum_bits) or with more fraction bits
        than it has bits below its sign bit (frac_bits > total_bits - 1)."""
        acc = parse_accumulator(accumulator, what="accumulator")
        per = {}
        for gemm, a in dict(accumulators or {}).items():
            per[gemm] = parse_accumulator(a, what=f"accumulators[{gemm!r}]")
        ops = self.gemm_operands()
        unknown = sorted(set(per) - set(ops))
        if unknown:
            raise ValueError(f"accumulators: layer {self.name or '?'} has the GEMMs {sorted(ops)}, got {unknown}")
        if not isinstance(acc, Float) or any(not isinstance(a, Float) for a in per.values()):
            if isinstance(acc, Float):
                raise ValueError("accumulators: per-GEMM accumulators need a layer-wide datapath accumulator "
                                 "(exact, fp32[:lanes] or fixed:TOTAL:FRAC), not float")
            if isinstance(ops["main"], str):
                raise ValueError(f"accumulator {acc} needs MX operands, but layer {self.name or '?'} computes "
                                 f"{ops['main'][len('float ('):-1]}; allowed for this layer: float")
            for gemm, op in ops.items():
                a = per.get(gemm, acc)
                if isinstance(op, str):
                    continue
                if isinstance(a, Float):
                    raise ValueError(f"accumulators[{gemm!r}]: float inside a datapath layer is not allowed; "
                                     "use exact, fp32[:lanes] or fixed:TOTAL:FRAC")
                check_accumulator_fits(a, op[0], op[1].fmt, where=f"layer {self.name or '?'} {gemm}")
        self.accumulator = acc
        self.accumulators = {g: per.get(g, acc) for g, op in ops.items() if not isinstance(op, str)} \
            if not isinstance(acc, Float) else {}
        self.overflow_counts = {}

    def datapath(self) -> dict:
        """Per GEMM: the accumulator it runs on ("fp32:4", "fixed:24:9", ...) or "float (why)"."""
        if not self.exact:
            return {g: "float (accumulator float: fake-quantize + float32 matmul)" for g in self.gemm_operands()}
        return {g: (str(self.accumulators[g]) if not isinstance(op, str) else op)
                for g, op in self.gemm_operands().items()}

    def _weight_side(self, gemm, device=None):
        """The GEMM's weight-side operand (K x N blocked along K: W_q^T, A or B) on ``device``
        (an MXTensor's ``.device``: None = host numpy), made once per device and kept: the
        codes are fixed, so no forward re-transposes or re-copies them."""
        key = (gemm, device)
        b = self._weight_sides.get(key)
        if b is None:
            b = transpose_mx(self.w_mx) if gemm == "main" else (self.a_mx if gemm == "lowrank_in" else self.b_mx)
            b = self._weight_sides[key] = mx_on(b, device)
        return b

    def _gemm(self, gemm, a2d, a_fmt, b_float_T):
        """One GEMM a2d (M x K, float) @ b: the datapath on the codes when its operands are MX,
        else the float32 matmul of the Float path (b_float_T: the dequantized b as (N x K))."""
        acc = self.accumulators.get(gemm)
        if acc is None:
            a = self._fq(a2d.to(torch.float32), a_fmt)
            return torch.nn.functional.linear(a, b_float_T)
        a_mx = mxsim.quantize(a2d, a_fmt, axis=-1)  # codes on a2d's device (host numpy for CPU tensors)
        b = self._weight_side(gemm, a_mx.device)
        if not (self.count_overflow and isinstance(acc, FixedPoint)):
            return _as_torch(mxsim.matmul(a_mx, b, accumulator=acc), a2d.device)
        # the outputs that overflow changed (mxsim.matmul's return_overflow: on CUDA one kernel
        # tracks the 64-bit sum beside the accumulator; on the host two GEMMs)
        out, over = mxsim.matmul(a_mx, b, accumulator=acc, return_overflow=True)
        n_bad, n_all = self.overflow_counts.get(gemm, (0, 0))
        self.overflow_counts[gemm] = (n_bad + int(over.sum()), n_all + int(np.prod(over.shape)))
        return _as_torch(out, a2d.device)

    def _forward_datapath(self, x):
        shape, dtype = x.shape, x.dtype
        x2 = x.reshape(-1, self.in_features).to(torch.float32)
        if self.input_transform is not None:
            x2 = x2 @ self.input_transform
        y = self._gemm("main", x2, self.x_format, self.weight).to(torch.float32)
        if self.A is not None:
            quantized_in = self.lowrank_input == "quantized"
            h = self._gemm("lowrank_in", x2, self.x_format if quantized_in else None, self.A.T)
            low = self._gemm("lowrank_out", h, self.lowrank_output_format, self.B.T)
            y = y + low.to(torch.float32)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(dtype)

    def extra_repr(self) -> str:
        wf = self.w_mx.fmt.name + f"/{self.w_mx.fmt.block_size}" if self.w_mx is not None else "fp"
        xf = "fp" if self.x_format is None else f"{self.x_format.name}/{self.x_format.block_size}"
        return (f"in={self.in_features}, out={self.out_features}, w={wf}, x={xf}, rank={self.rank}, "
                f"lowrank_input={self.lowrank_input}, accumulator={self.accumulator}")
