"""Plain block-format WxAy (OCP MXINT, or the LQER authors' BlockFP) and plain fixed-point WxAy designs.

``mxint`` defaults to MXINT4/16 weights and MXINT8/16 activations; ``blockfp`` is the same unit
with the LQER paper's BlockFP4/BlockFP8 (blocks of 16) defaults, so a design's name says which
format it costs (the two price alike at equal widths: the model has no sign-magnitude term)."""

from __future__ import annotations

from mxsim.formats import BlockFP, MXIntFormat, get_format

from .base import (Counts, Layer, check_input_rotation, check_pos_int, clog2, default_rotation_lanes, int_gemm,
                   mx_cast, mx_gemm, mx_out_bits, mx_storage_bits)
from .base import input_rotation as rotation_stage

FP16_SIGNIFICAND_BITS = 11  # what an FP16 -> MX quantizer shifts per element (as lrc's x_quant)


def mx_act_bits(T: int, K: int, fmt) -> float:
    e, s = mx_storage_bits(T, K, fmt)
    return e + s


def rotate_and_quantize(c: Counts, T: int, K: int, x_fmt, input_rotation: str, rotation_lanes, lanes: int) -> int:
    """With an input rotation the input arrives in FP16: rotation stage (base.input_rotation), then an
    FP16 -> x_fmt quantizer at one element per cycle (mx_cast of 11-bit significands, the same x_quant
    as lrc's with quant_lanes=1). Returns the rotation's cycles (0 and nothing added for "none")."""
    if input_rotation == "none":
        return 0
    rl = rotation_lanes if rotation_lanes is not None else default_rotation_lanes(input_rotation, lanes)
    cyc = rotation_stage(c, "rotation", T, K, input_rotation, rl)
    mx_cast(c, "x_quant", x_fmt, 1, FP16_SIGNIFICAND_BITS)
    return cyc


def mxint(layer: Layer, w_fmt=MXIntFormat(4, 16), x_fmt=MXIntFormat(8, 16), lanes: int = 16, out_fmt=None,
          cast_lanes: int = 1, weights_on_chip: bool = False, input_rotation: str = "none",
          rotation_lanes: int | None = None, name: str = "mxint", accumulator=None) -> Counts:
    """MX GEMM unit + a re-blocking cast of the outputs (to ``out_fmt``, default x_fmt) at
    ``cast_lanes`` elements per cycle (one output appears every ceil(K/lanes) cycles, so 1 keeps up).

    ``input_rotation`` ("none" | "dense" | "hadamard"): an online x <- x·R on the FP16 input before
    quantization (base.input_rotation) followed by an FP16 -> x_fmt quantizer; the input then arrives
    in FP16 (16 bits per element off-chip) and the rotation runs before the GEMM (cycles add).
    ``accumulator`` (an mxsim accumulator or spelling): the GEMM's accumulator (base.mx_gemm;
    None: the aligned default)."""
    w_fmt, x_fmt = get_format(w_fmt), get_format(x_fmt)
    out_fmt = get_format(out_fmt) if out_fmt is not None else x_fmt
    check_pos_int("cast_lanes", cast_lanes)
    check_input_rotation(input_rotation)
    params = dict(w=w_fmt.name, x=x_fmt.name, lanes=lanes, block=x_fmt.block_size)
    if input_rotation != "none":
        params["input_rotation"] = input_rotation
    if accumulator is not None:
        params["accumulator"] = str(accumulator)
    c = Counts(name, layer, params)
    T, K, N = layer.tokens, layer.in_features, layer.out_features
    rot = rotate_and_quantize(c, T, K, x_fmt, input_rotation, rotation_lanes, lanes)
    cyc = rot + mx_gemm(c, "gemm", T, K, N, lanes, x_fmt, w_fmt, accumulator=accumulator)
    if getattr(w_fmt, "two_level", False) or getattr(x_fmt, "two_level", False):
        # NVFP4 two level: the per-tensor scales' product alpha (one FP32 constant per GEMM)
        # multiplies every output once, as cuBLAS applies alpha
        c.add("tensor_scale", "fp32_mul", 0, 0, cast_lanes)
    mx_cast(c, "out_cast", out_fmt, cast_lanes, mx_out_bits(K, x_fmt, w_fmt, accumulator))
    we, ws = mx_storage_bits(N, K, w_fmt)
    c.mem("weights", we)
    c.mem("shared_exponents", ws)
    c.mem("activation_buffers", mx_act_bits(T, K, x_fmt))
    x_in = mx_act_bits(1, K, x_fmt) if input_rotation == "none" else K * 16
    act = (x_in + mx_act_bits(1, N, out_fmt)) / 8
    return c.finish(cyc, weights_on_chip, act)


def blockfp(layer: Layer, w_fmt=BlockFP(4), x_fmt=BlockFP(8), **kw) -> Counts:
    """The plain block unit as the LQER paper built it: BlockFP4 weights, BlockFP8 activations, blocks of 16."""
    return mxint(layer, w_fmt=w_fmt, x_fmt=x_fmt, **{"name": "blockfp", **kw})


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
