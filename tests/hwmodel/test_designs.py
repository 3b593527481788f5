"""Hand-calculated counts for a tiny layer: x (1×32) · W (32×8), blocks of 16, rank 2, 16 lanes.

Notation: cycles of a unit = tokens · N · ceil(K / lanes). An L-input adder tree starting at
width p has L/2 adders of p+1 bits, L/4 of p+2, ... (L-1 in all).

Block-format products: an a-bit by b-bit signed product needs a + b - 1 bits (the emulator's and
the RTL's width): MXINT/BlockFP codes are symmetric, |code| <= 2^(a-1) - 1, so
|product| <= (2^(a-1) - 1)(2^(b-1) - 1) < 2^(a+b-2): a+b-2 magnitude bits and a sign."""

import numpy as np
import pytest

from mxsim import Rank
from mxsim.formats import MXINT4, BlockFP
from hwmodel.designs import build
from hwmodel.designs.base import Layer, mx_gemm, Counts

TINY = Layer(1, 32, 8)
B4, B8 = BlockFP(4, block_size=16), BlockFP(8, block_size=16)


def counts(c, component):
    t = c.table()
    return t[t.component == component].groupby(["a", "b"])["count"].sum().to_dict()


def n_of(c, component):
    return c.table().query("component == @component")["count"].sum()


def test_fp16():
    c = build("fp16", TINY)
    assert n_of(c, "fp16_mul") == 16  # one per lane
    assert n_of(c, "fp16_add") == 16  # 15 in the tree + 1 accumulate
    assert c.cycles == 16  # 1 token · 8 outputs · ceil(32/16)=2
    assert c.memory_bits["weights"] == 32 * 8 * 16  # 4096
    assert c.memory_bits["activation_buffers"] == 32 * 16  # 512
    assert c.offchip_bytes_per_token == 4096 / 8 + (32 + 8) * 2  # 512 + 80 = 592
    # FPGA: 16 · 115 (fp16_mul) + 16 · 143 (fp16_add) = 4128 LUT
    assert c.summary("fpga")["area"] == 4128


def test_mxint():
    c = build("mxint", TINY, w_fmt=B4, x_fmt=B8)
    assert counts(c, "int_mul") == {(8, 4): 16}
    # one 16-input tree from 8+4-1 = 11-bit products: 8 x 12b, 4 x 13b, 2 x 14b, 1 x 15b
    assert c.adders() == {12: 8, 13: 4, 14: 2, 15: 1}
    # accumulator: 11 + log2(16)=4 + log2(#blocks=2)=1 + 1 guard = 17 bits; exponents 8+1 = 9 bits
    assert counts(c, "fixed_acc") == {(17, 0): 1}
    # exp_add(9) x2 (sum of the shared exponents, shift amount); out_cast exp_add(8) x1
    assert counts(c, "exp_add") == {(9, 0): 2, (8, 0): 1}
    assert counts(c, "comparator") == {(9, 0): 1}
    # alignment shifter of the 17-bit accumulator (5 shift bits) + the output cast's shifter
    assert counts(c, "barrel_shifter") == {(17, 5): 2}
    assert counts(c, "max_tree") == {(8, 2): 1}
    assert c.cycles == 16
    # W: 32·8 elements x 4 bits = 1024; exponents: 8 columns x 2 blocks x 8 bits = 128
    assert c.memory_bits["weights"] == 1024 and c.memory_bits["shared_exponents"] == 128
    # x: 32 x 8 bits + 2 blocks x 8 = 272
    assert c.memory_bits["activation_buffers"] == 272
    # off-chip: (1024+128)/8 = 144 + x 272/8 = 34 + y (8 x 8 + 1 block x 8)/8 = 9  -> 187
    assert c.offchip_bytes_per_token == 187
    # registers: exponent 9 + cast block 16·8+8 = 136 + accumulator 17 = 162
    assert c.register_bits() == 162


