"""LQER / L2QER on block formats: y = Q(x)·Q(W) + Q(Q(x)·A)·B (L2QER is the same hardware).

Units: main MX GEMM (x_fmt × w_fmt, ``lanes``); x·A MX GEMM (x_fmt × lr_fmt, K=in, N=rank,
``lowrank_lanes``); a re-blocking cast of xA into x_fmt; (xA)·B MX GEMM (x_fmt × lr_fmt, K=rank,
N=out, ``lowrank_lanes``); the final add of the two block results (exponent compare, exponent
difference, alignment shift, integer add) and the output cast, both at ``out_lanes`` (one output
appears every ceil(in/lanes) cycles, so 1 keeps up). ``lowrank_lanes=1`` is the paper's fold.
``input_rotation`` ("none" | "dense" | "hadamard"): an online x <- x·R on the FP16 input and an
FP16 -> x_fmt quantizer before both paths (as mxint's; both paths read Q(x·R))."""

from __future__ import annotations

import math

from mxsim.formats import BlockFP, MXIntFormat, get_format

from mxsim.accumulators import FP32, parse_accumulator

from .base import (low_rank_design, Counts, Layer, check_input_rotation, check_pos_int, clog2, mx_cast, mx_gemm, mx_out_bits,
                   mx_storage_bits, resolve_rank)
from .mxint import mx_act_bits, rotate_and_quantize

LR_BLOCK_AXES = ("last", "reduction")


def lowrank_storage(K: int, N: int, rank: int, fmt, axis: str) -> tuple[float, float]:
    """(element bits, exponent bits) of A (K×rank) and B (rank×N). axis='last': A blocked along
    rank, B along N (as published); 'reduction': A along K, B along rank (what a dot unit reads)."""
    if axis not in LR_BLOCK_AXES:
        raise ValueError(f"lr_block_axis must be one of {LR_BLOCK_AXES}, got {axis!r}")
    bs = fmt.block_size
    elems = (K + N) * rank * fmt.element_bits
    if axis == "last":
        blocks = K * math.ceil(rank / bs) + rank * math.ceil(N / bs)
    else:
        blocks = rank * math.ceil(K / bs) + N * math.ceil(rank / bs)
    return elems, blocks * fmt.scale_bits


MXINT_DEFAULTS = dict(w_fmt=MXIntFormat(4, 16), x_fmt=MXIntFormat(8, 16), lr_fmt=MXIntFormat(8, 16))
# the LQER paper's "MXINT" is the authors' block floating point (mxsim.BlockFP), blocks of 16
BLOCKFP_DEFAULTS = dict(w_fmt=BlockFP(4), x_fmt=BlockFP(8), lr_fmt=BlockFP(8))


@low_rank_design
def lqer_mxint(layer: Layer, w_fmt=MXINT_DEFAULTS["w_fmt"], x_fmt=MXINT_DEFAULTS["x_fmt"],
               lr_fmt=MXINT_DEFAULTS["lr_fmt"], rank=32, lanes: int = 16, lowrank_lanes: int = 16,
               out_lanes: int = 1, out_fmt=None, lr_block_axis: str = "last", weights_on_chip: bool = False,
               name: str = "lqer-mxint", input_rotation: str = "none", rotation_lanes: int | None = None,
               accumulator=None) -> Counts:
    """LQER on block formats; defaults OCP MXINT4/16 W, MXINT8/16 x and factors (``lqer_blockfp``:
    the same unit with the LQER paper's BlockFP defaults). ``rank``: int, fraction or mxsim.Rank.
    ``accumulator``: every MX GEMM's accumulator (base.mx_gemm; None: the aligned default); with
    fp32 the two paths' results are added by an fp32_add."""
    w_fmt, x_fmt, lr_fmt = get_format(w_fmt), get_format(x_fmt), get_format(lr_fmt)
    out_fmt = get_format(out_fmt) if out_fmt is not None else x_fmt
    rank = resolve_rank(rank, layer)
    check_pos_int("lowrank_lanes", lowrank_lanes)
    check_pos_int("out_lanes", out_lanes)
    check_input_rotation(input_rotation)
    params = dict(w=w_fmt.name, x=x_fmt.name, lr=lr_fmt.name, rank=rank, lanes=lanes,
                  lowrank_lanes=lowrank_lanes, block=x_fmt.block_size)
    if input_rotation != "none":
        params["input_rotation"] = input_rotation
    if accumulator is not None:
        params["accumulator"] = str(accumulator)
    c = Counts(name, layer, params)
    T, K, N = layer.tokens, layer.in_features, layer.out_features
    rot = rotate_and_quantize(c, T, K, x_fmt, input_rotation, rotation_lanes, lanes)
    main = mx_gemm(c, "W_q", T, K, N, lanes, x_fmt, w_fmt, accumulator=accumulator)
    xa = mx_gemm(c, "xA", T, K, rank, lowrank_lanes, x_fmt, lr_fmt, accumulator=accumulator)
    mx_cast(c, "xA_cast", x_fmt, 1, mx_out_bits(K, x_fmt, lr_fmt, accumulator))
    xab = mx_gemm(c, "xAB", T, rank, N, lowrank_lanes, x_fmt, lr_fmt, accumulator=accumulator)
    acc = max(mx_out_bits(K, x_fmt, w_fmt, accumulator), mx_out_bits(rank, x_fmt, lr_fmt, accumulator))
    if isinstance(parse_accumulator(accumulator if accumulator is not None else "exact"), FP32):
        c.add("final_add", "fp32_add", 0, 0, out_lanes)
        mx_cast(c, "out_cast", out_fmt, out_lanes, acc)
    else:
        e = max(x_fmt.scale_bits, w_fmt.scale_bits, lr_fmt.scale_bits) + 1
        c.add("final_add", "comparator", e, 0, out_lanes)
        c.add("final_add", "exp_add", e, 0, out_lanes)
        c.add("final_add", "barrel_shifter", acc, clog2(acc), out_lanes)
        c.add("final_add", "int_add", acc + 1, 0, out_lanes)
        mx_cast(c, "out_cast", out_fmt, out_lanes, acc + 1)
    we, ws = mx_storage_bits(N, K, w_fmt)
    c.mem("weights", we)
    c.mem("shared_exponents", ws)
    le, ls = lowrank_storage(K, N, rank, lr_fmt, lr_block_axis)
    c.mem("lowrank_factors", le + ls)
    c.mem("activation_buffers", mx_act_bits(T, K, x_fmt) + mx_act_bits(T, rank, x_fmt))
    x_in = mx_act_bits(1, K, x_fmt) if input_rotation == "none" else K * 16
    act = (x_in + mx_act_bits(1, N, out_fmt)) / 8
    return c.finish(rot + max(main, xa + xab), weights_on_chip, act)


@low_rank_design
def l2qer_mxint(layer: Layer, **kw) -> Counts:
    """L2QER: identical hardware to LQER (the scaling is folded into A offline)."""
    return lqer_mxint(layer, name="l2qer-mxint", **kw)


@low_rank_design
def lqer_blockfp(layer: Layer, **kw) -> Counts:
    """LQER as the paper built it: the authors' BlockFP (4-bit W, 8-bit x and factors, blocks of 16)."""
    return lqer_mxint(layer, **{"name": "lqer-blockfp", **BLOCKFP_DEFAULTS, **kw})


@low_rank_design
def l2qer_blockfp(layer: Layer, **kw) -> Counts:
    return lqer_mxint(layer, **{"name": "l2qer-blockfp", **BLOCKFP_DEFAULTS, **kw})
