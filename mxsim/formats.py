"""Number formats: small frozen dataclasses that every module takes.

Three families share one protocol (``block_size``, ``element_bits``, ``scale_bits``,
``with_block_size``, ``bits_per_element``, and the integer view used by exact matmul:
an element's value is ``int_value * 2**quantum_log2`` times the block scale):

* ``MXIntFormat``  OCP MX v1.0 MXINTb: E8M0 scale, b-bit two's complement, implicit 2^-(b-2).
* ``MXFPFormat``   OCP MX v1.0 MXFP elements (E4M3, E5M2, E3M2, E2M3, E2M1) with E8M0 scale.
* ``BlockFP``      the LQER authors' block floating point (ceil exponent, sign-magnitude).

The exact quantization rules are written out in docs/mxsim_semantics.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

E8M0_BIAS = 127
E8M0_NAN = 0xFF
# Finite E8M0 scale exponents: codes 0..254 map to 2^-127 .. 2^127.
SCALE_EXP_MIN = -127
SCALE_EXP_MAX = 127
DEFAULT_MX_BLOCK = 32
DEFAULT_BFP_BLOCK = 16


def _check_block_size(block_size: int) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    return block_size


class _FormatBase:
    """Shared behaviour of every format (mixed into the frozen dataclasses)."""

    block_size: int

    def with_block_size(self, block_size: int):
        return dataclasses.replace(self, block_size=_check_block_size(block_size))

    @property
    def bits_per_element(self) -> float:
        """Average storage bits per element: element bits plus the block's share of the scale."""
        return self.element_bits + self.scale_bits / self.block_size

    def __post_init__(self):
        _check_block_size(self.block_size)


@dataclass(frozen=True)
class MXIntFormat(_FormatBase):
    """OCP MX v1.0 MXINTb: block of ``block_size`` b-bit two's-complement ints, one E8M0 scale."""

    element_bits: int
    block_size: int = DEFAULT_MX_BLOCK

    kind = "mxint"
    scale_bits = 8
    emax_elem = 0

    def __post_init__(self):
        super().__post_init__()
        if not 2 <= self.element_bits <= 8:
            raise ValueError(f"element_bits must be in [2, 8], got {self.element_bits!r}")

    @property
    def name(self) -> str:
        return f"MXINT{self.element_bits}"

    @property
    def max_code(self) -> int:
        """Largest code magnitude; the clamp is symmetric, so -2^(b-1) is never produced."""
        return 2 ** (self.element_bits - 1) - 1

    @property
    def quantum_log2(self) -> int:
        """log2 of the implicit element scale 2^-(b-2)."""
        return -(self.element_bits - 2)

    @property
    def max_int(self) -> int:
        return self.max_code

    @property
    def element_max(self) -> float:
        return self.max_code * 2.0**self.quantum_log2