def test_mxfp_pair_widths_are_mxsims():
    """MXFP8_E4M3 x MXFP4_E2M1 (OCP MX v1.0 element formats): hwmodel prices the widths of
    mxsim.datapath_widths, and both equal the hand derivation.

    An MXFP element's integer view is its value over the smallest subnormal step
    2^(emin - mantissa_bits), emin = 1 - bias:
      E4M3: bias 7, emin -6, 3 mantissa bits -> step 2^-9; max 448 = 448 * 2^9 = 229376 < 2^18:
            18 magnitude bits + sign = 19-bit operand
      E2M1: bias 1, emin 0, 1 mantissa bit -> step 2^-1; max 6 = 12 < 2^4: 4 bits + sign = 5
    Largest product 229376 * 12 = 2752512, 2^21 <= it < 2^22: 22 magnitude bits + sign = 23 bits
    (MXINT's a + b - 1 gives 23 here too, by coincidence: mxsim sizes MXFP products from the maxima).
    A 16-input tree (block 16): 8 x 24b, 4 x 25b, 2 x 26b, 1 x 27b, sum 27 bits; block 32: one
    more level, 28 bits. Exponents: E8M0 + E8M0 -> 9-bit adder. Aligned accumulator as MXINT's
    (test_mxint): sum 27 + log2(2 blocks) 1 + 1 guard = 29 bits."""
    import mxsim
    from mxsim.formats import MXFP4_E2M1, MXFP8_E4M3

    x, w = MXFP8_E4M3.with_block_size(16), MXFP4_E2M1.with_block_size(16)
    hand = {"operand_bits": [19, 5], "product_bits": 23, "adder_tree_levels": 4,
            "adder_tree_widths": [24, 25, 26, 27], "sum_bits": 27, "exponent_adder_bits": 9, "lanes": 16}
    assert mxsim.datapath_widths(x, w) == hand
    wide = mxsim.datapath_widths(MXFP8_E4M3, MXFP4_E2M1)  # OCP's block of 32
    assert (wide["adder_tree_widths"], wide["sum_bits"]) == ([24, 25, 26, 27, 28], 28)
    c = build("mxint", TINY, w_fmt=w, x_fmt=x)
    assert counts(c, "int_mul") == {(19, 5): 16}  # x's 19-bit view times w's 5-bit one, 16 lanes
    assert c.adders() == {24: 8, 25: 4, 26: 2, 27: 1}
    assert counts(c, "fixed_acc") == {(29, 0): 1}
    assert counts(c, "exp_add") == {(9, 0): 2, (8, 0): 1}  # as test_mxint: 2 in the unit, 1 in the out cast


def test_int():
    c = build("int", TINY, w_bits=4, x_bits=8)
    assert counts(c, "int_mul") == {(8, 4): 16}
    assert c.adders() == {13: 8, 14: 4, 15: 2, 16: 1}
    assert counts(c, "fixed_acc") == {(17, 0): 1}  # 8 + 4 + log2(32) = 17
    assert counts(c, "int_to_fp16") == {(17, 0): 1} and n_of(c, "fp16_mul") == 1
    assert c.memory_bits["scales"] == 8 * 16


