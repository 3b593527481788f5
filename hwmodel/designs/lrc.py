"""Low-Rank Correction (Scetbon & Hensman 2024): y = W_q·Q_a(x) + U·(Vᵀ·x).

Units: an input quantizer (x FP16 → x_fmt, ``quant_lanes`` per cycle: running exponent max,
exponent difference and a shift per element); the W4A4 MX GEMM (``lanes``); conversion of its
result to FP16 (int_to_fp16 + exponent add) per output; the low-rank path on the UNquantized x in
FP16: Vᵀx (K=in, N=rank) and U(Vᵀx) (K=rank, N=out), ``lowrank_lanes`` each; an fp16_add per output.
Rank: an int, a fraction or an mxsim.Rank, resolved as lqer resolves it (default 10% of
min(in, out), floored: reading (a) of the paper's "10% rank").
``input_rotation`` ("none" | "dense" | "hadamard"): an online x <- x·R on the FP16 input before the
quantizer and the low-rank path (both read x·R); exactly one rotation stage (base.input_rotation) is
added, the input is FP16 already, and the rotation runs before the rest (cycles add)."""

from __future__ import annotations

from mxsim import Rank
from mxsim.formats import MXINT4, get_format

from .base import (low_rank_design, Counts, Layer, check_input_rotation, check_pos_int, default_rotation_lanes, fp16_gemm, mx_acc_bits,
                   mx_cast, mx_gemm, mx_storage_bits, mx_widths, resolve_rank)
from .base import input_rotation as rotation_stage
from .mxint import mx_act_bits


DEFAULT_RANK = Rank(0.1, "of_min_dim")


@low_rank_design
def lrc(layer: Layer, w_fmt=MXINT4.with_block_size(16), x_fmt=MXINT4.with_block_size(16), rank=DEFAULT_RANK,
        lanes: int = 16, lowrank_lanes: int = 16, quant_lanes: int = 1, out_lanes: int = 1,
        weights_on_chip: bool = False, input_rotation: str = "none", rotation_lanes: int | None = None) -> Counts:
    w_fmt, x_fmt = get_format(w_fmt), get_format(x_fmt)
    T, K, N = layer.tokens, layer.in_features, layer.out_features
    rank = resolve_rank(DEFAULT_RANK if rank is None else rank, layer)
    check_pos_int("lowrank_lanes", lowrank_lanes)
    check_pos_int("quant_lanes", quant_lanes)
    check_pos_int("out_lanes", out_lanes)
    rotation = check_input_rotation(input_rotation)
    params = dict(w=w_fmt.name, x=x_fmt.name, rank=rank, lanes=lanes, lowrank_lanes=lowrank_lanes)
    if rotation != "none":
        params["input_rotation"] = rotation
    c = Counts("lrc", layer, params)
    rl = rotation_lanes if rotation_lanes is not None else default_rotation_lanes(rotation, lanes)
    rot = rotation_stage(c, "rotation", T, K, rotation, rl)
    mx_cast(c, "x_quant", x_fmt, quant_lanes, 11)
    main = mx_gemm(c, "W_q", T, K, N, lanes, x_fmt, w_fmt)
    c.add("to_fp16", "int_to_fp16", mx_acc_bits(K, x_fmt, w_fmt), 0, out_lanes)
    c.add("to_fp16", "exp_add", mx_widths(x_fmt, w_fmt)["exponent_adder_bits"], 0, out_lanes)
    xv = fp16_gemm(c, "xV", T, K, rank, lowrank_lanes)
    xvu = fp16_gemm(c, "xVU", T, rank, N, lowrank_lanes)
    c.add("final_add", "fp16_add", 0, 0, out_lanes)
    we, ws = mx_storage_bits(N, K, w_fmt)
    c.mem("weights", we)
    c.mem("shared_exponents", ws)
    c.mem("lowrank_factors", (K + N) * rank * 16)
    c.mem("activation_buffers", T * K * 16 + mx_act_bits(T, K, x_fmt) + T * rank * 16)
    return c.finish(rot + max(main, xv + xvu), weights_on_chip, (K + N) * 2)
