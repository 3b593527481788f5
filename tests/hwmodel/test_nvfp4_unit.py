"""The NVFP4 dot unit (hwmodel mxint design with NVFP4 formats) against the MXFP4 unit of the
same block size, counted by hand: same E2M1 multipliers and adder tree; the E8M0 exponent
adder (9 bits) becomes a 4x4-bit E4M3 significand multiplier, a 5-bit exponent adder and a
block-sum x scale-product multiplier (13 x 8 bits), and the accumulator is 8 bits wider."""

import mxsim
from hwmodel.designs.base import Layer
from hwmodel.designs.mxint import mxint


def _gemm(counts):
    return sorted((comp, a, b, n) for path, comp, a, b, n in counts.items if path == "gemm")


def test_nvfp4_unit_vs_mxfp4_unit_by_hand():
    layer = Layer(1, 576, 1536)
    nv = _gemm(mxint(layer, w_fmt=mxsim.NVFP4, x_fmt=mxsim.NVFP4, lanes=16))
    mx = _gemm(mxint(layer, w_fmt="MXFP4_E2M1/16", x_fmt="MXFP4_E2M1/16", lanes=16))
    # E2M1 integer views are 5-bit two's complement (|int| <= 12), products 9 bits, a 16-input
    # tree of widths 10, 11, 12, 13: identical in both units
    shared = [("int_mul", 5, 5, 16), ("int_add", 10, 0, 8), ("int_add", 11, 0, 4), ("int_add", 12, 0, 2),
              ("int_add", 13, 0, 1)]
    for item in shared:
        assert item in nv and item in mx
    # accumulator: block sum 13 bits (+8 in NVFP4 for the scale product) + clog2(576/16 = 36) = 6 + 1 guard
    acc_mx, acc_nv = 13 + 6 + 1, 13 + 8 + 6 + 1
    assert ("exp_add", 9, 0, 1) in mx and ("exp_add", 5, 0, 1) in nv
    assert ("int_mul", 4, 4, 1) in nv and ("int_mul", 13, 8, 1) in nv
    assert not any(c == "int_mul" and (a, b) in ((4, 4), (13, 8)) for c, a, b, _ in mx)
    assert ("fixed_acc", acc_mx, 0, 1) in mx and ("fixed_acc", acc_nv, 0, 1) in nv
    assert ("barrel_shifter", acc_nv, 5, 1) in nv  # clog2(27) = 5


def test_two_level_adds_the_alpha_multiply():
    layer = Layer(1, 64, 64)
    one = mxint(layer, w_fmt=mxsim.NVFP4, x_fmt=mxsim.NVFP4)
    two = mxint(layer, w_fmt=mxsim.NVFP4.with_two_level(), x_fmt=mxsim.NVFP4)
    extra = [i for i in two.items if i not in one.items]
    assert extra == [("tensor_scale", "fp32_mul", 0, 0, 1)]
