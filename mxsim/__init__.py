"""mxsim: bit-exact emulation of microscaling (MX) number formats and their integer arithmetic."""

from .formats import (
    FORMATS,
    MXFP4_E2M1,
    MXFP6_E2M3,
    MXFP6_E3M2,
    MXFP8_E4M3,
    MXFP8_E5M2,
    MXINT2,
    MXINT4,
    MXINT6,
    MXINT8,
    NVFP4,
    E8M0,
    ROUNDING_MODES,
    BlockFP,
    MXFPFormat,
    MXIntFormat,
    NVFP4Format,
    ScaleEncoding,
    ScaleRule,
    format_to_str,
    get_format,
    parse_format,
)
from .rounding import Rounding
from .api import fake_quantize, quantize
from .tensor import MXTensor
from .accumulators import FP32, CalibratedFixedPoint, Exact, FixedPoint, Float, parse_accumulator
from .api import datapath_widths, matmul
from .partial_sums import partial_sum_range
from .rank import Rank
from .errors import UserError