@pytest.mark.parametrize("name", ["lqer-mxint", "l2qer-mxint"])
def test_lqer_mxint(name):
    c = build(name, TINY, w_fmt=B4, x_fmt=B8, lr_fmt=B8, rank=2)
    # W_q 16 x (8x4); xA 16 x (8x8); (xA)B 16 x (8x8)
    assert counts(c, "int_mul") == {(8, 4): 16, (8, 8): 32}
    # W_q tree from 8+4-1 = 11 bits: 12:8 13:4 14:2 15:1; xA and xAB trees from 8+8-1 = 15 bits:
    # 16:8 17:4 18:2 19:1 each; final add: 22 bits (max acc 21 + 1)
    assert c.adders() == {12: 8, 13: 4, 14: 2, 15: 1, 16: 16, 17: 8, 18: 4, 19: 2, 22: 1}
    # accumulators: W_q 17; xA 15+4+log2(2 blocks)1+1 = 21; xAB (K=2, one block: clog2 1 = 1) 15+4+1+1 = 21
    assert counts(c, "fixed_acc") == {(17, 0): 1, (21, 0): 2}
    # exponent handling: 2 exp_add(9) per MX unit (3 units) + 1 in the final add; 2 casts x exp_add(8)
    assert counts(c, "exp_add") == {(9, 0): 7, (8, 0): 2}
    assert counts(c, "comparator") == {(9, 0): 4}
    assert counts(c, "max_tree") == {(8, 2): 2}
    # cycles: W_q 8·2 = 16; xA 2·2 = 4 then xAB 8·ceil(2/16) = 8 -> max(16, 12) = 16
    assert c.cycles == 16
    # A (32x2) + B (2x8): 40·2 elements x 8 bits = 640; blocks along the last dim (as published):
    # A 32 rows x 1 block + B 2 rows x 1 block = 34 blocks x 8 = 272 -> 912
    assert c.memory_bits["lowrank_factors"] == 912
    # reduction-axis blocking: A 2 x 2 blocks + B 8 x 1 = 12 blocks x 8 = 96 -> 736
    r = build(name, TINY, w_fmt=B4, x_fmt=B8, lr_fmt=B8, rank=2, lr_block_axis="reduction")
    assert r.memory_bits["lowrank_factors"] == 736
    # x (272) + xA: 2 x 8 + 1 block x 8 = 24 -> 296
    assert c.memory_bits["activation_buffers"] == 296


def test_lqer_mxint_fold_to_one_lane():
    c = build("lqer-mxint", TINY, w_fmt=B4, x_fmt=B8, lr_fmt=B8, rank=2, lowrank_lanes=1)
    assert counts(c, "int_mul") == {(8, 4): 16, (8, 8): 2}
    # 1-lane units have no tree but sum each block over 16 cycles: fixed_acc(15 + 4 = 19) each
    assert counts(c, "fixed_acc") == {(17, 0): 1, (21, 0): 2, (19, 0): 2}
    # xA 2·32 = 64 cycles, xAB 8·2 = 16 -> 80 > 16
    assert c.cycles == 80


def test_lqer_fixed():
    c = build("lqer-fixed", TINY, w_bits=4, x_bits=16, lr_bits=16, rank=2)
    assert counts(c, "int_mul") == {(16, 4): 16, (16, 16): 32}
    # W_q tree from 20: 21:8 22:4 23:2 24:1; xA tree from 32: 33:8 34:4 35:2 36:1;
    # xAB (K = rank = 2) sums at most 2 products: widths capped at 32 + log2(2) = 33 -> 15 x 33b;
    # final add: acc = max(16+4+5=25, 33) = 33 -> one 33-bit adder.  33: 8 + 15 + 1 = 24
    assert c.adders() == {21: 8, 22: 4, 23: 2, 24: 1, 33: 24, 34: 4, 35: 2, 36: 1}
    assert counts(c, "fixed_acc") == {(25, 0): 1, (37, 0): 1, (33, 0): 1}  # xA: 32 + 5 = 37
    assert c.memory_bits["lowrank_factors"] == (32 + 8) * 2 * 16  # 1280
    assert c.cycles == 16
    # the paper's truncation to 16 bits caps every tree adder at 16 bits
    p = build("lqer-fixed", TINY, rank=2, acc_bits=16, add_lanes=16)
    assert p.adders() == {16: 15 * 3 + 16}


