"""FP16 baseline: one FP16 GEMM unit (lanes multipliers, lanes-1 adder tree, accumulate add)."""

from __future__ import annotations

from .base import Counts, Layer, fp16_gemm


def fp16(layer: Layer, lanes: int = 16, acc: str = "fp16", weights_on_chip: bool = False) -> Counts:
    if acc not in ("fp16", "fp32"):
        raise ValueError(f"acc must be 'fp16' or 'fp32', got {acc!r}")
    c = Counts("fp16", layer, dict(lanes=lanes, acc=acc))
    T, K, N = layer.tokens, layer.in_features, layer.out_features
    cyc = fp16_gemm(c, "gemm", T, K, N, lanes, acc)
    c.mem("weights", K * N * 16)
    c.mem("activation_buffers", T * K * 16)
    return c.finish(cyc, weights_on_chip, act_bytes_per_token=(K + N) * 2)
