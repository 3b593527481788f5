"""Plain block-format WxAy (MXINT / the authors' BlockFP) and plain fixed-point WxAy designs."""

from __future__ import annotations

from mxsim.formats import BlockFP, get_format

from .base import Counts, Layer, check_pos_int, clog2, int_gemm, mx_acc_bits, mx_cast, mx_gemm, mx_storage_bits


def mx_act_bits(T: int, K: int, fmt) -> float:
    e, s = mx_storage_bits(T, K, fmt)
    return e + s


def mxint(layer: Layer, w_fmt=BlockFP(4), x_fmt=BlockFP(8), lanes: int = 16, out_fmt=None,
          cast_lanes: int = 1, weights_on_chip: bool = False) -> Counts:
    """MX GEMM unit + a re-blocking cast of the outputs (to ``out_fmt``, default x_fmt) at
    ``cast_lanes`` elements per cycle (one output appears every ceil(K/lanes) cycles, so 1 keeps up)."""
    w_fmt, x_fmt = get_format(w_fmt), get_format(x_fmt)
    out_fmt = get_format(out_fmt) if out_fmt is not None else x_fmt
    check_pos_int("cast_lanes", cast_lanes)
    c = Counts("mxint", layer, dict(w=w_fmt.name, x=x_fmt.name, lanes=lanes, block=x_fmt.block_size))
    T, K, N = layer.tokens, layer.in_features, layer.out_features
    cyc = mx_gemm(c, "gemm", T, K, N, lanes, x_fmt, w_fmt)
    mx_cast(c, "out_cast", out_fmt, cast_lanes, mx_acc_bits(K, x_fmt, w_fmt))
    we, ws = mx_storage_bits(N, K, w_fmt)
    c.mem("weights", we)
    c.mem("shared_exponents", ws)
    c.mem("activation_buffers", mx_act_bits(T, K, x_fmt))
    act = (mx_act_bits(1, K, x_fmt) + mx_act_bits(1, N, out_fmt)) / 8
    return c.finish(cyc, weights_on_chip, act)


def int_wxay(layer: Layer, w_bits: int = 4, x_bits: int = 8, lanes: int = 16, acc_bits: int | None = None,
             out_lanes: int = 1, weights_on_chip: bool = False) -> Counts:
    """Plain fixed-point WxAy (per-channel scales): int GEMM unit, then per output
    int_to_fp16(acc) and one fp16_mul by the combined per-token × per-channel scale."""
    check_pos_int("w_bits", w_bits)
    check_pos_int("x_bits", x_bits)
    check_pos_int("out_lanes", out_lanes)
    c = Counts("int", layer, dict(w_bits=w_bits, x_bits=x_bits, lanes=lanes))
    T, K, N = layer.tokens, layer.in_features, layer.out_features
    cyc = int_gemm(c, "gemm", T, K, N, lanes, x_bits, w_bits, acc_bits)
    acc = acc_bits or (x_bits + w_bits + clog2(K))
    c.add("dequant", "int_to_fp16", acc, 0, out_lanes)
    c.add("dequant", "fp16_mul", 0, 0, out_lanes)
    c.mem("weights", K * N * w_bits)
    c.mem("scales", N * 16)
    c.mem("activation_buffers", T * K * x_bits)
    return c.finish(cyc, weights_on_chip, (K * x_bits + N * 16) / 8)