def test_llm_int8():
    c = build("llm.int8", TINY, outliers=4)
    # scatter: 1 comparator (15-bit |x|), 2 muxes, 2 address counters of log2(32) = 5 bits
    assert counts(c, "comparator") == {(15, 0): 1}
    assert counts(c, "mux2") == {(16, 0): 2}
    # FP16 outlier unit 16 lanes: 16 mul + 16 add; quantizer 16 fp16_mul; gather 2 fp16_mul + 1 fp16_add
    assert n_of(c, "fp16_mul") == 16 + 16 + 2
    assert n_of(c, "fp16_add") == 16 + 1
    assert n_of(c, "fp16_div") == 1  # per-token scale 127/absmax
    assert counts(c, "fp16_to_int") == {(8, 0): 16}
    assert counts(c, "int_mul") == {(8, 8): 16}
    # int tree from 16: 17:8 18:4 19:2 20:1; counters 5:2
    assert c.adders() == {5: 2, 17: 8, 18: 4, 19: 2, 20: 1}
    assert counts(c, "fixed_acc") == {(21, 0): 1}  # 16 + log2(32)
    # weights: 28·8·8 + 4·8·16 = 1792 + 512 = 2304; column scales 8·16
    assert c.memory_bits["weights"] == 2304 and c.memory_bits["scales"] == 128
    # outlier buffers: 4 indices x 5 bits + 4 x 16 (x_hi) + 8 x 16 (FP16 results) = 212
    assert c.memory_bits["outlier_buffers"] == 212
    # cycles: scatter 32 + max(FP16 8·ceil(4/16)=8, int 8·ceil(28/16)=16) + gather 8 = 56
    assert c.cycles == 56
    z = build("llm.int8", TINY, outliers=0)
    assert n_of(z, "fp16_mul") == 18  # no outlier unit


def test_llm_int4():
    c = build("llm.int4", TINY, outliers=4)
    assert counts(c, "int_mul") == {(4, 4): 16}
    assert c.adders() == {5: 2, 9: 8, 10: 4, 11: 2, 12: 1}
    assert counts(c, "fixed_acc") == {(13, 0): 1}


def test_gptq():
    c = build("gptq", TINY, w_bits=4, groups=2)  # groups along in: group size 16
    assert counts(c, "int_add") == {(5, 0): 16}  # zero-point subtract per lane
    assert counts(c, "int_to_fp16") == {(5, 0): 16}
    assert n_of(c, "fp16_mul") == 16 + 16 and n_of(c, "fp16_add") == 16
    # scales: 2 groups x 8 columns x (16-bit scale + 4-bit zero) = 320
    assert c.memory_bits["scales"] == 320 and c.memory_bits["weights"] == 1024
    p = build("awq", TINY, w_bits=4, groups=2, group_axis="out", dequant="paper-fp64", zero_point=False)
    for comp in ("fp16_to_fp64", "fp64_div", "fp64_mul", "fp64_to_fp16"):
        assert n_of(p, comp) == 16
    assert p.memory_bits["scales"] == 2 * 16  # one scale per group of 4 output columns


def test_lrc():
    c = build("lrc", TINY, w_fmt=MXINT4.with_block_size(16), x_fmt=MXINT4.with_block_size(16), rank=2)
    assert counts(c, "int_mul") == {(4, 4): 16}
    # 4+4-1 = 7-bit products: 8:8 9:4 10:2 11:1
    assert c.adders() == {8: 8, 9: 4, 10: 2, 11: 1}
    # low-rank path in FP16 on unquantized x: 2 units x (16 mul + 16 add) + final fp16_add
    assert n_of(c, "fp16_mul") == 32 and n_of(c, "fp16_add") == 33
    assert counts(c, "int_to_fp16") == {(13, 0): 1}  # acc 7+4+1+1 = 13
    assert c.memory_bits["lowrank_factors"] == (32 + 8) * 2 * 16
    # x FP16 512 + x quantized 32·4 + 2·8 = 144 + xV 2·16 = 32 -> 688
    assert c.memory_bits["activation_buffers"] == 688
    assert c.cycles == 16


def test_lrc_default_rank_is_lqers_floor_reading():
    # 10% of min(4096, 11008) = 409.6: lqer floors (mxsim.Rank of_min_dim) -> 409, not round()'s 410
    c = build("lrc", Layer(1, 4096, 11008))
    assert c.params["rank"] == 409
    # TINY: 10% of 8 = 0.8 floors to 0 and is clamped to the smallest rank, 1
    assert build("lrc", TINY).params["rank"] == 1
    # a fraction or an mxsim.Rank is read the same way by every low-rank design
    assert build("lqer-mxint", Layer(1, 64, 45), rank=0.1).params["rank"] == 4  # floor(4.5)
    assert build("lqer-fixed", Layer(1, 64, 45), rank=Rank(0.5, "of_params")).params["rank"] == 13  # floor(64·45/109/2)


