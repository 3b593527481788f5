"""Weight-only GPTQ / AWQ: dequantize w_bits weights to FP16 at ``lanes`` per cycle, then an FP16 GEMM.

Groups: ``groups`` groups along ``group_axis``. 'in' (GPTQ/AWQ as usually run): group size
in/groups along the reduction dim, groups × out FP16 scales (+ w_bits zero points). 'out' (the
paper's awq.cpp): group size out/groups along the output dim, one FP16 scale per group, all lanes
of a cycle share it. The group size must divide the dimension.

Dequantizer per lane, ``dequant``:
* 'mul' (default): zero-point subtract int_add(w_bits+1) (if ``zero_point``), int_to_fp16, one fp16_mul.
* 'paper-fp16': int_to_fp16, fp16_mul (×CW), fp16_div (/127), fp16_mul (×group scale), as awq.cpp reads.
* 'paper-fp64': int_to_fp16, fp16_mul, fp16_to_fp64, fp64_div, fp64_mul, fp64_to_fp16 (the /127 and
  × group scale done in double: an inference from the measured area, see docs/hwmodel.md)."""

from __future__ import annotations

from .base import Counts, Layer, check_pos_int, fp16_gemm

DEQUANT = ("mul", "paper-fp16", "paper-fp64")


def gptq_awq(layer: Layer, w_bits: int = 4, groups: int | None = None, group_axis: str = "in", lanes: int = 16,
             dequant: str = "mul", zero_point: bool = True, weights_on_chip: bool = False,
             name: str = "gptq") -> Counts:
    T, K, N = layer.tokens, layer.in_features, layer.out_features
    check_pos_int("w_bits", w_bits)
    check_pos_int("lanes", lanes)
    if group_axis not in ("in", "out"):
        raise ValueError(f"group_axis must be 'in' or 'out', got {group_axis!r}")
    dim = K if group_axis == "in" else N
    if groups is None:
        groups = max(1, dim // 128)
    check_pos_int("groups", groups)
    if dim % groups:
        raise ValueError(f"groups={groups} must divide the {group_axis} dimension {dim}")
    if dequant not in DEQUANT:
        raise ValueError(f"dequant must be one of {DEQUANT}, got {dequant!r}")
    c = Counts(name, layer, dict(w_bits=w_bits, groups=groups, group_axis=group_axis, group_size=dim // groups,
                                 lanes=lanes, dequant=dequant))
    p = "dequant"
    if dequant == "mul":
        if zero_point:
            c.add(p, "int_add", w_bits + 1, 0, lanes)
        c.add(p, "int_to_fp16", w_bits + (1 if zero_point else 0), 0, lanes)
        c.add(p, "fp16_mul", 0, 0, lanes)
    elif dequant == "paper-fp16":
        c.add(p, "int_to_fp16", w_bits, 0, lanes)
        c.add(p, "fp16_mul", 0, 0, 2 * lanes)
        c.add(p, "fp16_div", 0, 0, lanes)
    else:
        c.add(p, "int_to_fp16", w_bits, 0, lanes)
        c.add(p, "fp16_mul", 0, 0, lanes)
        c.add(p, "fp16_to_fp64", 0, 0, lanes)
        c.add(p, "fp64_div", 0, 0, lanes)
        c.add(p, "fp64_mul", 0, 0, lanes)
        c.add(p, "fp64_to_fp16", 0, 0, lanes)
    c.add(p, "register_bit", 0, 0, 16)  # current group scale
    cyc = fp16_gemm(c, "fp16_gemm", T, K, N, lanes)
    c.mem("weights", K * N * w_bits)
    n_scales = groups * N if group_axis == "in" else groups
    c.mem("scales", n_scales * (16 + (w_bits if zero_point and dequant == "mul" else 0)))
    c.mem("activation_buffers", T * K * 16)
    return c.finish(cyc, weights_on_chip, (K + N) * 2)


def awq(layer: Layer, **kw) -> Counts:
    kw.setdefault("name", "awq")
    return gptq_awq(layer, **kw)
