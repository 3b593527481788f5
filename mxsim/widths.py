"""Bit widths of the MX block dot-product datapath (docs/mxsim_semantics.md, matmul): the one
source that mxsim.matmul's lane check, the accumulators' width checks and hwmodel's designs read
(its own module so that mxsim.accumulators and mxsim.api need not import each other)."""

from __future__ import annotations

import numpy as np

from .formats import MXFPFormat, NVFP4Format, get_format


def check_lanes(lanes, block_size) -> int:
    """lanes of an fp32 accumulator: the block size when None, else a positive integer dividing it."""
    if lanes is None:
        return block_size
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1 or block_size % lanes:
        raise ValueError(f"lanes must be a positive integer dividing the block size {block_size}, got {lanes!r}")
    return int(lanes)


def datapath_widths(fmt_a, fmt_b, lanes=None) -> dict:
    """Bit widths of the block dot-product datapath (contract, matmul section)."""
    fa, fb = get_format(fmt_a), get_format(fmt_b)
    if fa.block_size != fb.block_size:
        raise ValueError(f"fmt_a and fmt_b must have the same block size, got {fa.block_size} and {fb.block_size}")
    lanes = check_lanes(lanes, fa.block_size)
    nv = isinstance(fa, NVFP4Format), isinstance(fb, NVFP4Format)
    if any(nv) and not all(nv):
        raise ValueError(f"NVFP4 multiplies only with NVFP4 (its E4M3 scales multiply), got {fa.name} x {fb.name}")
    if isinstance(fa, (MXFPFormat, NVFP4Format)) or isinstance(fb, (MXFPFormat, NVFP4Format)):
        product = (fa.max_int * fb.max_int).bit_length() + 1  # signed magnitude of the largest product
    else:
        product = fa.element_bits + fb.element_bits - 1
    levels = (lanes - 1).bit_length()  # ceil(log2 lanes)
    widths = [product + i for i in range(1, levels + 1)]
    out = {
        # two's complement width of each operand's integer view (MXINT/BlockFP: the element bits)
        "operand_bits": [fa.max_int.bit_length() + 1, fb.max_int.bit_length() + 1],
        "product_bits": product,
        "adder_tree_levels": levels,
        "adder_tree_widths": widths,
        "sum_bits": widths[-1] if widths else product,
        "exponent_adder_bits": max(fa.scale_bits, fb.scale_bits) + 1,
        "lanes": lanes,
    }
    if all(nv):
        # E4M3 x E4M3 block scales (contract, matmul, NVFP4): the 4-bit significands (implicit 1)
        # multiply into an 8-bit product, the 4-bit exponents add (5 bits); the block sum is then
        # multiplied by that 8-bit product (sum_bits x 8) instead of only being shifted
        out["exponent_adder_bits"] = 5
        out["scale_multiplier_bits"] = [4, 4]
        out["scale_product_bits"] = 8
        out["scaled_sum_bits"] = out["sum_bits"] + 8
    return out