def test_design_names_say_which_format_is_costed():
    # "mxint" designs cost OCP MXINT (blocks of 16); the "blockfp" ones the LQER paper's BlockFP
    m, b = build("mxint", TINY), build("blockfp", TINY)
    assert (m.params["w"], m.params["x"], m.design) == ("MXINT4", "MXINT8", "mxint")
    assert (b.params["w"], b.params["x"], b.design) == ("BlockFP4", "BlockFP8", "blockfp")
    lq, lb = build("lqer-mxint", TINY, rank=2), build("lqer-blockfp", TINY, rank=2)
    assert (lq.params["lr"], lb.params["lr"], lb.design) == ("MXINT8", "BlockFP8", "lqer-blockfp")
    # equal element and scale widths, equal block size: the model prices the two families alike
    assert m.table().equals(b.table()) and lq.table().equals(lb.table())


def test_numpy_integers_are_integers():
    c = build("lqer-mxint", Layer(np.int64(1), np.int32(32), np.int64(8)), rank=np.int64(2), lanes=np.int64(16))
    assert c.params["rank"] == 2 and c.cycles == 16


def test_more_outliers_never_cost_less():
    layer = Layer(1, 64, 16)
    prev = None
    for n in sorted(set(range(0, 20)) | set(range(20, 65, 4)) | {63, 64}):
        c = build("llm.int8", layer, outliers=n)
        s = c.summary("fpga")
        store = sum(c.memory_bits.values())
        if prev is not None:
            assert s["area"] >= prev[0]
            assert store > prev[1]
        prev = (s["area"], store)


@pytest.mark.parametrize("design", ["lqer-mxint", "l2qer-mxint", "lqer-fixed", "lrc"])
def test_higher_rank_never_costs_less(design):
    layer = Layer(1, 64, 32)
    prev = None
    for r in (1, 2, 4, 8, 16, 32):
        c = build(design, layer, rank=r)
        s = c.summary("asic")
        if prev is not None:
            assert s["area"] >= prev[0]
            assert c.memory_bits["lowrank_factors"] > prev[1]
            assert s["cycles"] >= prev[2]
        prev = (s["area"], c.memory_bits["lowrank_factors"], s["cycles"])


def test_bad_inputs():
    with pytest.raises(ValueError, match="tokens"):
        Layer(-1, 32, 8)
    with pytest.raises(ValueError, match="in_features"):
        Layer(1, 0, 8)
    with pytest.raises(ValueError, match="design"):
        build("nope", TINY)
    with pytest.raises(ValueError, match="block_size"):
        mx_gemm(Counts("x", TINY), "p", 1, 32, 8, 12, B8, B4)  # 12 lanes vs blocks of 16
    with pytest.raises(ValueError, match="block_size"):
        build("mxint", TINY, x_fmt=B8, w_fmt=BlockFP(4, block_size=32))
    with pytest.raises(ValueError, match="groups"):
        build("gptq", TINY, groups=3)
    with pytest.raises(ValueError, match="outliers"):
        build("llm.int8", TINY, outliers=-1)
    with pytest.raises(ValueError, match="outliers"):
        build("llm.int8", TINY, outliers=33)
    with pytest.raises(ValueError, match="rank"):
        build("lqer-mxint", TINY, rank=0)
    with pytest.raises(ValueError, match="lanes"):
        build("fp16", TINY, lanes=0)
    with pytest.raises(ValueError, match="tech"):
        build("fp16", TINY).summary("quantum")


