"""Decode element codes and scale codes back to values and to the integer view (numba).

Arrays are (R, L) with the blocked axis last, as in quant.py.
"""

import math

import numpy as np
from numba import njit, prange

KIND_MXINT, KIND_MXFP, KIND_BFP = 0, 1, 2


@njit(cache=True, inline="always")
def int_of_code(kind, code, ebits, mbits):
    """Integer view of one element: value = int * 2^quantum_log2 * 2^scale (contract)."""
    if kind == KIND_MXFP:
        c = int(code) & 0xFF
        sign = (c >> (ebits + mbits)) & 1
        bexp = (c >> mbits) & ((1 << ebits) - 1)
        mant = c & ((1 << mbits) - 1)
        n = mant if bexp == 0 else ((1 << mbits) + mant) << (bexp - 1)
        return -n if sign else n
    return int(code)  # MXINT two's complement and BlockFP sign*magnitude are both signed int8


@njit(cache=True, parallel=True)
def int_values_kernel(codes, kind, ebits, mbits, out):
    """codes, out: flat 1-D arrays."""
    for i in prange(codes.size):
        out[i] = int_of_code(kind, codes[i], ebits, mbits)


@njit(cache=True, parallel=True)
def dequant_kernel(codes, scales, k, kind, ebits, mbits, qlog, scale_bias, nan_code, max_code, inf_code, out):
    """out = int * 2^(scale - scale_bias + qlog); NaN where the scale code is nan_code. An MXFP
    element code (without sign) above max_code is +-Inf if it is inf_code, else NaN."""
    R, L = codes.shape
    nb = scales.shape[1]
    sign_bit = 1 << (ebits + mbits)
    for t in prange(R * nb):
        r = t // nb
        b = t - r * nb
        sc = int(scales[r, b])
        f = math.ldexp(1.0, sc - scale_bias + qlog)
        for j in range(b * k, min(b * k + k, L)):
            if sc == nan_code:
                out[r, j] = np.nan
            else:
                n = int_of_code(kind, codes[r, j], ebits, mbits)
                v = float(n) * f
                if kind == KIND_MXFP:
                    c = int(codes[r, j]) & 0xFF
                    mag = c & (sign_bit - 1)
                    if n == 0 and (c & sign_bit):
                        v = -0.0  # the MXFP code keeps the sign of a value that rounded to zero
                    elif mag > max_code:
                        v = np.nan if mag != inf_code else (-np.inf if c & sign_bit else np.inf)
                out[r, j] = v
