"""Online input rotation x <- x·R (``input_rotation``) in hwmodel's designs, with hand-computed costs.

FPGA unit costs used below (hwmodel/costs/fpga_lut.csv): fp16_mul 115, fp16_add 143,
max_tree(8 bits, 2 inputs) 8, exp_add(8) 8, barrel shifter a·ceil(b/2) LUT (11 data bits, 4 shift
bits: 22). A dense rotation of K-wide inputs with L lanes is one FP16 GEMM unit: L fp16_mul,
(L-1)+1 fp16_add, a 16-bit accumulator register; 16 lanes: 16·115 + 16·143 = 4128 LUT.
"""

import pytest

from hwmodel.designs import build
from hwmodel.designs.base import Layer
from hwmodel.report import model_report
from mxsim.formats import MXINT4, MXINT8, BlockFP

TINY = Layer(1, 32, 8)  # x 1×32 · W 32×8
B4, B8 = BlockFP(4, block_size=16), BlockFP(8, block_size=16)
M4, M8 = MXINT4.with_block_size(16), MXINT8.with_block_size(16)
DENSE_16_LANES_LUT = 16 * 115 + 16 * 143  # 4128
X_QUANT_LUT = 8 + 8 + 11 * 2  # max_tree(8,2) + exp_add(8) + barrel_shifter(11,4) = 38

ROTATABLE = {
    "mxint": dict(w_fmt=M4, x_fmt=M8),
    "lqer-mxint": dict(w_fmt=M4, x_fmt=M8, lr_fmt=M8, rank=2),
    "l2qer-mxint": dict(w_fmt=M4, x_fmt=M8, lr_fmt=M8, rank=2),
    "lrc": dict(w_fmt=M4, x_fmt=M4, rank=2),
}


def multiset(c):
    """{(path, component, a, b): count} of a design's counts."""
    return {(r.path, r.component, r.a, r.b): r["count"] for _, r in c.table().iterrows()}


def delta(rot, base):
    a, b = multiset(rot), multiset(base)
    out = {}
    for k in set(a) | set(b):
        d = a.get(k, 0) - b.get(k, 0)
        if d:
            out[k] = d
    return out


@pytest.mark.parametrize("design", sorted(ROTATABLE))
def test_none_leaves_every_design_unchanged(design):
    kw = ROTATABLE[design]
    a, b = build(design, TINY, **kw), build(design, TINY, input_rotation="none", **kw)
    assert multiset(a) == multiset(b)
    assert a.memory_bits == b.memory_bits and a.memory_bits["rotation"] == 0
    assert (a.cycles, a.offchip_bytes_per_token, a.params) == (b.cycles, b.offchip_bytes_per_token, b.params)
    assert a.summary("fpga")["area"] == b.summary("fpga")["area"]
    assert a.summary("asic")["area"] == b.summary("asic")["area"]


def test_none_keeps_hand_numbers_of_mxint():
    # the plain MX unit of tests/hwmodel/test_designs.py: 16 int_mul 8x4 ... and 187 bytes per token
    c = build("mxint", TINY, w_fmt=B4, x_fmt=B8, input_rotation="none")
    assert c.offchip_bytes_per_token == 187
    assert c.cycles == 16


def test_dense_on_lrc_adds_exactly_one_fp16_gemm_stage():
    base = build("lrc", TINY, **ROTATABLE["lrc"])
    rot = build("lrc", TINY, input_rotation="dense", **ROTATABLE["lrc"])
    # fp16_gemm(T=1, K=32, N=32, lanes=16): 16 mul, 15 tree adds + 1 accumulate add, 16 register bits
    assert delta(rot, base) == {("rotation", "fp16_mul", 0, 0): 16, ("rotation", "fp16_add", 0, 0): 16,
                                ("rotation", "register_bit", 0, 0): 16}
    assert rot.summary("fpga")["area"] - base.summary("fpga")["area"] == DENSE_16_LANES_LUT
    # R: 32·32 FP16 = 16384 bits, streamed with the weights; FP16 input buffer 1·32·16 = 512 bits
    assert rot.memory_bits["rotation"] == 16384
    assert rot.memory_bits["activation_buffers"] - base.memory_bits["activation_buffers"] == 512
    assert rot.offchip_bytes_per_token - base.offchip_bytes_per_token == 16384 / 8
    # runs before the rest: 1 token · 32 outputs · ceil(32/16) = 64 cycles added
    assert rot.cycles - base.cycles == 64
    assert rot.params["input_rotation"] == "dense"


def test_dense_rotation_lanes():
    base = build("lrc", TINY, **ROTATABLE["lrc"])
    rot = build("lrc", TINY, input_rotation="dense", rotation_lanes=4, **ROTATABLE["lrc"])
    assert delta(rot, base) == {("rotation", "fp16_mul", 0, 0): 4, ("rotation", "fp16_add", 0, 0): 4,
                                ("rotation", "register_bit", 0, 0): 16}
    assert rot.cycles - base.cycles == 32 * 8  # 32 outputs · ceil(32/4)


