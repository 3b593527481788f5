"""LLM.int8() / LLM.int4(): outlier columns scattered to an FP16 GEMM, the rest to an int GEMM
with vector-wise quantization, results gathered and added.

Units
* scatter (``scatter_lanes`` activations per cycle): a threshold comparator on every activation
  (15-bit magnitude of FP16), two 2:1 muxes (16 bits) steering it to the high or low buffer, two
  write-address counters (clog2(in) bits) and an outlier-index buffer (n × clog2(in) bits).
  With ``runtime_weight_scatter`` the W rows are copied too (as the paper's HLS code does): two
  more muxes per lane and in·out/scatter_lanes extra cycles.
* high path: FP16 GEMM with ``outlier_lanes`` lanes over n outlier columns (absent when n = 0).
* low path: per-token absmax (max_tree) and one fp16_div for the scale, then per lane a quantizer
  ``quant``: 'scale-mul' fp16_mul + fp16_to_int; 'fp16-div' fp16_mul + fp16_div + fp16_to_int;
  'fp64-div' fp16_mul + fp16_to_fp64 + fp64_div + fp64_to_int (the paper's source divides by a
  double literal). ``runtime_weight_quant`` quantizes W the same way at run time (paper) instead of
  storing it as ints. Then an int GEMM unit (int_bits × int_bits).
* gather (``gather_lanes`` outputs per cycle): int_to_fp16(acc), two fp16_mul (row × column
  scale), an fp16_div if ``dequant_div`` (the paper divides by 127²), and an fp16_add."""

from __future__ import annotations

import math

import numpy as np

from .base import Counts, Layer, check_pos_int, clog2, fp16_gemm, int_gemm

QUANT = ("scale-mul", "fp16-div", "fp64-div")
PAPER_OUTLIER_FRACTION = 353 / 4096


def default_outliers(in_features: int) -> int:
    return int(round(in_features * PAPER_OUTLIER_FRACTION))


def _quantizer(c: Counts, path: str, quant: str, int_bits: int, n: int) -> None:
    if quant == "scale-mul":
        c.add(path, "fp16_mul", 0, 0, n)
        c.add(path, "fp16_to_int", int_bits, 0, n)
    elif quant == "fp16-div":
        c.add(path, "fp16_mul", 0, 0, n)
        c.add(path, "fp16_div", 0, 0, n)
        c.add(path, "fp16_to_int", int_bits, 0, n)
    else:
        c.add(path, "fp16_mul", 0, 0, n)
        c.add(path, "fp16_to_fp64", 0, 0, n)
        c.add(path, "fp64_div", 0, 0, n)
        c.add(path, "fp64_to_int", int_bits, 0, n)


def llm_int8(layer: Layer, outliers: int | None = None, int_bits: int = 8, lanes: int = 16,
             outlier_lanes: int | None = None, scatter_lanes: int = 1, gather_lanes: int = 1,
             quant: str = "scale-mul", runtime_weight_quant: bool = False, runtime_weight_scatter: bool = False,
             dequant_div: bool = False, acc_bits: int | None = None, sequential: bool = False,
             weights_on_chip: bool = False, name: str | None = None) -> Counts:
    T, K, N = layer.tokens, layer.in_features, layer.out_features
    n = default_outliers(K) if outliers is None else outliers
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0 or n > K:
        raise ValueError(f"outliers must be an integer in [0, in_features={K}], got {outliers!r}")
    n = int(n)
    check_pos_int("int_bits", int_bits)
    check_pos_int("lanes", lanes)
    ol = lanes if outlier_lanes is None else check_pos_int("outlier_lanes", outlier_lanes)
    check_pos_int("scatter_lanes", scatter_lanes)
    check_pos_int("gather_lanes", gather_lanes)
    if quant not in QUANT:
        raise ValueError(f"quant must be one of {QUANT}, got {quant!r}")
    name = name or f"llm.int{int_bits}"
    c = Counts(name, layer, dict(outliers=n, int_bits=int_bits, lanes=lanes, outlier_lanes=ol, quant=quant))
    ab = clog2(K)
    # scatter
    c.add("scatter", "comparator", 15, 0, scatter_lanes)
    c.add("scatter", "mux2", 16, 0, 2 * scatter_lanes * (2 if runtime_weight_scatter else 1))
    c.add("scatter", "int_add", ab, 0, 2)
    c.mem("outlier_buffers", n * ab + T * n * 16)  # index list + high-precision activations
    c.mem("activation_buffers", T * (K - n) * 16)
    scatter_cyc = T * math.ceil(K / scatter_lanes) + (math.ceil(K * N / scatter_lanes) if runtime_weight_scatter else 0)
    # high-precision path
    hp = 0
    if n > 0:
        kp = math.ceil(n / ol) * ol
        hp = fp16_gemm(c, "fp16_outliers", T, kp, N, ol)
    # low-precision path
    # (always built: the outlier count is only known at run time, so the int path must exist
    # even when a given layer happens to send every column to FP16; it then idles)
    c.add("x_quant", "max_tree", 15, lanes + 1, 1)
    c.add("x_quant", "fp16_div", 0, 0, 1)
    _quantizer(c, "x_quant", quant, int_bits, lanes)
    if runtime_weight_quant:
        _quantizer(c, "w_quant", quant, int_bits, lanes)
    # accumulator sized for the worst case (every column low precision): the split varies at run time
    acc = acc_bits or (2 * int_bits + clog2(K))
    int_gemm(c, "int_gemm", T, K, N, lanes, int_bits, int_bits, acc)
    lp = T * N * math.ceil((K - n) / lanes)
    # gather
    c.add("gather", "int_to_fp16", acc, 0, gather_lanes)
    c.add("gather", "fp16_mul", 0, 0, 2 * gather_lanes)
    if dequant_div:
        c.add("gather", "fp16_div", 0, 0, gather_lanes)
    c.add("gather", "fp16_add", 0, 0, gather_lanes)
    c.mem("outlier_buffers", T * N * 16)  # high-path results held until gathered
    gather_cyc = T * math.ceil(N / gather_lanes)
    # weights: int part + FP16 outlier columns + per-column FP16 scales (FP16 everywhere if quantized at run time)
    if runtime_weight_quant:
        c.mem("weights", K * N * 16)
    else:
        c.mem("weights", (K - n) * N * int_bits + n * N * 16)
        c.mem("scales", N * 16)
    gemm = hp + lp if sequential else max(hp, lp)
    return c.finish(scatter_cyc + gemm + gather_cyc, weights_on_chip, (K + N) * 2)


def llm_int4(layer: Layer, **kw) -> Counts:
    kw.setdefault("int_bits", 4)
    return llm_int8(layer, **kw)