# ---- the accumulator choice (issue 15), same TINY layer and BlockFP8 x BlockFP4 blocks of 16:
# block sum 11 + 4 = 15 bits (mxsim.datapath_widths' sum_bits); the out cast reads the accumulator
def test_mxint_fixed_point_accumulator_hand_count():
    c = build("mxint", TINY, w_fmt=B4, x_fmt=B8, accumulator="fixed:24:8")
    assert counts(c, "fixed_acc") == {(24, 0): 1}
    # alignment of the block sum to the binary point: 24 data bits, clog2(24) = 5 shift bits;
    # the out cast's shifter reads the 24-bit accumulator too
    assert counts(c, "barrel_shifter") == {(24, 5): 2}
    # saturation: overflow detect + clamp mux on the shifted sum and on the add (2 each, 24 bits)
    assert counts(c, "comparator") == {(24, 0): 2}
    assert counts(c, "mux2") == {(24, 0): 2}
    # one exponent adder (E + F) and the out cast's; no exponent register
    assert counts(c, "exp_add") == {(9, 0): 1, (8, 0): 1}
    assert c.register_bits() == 16 * 8 + 8 + 24  # the cast block buffer and the accumulator; no exponent
    wrap = build("mxint", TINY, w_fmt=B4, x_fmt=B8, accumulator="fixed:24:8:wrap")
    assert counts(wrap, "comparator") == {} and counts(wrap, "mux2") == {}
    # FPGA LUTs: saturate costs the two comparators + two muxes more than wrap; the table's
    # comparator and mux2 are ceil(a/2) LUTs: 2 x 12 + 2 x 12 = 48
    assert c.summary("fpga")["area"] - wrap.summary("fpga")["area"] == 48


def test_mxint_fp32_accumulator_hand_count():
    c = build("mxint", TINY, w_fmt=B4, x_fmt=B8, accumulator="fp32")
    # one step per block: normalise the 15-bit block sum (leading one, 15 x clog2(15)=4 shifter),
    # its exponent (exp_add 9, twice: product exponent, normalisation), one fused fp32_add, 32 bits
    assert n_of(c, "fp32_add") == 1
    assert counts(c, "leading_one") == {(15, 0): 1}
    assert counts(c, "barrel_shifter") == {(15, 4): 1, (24, 5): 1}  # + out cast of the 24-bit significand
    assert c.register_bits() == 32 + 16 * 8 + 8
    lanes4 = build("mxint", TINY, w_fmt=B4, x_fmt=B8, accumulator="fp32:4")
    # fp32:4: four 4-input trees (13-bit sums) and four chained fused adds per cycle
    assert n_of(lanes4, "fp32_add") == 4
    assert lanes4.adders() == {12: 8, 13: 4}
    assert counts(lanes4, "leading_one") == {(13, 0): 4}


def test_accumulator_widths_refused_as_mxsim_refuses_them():
    with pytest.raises(ValueError, match=r"accumulator fixed:12:0 \(unit gemm\): total_bits 12 is narrower .*15 bits"):
        build("mxint", TINY, w_fmt=B4, x_fmt=B8, accumulator="fixed:12:0")
    with pytest.raises(ValueError, match=r"accumulator.*'float' is the fake-quantize emulation"):
        build("mxint", TINY, w_fmt=B4, x_fmt=B8, accumulator="float")
    with pytest.raises(ValueError, match=r"accumulator must be one of"):
        build("lqer-mxint", TINY, rank=2, accumulator="fixed")
    # the low-rank units are MXINT8 x MXINT8: 15 + 4 = 19 bits, so 16 fits the main unit only
    with pytest.raises(ValueError, match=r"unit xA.*19 bits"):
        build("lqer-mxint", TINY, rank=2, accumulator="fixed:16:0")


def test_lowrank_designs_are_exactly_those_whose_counts_change_with_the_rank():
    # Independent of the low_rank_design marks: build every design at rank 8 and 64 (a design
    # that takes no rank refuses the keyword) and see whether its items or memory change.
    from hwmodel.designs import DESIGNS, LOWRANK_DESIGNS

    layer = Layer(tokens=4, in_features=512, out_features=512)
    depends = []
    for name in DESIGNS:
        try:
            lo, hi = build(name, layer, rank=8), build(name, layer, rank=64)
        except TypeError:  # no rank parameter
            continue
        if (lo.items, lo.memory_bits) != (hi.items, hi.memory_bits):
            depends.append(name)
    assert sorted(depends) == sorted(LOWRANK_DESIGNS)
    assert sorted(LOWRANK_DESIGNS) == ["l2qer-blockfp", "l2qer-mxint", "lqer-blockfp", "lqer-fixed", "lqer-mxint",
                                       "lrc"]