@dataclass(frozen=True)
class MXFPFormat(_FormatBase):
    """OCP MX v1.0 MXFP element format (sign, exponent, mantissa) with an E8M0 block scale."""

    exponent_bits: int
    mantissa_bits: int
    exponent_bias: int
    max_normal: float
    has_inf: bool = False
    block_size: int = DEFAULT_MX_BLOCK

    kind = "mxfp"
    scale_bits = 8

    @property
    def name(self) -> str:
        bits = 1 + self.exponent_bits + self.mantissa_bits
        return f"MXFP{bits}_E{self.exponent_bits}M{self.mantissa_bits}"

    @property
    def element_bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def emax_elem(self) -> int:
        """Exponent of the largest normal element (the spec's emax)."""
        import math

        return math.frexp(self.max_normal)[1] - 1

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal element; subnormals share it."""
        return 1 - self.exponent_bias

    @property
    def quantum_log2(self) -> int:
        """log2 of the subnormal step: every element is an integer multiple of it."""
        return self.emin - self.mantissa_bits

    @property
    def max_int(self) -> int:
        return int(self.max_normal * 2.0 ** (-self.quantum_log2))

    @property
    def element_max(self) -> float:
        return self.max_normal


@dataclass(frozen=True)
class BlockFP(_FormatBase):
    """The LQER authors' block floating point ("MXINT" in their paper).

    Shared exponent ceil(log2(max|x|)) of ``exponent_width`` bits; elements are sign plus a
    (width-1)-bit magnitude m, value sign * m * 2^(e - (width-1)). ``zero_passthrough``
    reproduces the authors' code, which returns elements with |x| <= float32(1e-8) unchanged
    in fake quantization (see docs/mxsim_semantics.md).
    """

    width: int
    exponent_width: int = 8
    block_size: int = DEFAULT_BFP_BLOCK
    exponent_bias: int | None = None
    zero_passthrough: bool = True

    kind = "blockfp"

    def __post_init__(self):
        super().__post_init__()
        if not 2 <= self.width <= 8:
            raise ValueError(f"width must be in [2, 8], got {self.width!r}")
        if not 2 <= self.exponent_width <= 8:
            raise ValueError(f"exponent_width must be in [2, 8], got {self.exponent_width!r}")

    @property
    def name(self) -> str:
        return f"BlockFP{self.width}"

    @property
    def element_bits(self) -> int:
        return self.width

    @property
    def scale_bits(self) -> int:
        return self.exponent_width

    @property
    def bias(self) -> int:
        if self.exponent_bias is None:
            return 2 ** (self.exponent_width - 1) - 1
        return self.exponent_bias

    @property
    def exp_min(self) -> int:
        return -self.bias

    @property
    def exp_max(self) -> int:
        """Largest finite exponent; the all-ones code is kept for NaN blocks."""
        return 2**self.exponent_width - 2 - self.bias

    @property
    def nan_code(self) -> int:
        return 2**self.exponent_width - 1

    @property
    def max_code(self) -> int:
        return 2 ** (self.width - 1) - 1

    @property
    def quantum_log2(self) -> int:
        return -(self.width - 1)

    @property
    def max_int(self) -> int:
        return self.max_code


Format = MXIntFormat | MXFPFormat | BlockFP

MXINT8 = MXIntFormat(8)
MXINT6 = MXIntFormat(6)
MXINT4 = MXIntFormat(4)
MXINT2 = MXIntFormat(2)
# OCP MX v1.0 Table 2/3: E4M3 has no Inf (S.1111.111 is NaN, max 448); E5M2 is IEEE-like.
MXFP8_E4M3 = MXFPFormat(4, 3, 7, 448.0)
MXFP8_E5M2 = MXFPFormat(5, 2, 15, 57344.0, has_inf=True)
MXFP6_E3M2 = MXFPFormat(3, 2, 3, 28.0)
MXFP6_E2M3 = MXFPFormat(2, 3, 1, 7.5)
MXFP4_E2M1 = MXFPFormat(2, 1, 1, 6.0)

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (MXINT8, MXINT6, MXINT4, MXINT2, MXFP8_E4M3, MXFP8_E5M2, MXFP6_E3M2, MXFP6_E2M3, MXFP4_E2M1)
}

ROUNDING_MODES = ("nearest_even", "nearest_away", "floor", "stochastic")


def get_format(fmt) -> Format:
    """Accept a format object or its name ("MXINT4", "mxfp4_e2m1", "BlockFP4", "blockfp4/16")."""
    if isinstance(fmt, (MXIntFormat, MXFPFormat, BlockFP)):
        return fmt
    if not isinstance(fmt, str):
        raise ValueError(f"fmt must be a format object or a name, got {type(fmt).__name__}")
    name, _, block = fmt.strip().partition("/")
    key = name.upper()
    if key in FORMATS:
        out = FORMATS[key]
    elif key.startswith("BLOCKFP") and key[7:].isdigit():
        out = BlockFP(int(key[7:]))
    else:
        allowed = ", ".join(list(FORMATS) + ["BlockFP<width>"])
        raise ValueError(f"unknown format name {fmt!r}; allowed: {allowed} (optionally '/<block_size>')")
    if block:
        if not block.isdigit():
            raise ValueError(f"block size in format name {fmt!r} must be a positive integer")
        out = out.with_block_size(int(block))
    return out


def check_rounding(rounding: str) -> str:
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    return rounding