@pytest.mark.parametrize("design", ["mxint", "lqer-mxint", "l2qer-mxint"])
def test_dense_on_mx_designs_adds_gemm_and_input_quantizer(design):
    kw = ROTATABLE[design]
    base, rot = build(design, TINY, **kw), build(design, TINY, input_rotation="dense", **kw)
    # + the FP16 -> MXINT8/16 quantizer (x now arrives in FP16): running max of 8-bit exponents over
    # 2 inputs, one exponent difference, one 11-bit shift, block buffer 16·8 + 8 = 136 register bits
    assert delta(rot, base) == {("rotation", "fp16_mul", 0, 0): 16, ("rotation", "fp16_add", 0, 0): 16,
                                ("rotation", "register_bit", 0, 0): 16, ("x_quant", "max_tree", 8, 2): 1,
                                ("x_quant", "exp_add", 8, 0): 1, ("x_quant", "barrel_shifter", 11, 4): 1,
                                ("x_quant", "register_bit", 0, 0): 136}
    assert rot.summary("fpga")["area"] - base.summary("fpga")["area"] == DENSE_16_LANES_LUT + X_QUANT_LUT  # 4166
    assert rot.memory_bits["rotation"] == 32 * 32 * 16
    # off-chip: + R (2048 bytes); x in FP16 (64 bytes) instead of MXINT8/16 (32 + 2 exponents = 34 bytes)
    assert rot.offchip_bytes_per_token - base.offchip_bytes_per_token == pytest.approx(2048 + 64 - 34)
    assert rot.cycles - base.cycles == 64


def test_hadamard_counts():
    L64 = Layer(1, 64, 16)
    kw = dict(w_fmt=M4, x_fmt=M4, rank=2)
    base = build("lrc", L64, **kw)
    rot = build("lrc", L64, input_rotation="hadamard", **kw)
    # default 2 lanes = one butterfly (add + subtract) in each of log2(64) = 6 stages: 12 fp16_add
    assert delta(rot, base) == {("rotation", "fp16_add", 0, 0): 12}
    assert rot.summary("fpga")["area"] - base.summary("fpga")["area"] == 12 * 143
    assert rot.memory_bits["rotation"] == 0  # ±1 pattern is wiring
    # delay lines for strides 2, 4, 8, 16, 32 = 62 FP16 values
    assert rot.memory_bits["activation_buffers"] - base.memory_bits["activation_buffers"] == 62 * 16
    assert rot.cycles - base.cycles == 32  # 64 elements at 2 per cycle
    r8 = build("lrc", L64, input_rotation="hadamard", rotation_lanes=8, **kw)
    assert delta(r8, base) == {("rotation", "fp16_add", 0, 0): 6 * 8}
    assert r8.memory_bits["activation_buffers"] - base.memory_bits["activation_buffers"] == (8 + 16 + 32) * 16
    assert r8.cycles - base.cycles == 8


def test_hadamard_on_mxint():
    L64 = Layer(1, 64, 16)
    base = build("mxint", L64, w_fmt=M4, x_fmt=M8)
    rot = build("mxint", L64, w_fmt=M4, x_fmt=M8, input_rotation="hadamard")
    assert rot.summary("fpga")["area"] - base.summary("fpga")["area"] == 12 * 143 + X_QUANT_LUT


def test_hadamard_needs_power_of_two():
    with pytest.raises(ValueError, match="power-of-two.*dense"):
        build("lrc", Layer(1, 576, 64), input_rotation="hadamard")
    with pytest.raises(ValueError, match="rotation_lanes"):
        build("lrc", Layer(1, 64, 16), input_rotation="hadamard", rotation_lanes=3)
    with pytest.raises(ValueError, match="rotation_lanes"):
        build("lrc", Layer(1, 64, 16), input_rotation="dense", rotation_lanes=0)


@pytest.mark.parametrize("design", sorted(ROTATABLE))
@pytest.mark.parametrize("bad", ["quarot", "Dense", None, 1])
def test_bad_value_names_argument_and_choices(design, bad):
    with pytest.raises(ValueError) as e:
        build(design, TINY, input_rotation=bad, **ROTATABLE[design])
    msg = str(e.value)
    assert "input_rotation" in msg
    for allowed in ("none", "dense", "hadamard"):
        assert allowed in msg


def test_whole_model_time_shared_unit_adds_one_rotation_stage():
    # every SmolLM2 linear's unit grows by the same 4166 LUT (the GEMM's size does not depend on K),
    # so the time-shared unit (the largest linear's) grows by exactly that
    kw = {"w_fmt": MXINT4.with_block_size(32), "x_fmt": MXINT4.with_block_size(32)}
    a = model_report("smollm2-135m", ["mxint"], params={"mxint": kw}).totals.iloc[0]
    b = model_report("smollm2-135m", ["mxint"], params={"mxint": dict(kw, input_rotation="dense")}).totals.iloc[0]
    assert b["area"] - a["area"] == DENSE_16_LANES_LUT + X_QUANT_LUT
    # R (FP16 K×K) is streamed per linear: 30 blocks × (q,k,v,o,gate,up: 6 × 576² + down: 1536²) × 16 bits
    assert b["mem_rotation_bits"] == 30 * (6 * 576 * 576 + 1536 * 1536) * 16
