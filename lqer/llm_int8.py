"""LLM.int8()-style emulation (Dettmers et al. 2022) for comparison.

Per forward call: input columns with any |x| > threshold (6.0) are outliers and go through
an FP16 matmul with the matching FP16 weight columns (rows of W^T); the rest is quantized
vector-wise to ``bits`` (8, or 4 for the "LLM.int4()" variant): x per token row, W per output
channel, symmetric absmax scaling (scale = absmax / (2^(b-1) - 1), round half to even).

Note: absmax scaling with a real-valued per-vector scale is NOT an MX format (MX scales are
powers of two), so this one quantizer is written here rather than in mxsim; it exists only
as the LLM.int8() baseline and is never used by LQER/L2QER/QERA.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def absmax_quantize(x: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Symmetric absmax fake quantization along ``dim`` (one scale per vector)."""
    qmax = 2 ** (bits - 1) - 1
    amax = x.abs().amax(dim=dim, keepdim=True)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    return torch.round(x / scale).clamp(-qmax, qmax) * scale


class LLMInt8Linear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias=None, *, bits: int = 8, threshold: float = 6.0,
                 calib_outliers: int | None = None, name: str = ""):
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"bits must be 8 or 4, got {bits}")
        w = weight.detach().to(torch.float32)
        self.out_features, self.in_features = w.shape
        self.bits, self.threshold, self.name = bits, float(threshold), name
        self.register_buffer("weight_q", absmax_quantize(w, bits, dim=1))  # per output channel
        self.register_buffer("weight_fp16", w.to(torch.float16))
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())
        self.calib_outliers = calib_outliers
        self.max_outliers_seen = 0
        self.metrics: dict = {}

    @property
    def nbits(self) -> int:
        """int weights + one fp32 scale per output channel + FP16 copies of the outlier
        columns seen on calibration (0 if not calibrated)."""
        n_out = self.calib_outliers or 0
        return int(self.out_features * (self.in_features * self.bits + 32 + n_out * 16))

    @property
    def bits_per_weight(self) -> float:
        return self.nbits / (self.in_features * self.out_features)

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        outl = (x.reshape(-1, self.in_features).abs() > self.threshold).any(dim=0)
        self.max_outliers_seen = max(self.max_outliers_seen, int(outl.sum()))
        x_reg = x.masked_fill(outl, 0.0)
        y = torch.nn.functional.linear(absmax_quantize(x_reg, self.bits, dim=-1), self.weight_q)
        if bool(outl.any()):
            xo = x[..., outl].to(torch.float16)
            wo = self.weight_fp16[:, outl]
            y = y + (xo.float() @ wo.float().T).to(torch.float16).float()
        if self.bias is not None:
            y = y + self.bias
        return y.to(dtype)

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}, bits={self.bits}, threshold={self.threshold}"
