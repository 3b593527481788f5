"""Number formats: small frozen dataclasses that every module takes.

Three families share one protocol (``block_size``, ``element_bits``, ``scale_bits``, ``scale``,
``with_block_size``, ``bits_per_element``, and the integer view used by exact matmul:
an element's value is ``int_value * 2**quantum_log2`` times the block scale):

* ``MXIntFormat``  OCP MX v1.0 MXINTb: E8M0 scale, b-bit two's complement, implicit 2^-(b-2).
* ``MXFPFormat``   OCP MX v1.0 MXFP elements (E4M3, E5M2, E3M2, E2M3, E2M1) with E8M0 scale.
* ``BlockFP``      the LQER authors' block floating point (ceil exponent, sign-magnitude).

The block scale is a ``ScaleEncoding`` (bits, bias, the NaN code and the rule that picks the
exponent); the kernels and the referee read every one of those from the format. Every field is
checked (type and consistency) when a format is constructed; numpy integers count as integers.

Names: :func:`get_format` parses "MXINT3", "MXINT4/16", "BlockFP4/16", "MXFP4_E2M1/32" (any
case) and :func:`format_to_str` is its inverse. The quantization rules are written out in
docs/mxsim_semantics.md.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
from dataclasses import dataclass

import numpy as np

from .rounding import ROUNDING_MODES, Rounding

DEFAULT_MX_BLOCK = 32
DEFAULT_BFP_BLOCK = 16


def _is_int(v) -> bool:
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer))


def _int_field(obj, name: str, lo: int, hi: int | None = None, what: str | None = None) -> int:
    """Check that field ``name`` of ``obj`` is an integer in [lo, hi] and store it as a Python int."""
    v = getattr(obj, name)
    rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        raise ValueError(f"{what or type(obj).__name__} {name} must be an integer {rng}, got {v!r}")
    object.__setattr__(obj, name, int(v))
    return int(v)


def _bool_field(obj, name: str) -> bool:
    v = getattr(obj, name)
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{type(obj).__name__} {name} must be True or False, got {v!r}")
    object.__setattr__(obj, name, bool(v))
    return bool(v)


def _check_block_size(block_size) -> int:
    if not _is_int(block_size) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    return int(block_size)


# ---------------------------------------------------------------------------------------
# the block scale


class ScaleRule(str, enum.Enum):
    """How a block's scale exponent is chosen from its largest magnitude amax.

    FLOOR    OCP MX v1.0 (section 6.3): floor(log2 amax) - emax_elem, clamped to the scale range.
    BLOCKFP  the LQER authors' block floating point: ceil(fl32(log2 amax)), clamped.
    CEIL     ceil(log2 amax) - emax_elem (torchao ScaleCalculationMode.CEIL).
    EVEN     amax rounded half up to the element's mantissa bits, then FLOOR (torchao EVEN).
    RCEIL    ceil(log2(amax / element_max)), the quotient a float32 division for float32 input
             (NVIDIA cuBLAS / Blackwell ``cvt.rp.satfinite.ue8m0``; torchao RCEIL).

    The exact rules: docs/mxsim_semantics.md ("Scale rules"). Each format class lists the rules
    it implements (``SCALE_RULES``); ``fmt.with_scale_rule("rceil")`` picks one.
    """

    FLOOR = "floor"
    BLOCKFP = "blockfp"
    CEIL = "ceil"
    EVEN = "even"
    RCEIL = "rceil"

    def __str__(self):
        return self.value

    @property
    def kernel_id(self) -> int:
        return list(ScaleRule).index(self)


@dataclass(frozen=True)
class ScaleEncoding:
    """A block scale 2^e stored as an unsigned ``bits``-bit code e + ``bias``; the all-ones code
    is NaN, so finite exponents run from -bias to 2^bits - 2 - bias (which must include 0).
    E8M0 (OCP MX v1.0): 8 bits, bias 127, NaN 0xFF, exponents -127..127."""

    bits: int = 8
    bias: int = 127
    rule: ScaleRule = ScaleRule.FLOOR

    def __post_init__(self):
        _int_field(self, "bits", 1, 8, "ScaleEncoding")  # codes are stored as uint8
        _int_field(self, "bias", 0, 2**self.bits - 2, "ScaleEncoding")
        if not isinstance(self.rule, ScaleRule):
            try:
                object.__setattr__(self, "rule", ScaleRule(self.rule))
            except ValueError:
                allowed = ", ".join(r.value for r in ScaleRule)
                raise ValueError(f"ScaleEncoding rule must be one of {allowed}, got {self.rule!r}") from None

    @property
    def nan_code(self) -> int:
        return 2**self.bits - 1

    @property
    def exp_min(self) -> int:
        return -self.bias

    @property
    def exp_max(self) -> int:
        """Largest finite exponent; the all-ones code is kept for NaN blocks."""
        return 2**self.bits - 2 - self.bias

    @property
    def name(self) -> str:
        if (self.bits, self.bias) == (8, 127):
            return "E8M0"
        return f"E{self.bits}M0(bias {self.bias})"


E8M0 = ScaleEncoding(8, 127, ScaleRule.FLOOR)
# kept for callers of the OCP constants; the kernels read them from each format's scale
E8M0_BIAS = E8M0.bias
E8M0_NAN = E8M0.nan_code
SCALE_EXP_MIN = E8M0.exp_min
SCALE_EXP_MAX = E8M0.exp_max


def _check_scale(fmt, rules) -> None:
    s = fmt.scale
    if isinstance(s, dict):  # the JSON form of format_to_json
        s = ScaleEncoding(**s)
        object.__setattr__(fmt, "scale", s)
    if not isinstance(s, ScaleEncoding):
        raise ValueError(f"{type(fmt).__name__} scale must be an mxsim.ScaleEncoding, got {s!r}")
    if s.rule not in rules:
        raise ValueError(f"{type(fmt).__name__} scale rule {s.rule.value!r} is not implemented "
                         f"(implemented: {', '.join(r.value for r in rules)})")


class _FormatBase:
    """Shared behaviour of every format (mixed into the frozen dataclasses)."""

    block_size: int

    def with_block_size(self, block_size: int):
        return dataclasses.replace(self, block_size=_check_block_size(block_size))

    def with_scale_rule(self, rule):
        """The same format with another shared-scale rule ("floor", "ceil", "even", "rceil")."""
        rules = getattr(self, "SCALE_RULES", ())
        try:
            r = rule if isinstance(rule, ScaleRule) else ScaleRule(str(rule).strip().lower())
        except ValueError:
            r = None
        if r not in rules:
            allowed = ", ".join(x.value for x in rules) or "none (its block scale is not chosen by a rule)"
            raise ValueError(f"scale_rule {rule!r} does not apply to {self.name}; allowed: {allowed}")
        return dataclasses.replace(self, scale=dataclasses.replace(self.scale, rule=r))

    @property
    def scale_rule(self) -> ScaleRule:
        return self.scale.rule

    @property
    def bits_per_element(self) -> float:
        """Average storage bits per element: element bits plus the block's share of the scale."""
        return self.element_bits + self.scale_bits / self.block_size

    @property
    def scale_bits(self) -> int:
        return self.scale.bits

    def __post_init__(self):
        object.__setattr__(self, "block_size", _check_block_size(self.block_size))


@dataclass(frozen=True)
class MXIntFormat(_FormatBase):
    """OCP MX v1.0 MXINTb: block of ``block_size`` b-bit two's-complement ints, one E8M0 scale."""

    element_bits: int
    block_size: int = DEFAULT_MX_BLOCK
    scale: ScaleEncoding = E8M0

    kind = "mxint"
    emax_elem = 0
    SCALE_RULES = (ScaleRule.FLOOR, ScaleRule.CEIL, ScaleRule.EVEN, ScaleRule.RCEIL)
    ELEMENT_BITS = (2, 8)  # the element widths implemented, smallest and largest (codes are int8)

    def __post_init__(self):
        super().__post_init__()
        _int_field(self, "element_bits", *self.ELEMENT_BITS)
        _check_scale(self, self.SCALE_RULES)

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
    """OCP MX v1.0 MXFP element format (sign, exponent, mantissa) with an E8M0 block scale.

    Consistency (checked): 1 + exponent_bits + mantissa_bits <= 8; ``max_normal`` is a value of
    the element grid, sign * 2^E * (1 + j / 2^mantissa_bits) with emin <= E <= the top exponent
    field (2^exponent_bits - 1 - bias, one less with ``has_inf``)."""

    exponent_bits: int
    mantissa_bits: int
    exponent_bias: int
    max_normal: float
    has_inf: bool = False
    block_size: int = DEFAULT_MX_BLOCK
    scale: ScaleEncoding = E8M0

    kind = "mxfp"
    SCALE_RULES = (ScaleRule.FLOOR, ScaleRule.CEIL, ScaleRule.EVEN, ScaleRule.RCEIL)

    def __post_init__(self):
        super().__post_init__()
        e = _int_field(self, "exponent_bits", 1, 7)
        m = _int_field(self, "mantissa_bits", 0, 7 - e)  # sign + exponent + mantissa <= 8 bits
        _int_field(self, "exponent_bias", 0, 2**e - 1)
        _bool_field(self, "has_inf")
        v = self.max_normal
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(f"MXFPFormat max_normal must be a finite positive number, got {v!r}")
        object.__setattr__(self, "max_normal", float(v))
        top = 2**e - (2 if self.has_inf else 1) - self.exponent_bias
        E = math.frexp(self.max_normal)[1] - 1
        steps = math.ldexp(self.max_normal, m - E)
        if not (self.emin <= E <= top and steps == int(steps)):
            raise ValueError(
                f"MXFPFormat max_normal={v!r} is not an element of E{e}M{m} with bias {self.exponent_bias}"
                f"{' and Inf' if self.has_inf else ''}: it must be 2^E * (1 + j/2^{m}) with "
                f"{self.emin} <= E <= {top} (the largest is {math.ldexp(2 - 2.0**-m, top)!r})")
        _check_scale(self, self.SCALE_RULES)

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
    def max_code(self) -> int:
        """Code (without sign) of max_normal, the largest finite code: quantize saturates there.
        The codes grow with the magnitudes, so every code above it is a special value."""
        e = self.emax_elem
        m = self.mantissa_bits
        return ((e + self.exponent_bias) << m) | (int(self.max_normal * 2.0 ** (m - e)) - (1 << m))

    @property
    def inf_code(self) -> int | None:
        """Code (without sign) of Inf with ``has_inf`` (exponent field all ones, mantissa 0),
        else None. Every other code above ``max_code`` decodes to NaN (OCP MX v1.0 Tables 2/3:
        E4M3 S.1111.111 is NaN and there is no Inf; E5M2 S.11111.00 is Inf, S.11111.{01,10,11}
        NaN); quantize never produces them."""
        return ((1 << self.exponent_bits) - 1) << self.mantissa_bits if self.has_inf else None

    @property
    def element_max(self) -> float:
        return self.max_normal


@dataclass(frozen=True)
class BlockFP(_FormatBase):
    """The LQER authors' block floating point ("MXINT" in their paper).

    Shared exponent ceil(log2(max|x|)) of ``exponent_width`` bits; elements are sign plus a
    (width-1)-bit magnitude m, value sign * m * 2^(e - (width-1)). ``zero_passthrough``
    reproduces the authors' code, which returns elements with |x| <= float32(1e-8) unchanged
    in fake quantization (see docs/mxsim_semantics.md). ``exponent_bias`` (default
    2^(exponent_width-1) - 1) must leave exponent 0 representable: 0 <= bias <= 2^width - 2.
    """

    width: int
    exponent_width: int = 8
    block_size: int = DEFAULT_BFP_BLOCK
    exponent_bias: int | None = None
    zero_passthrough: bool = True

    kind = "blockfp"
    SCALE_RULES = (ScaleRule.BLOCKFP,)

    def __post_init__(self):
        super().__post_init__()
        _int_field(self, "width", 2, 8)
        ew = _int_field(self, "exponent_width", 2, 8)
        if self.exponent_bias is not None:
            _int_field(self, "exponent_bias", 0, 2**ew - 2)
        _bool_field(self, "zero_passthrough")

    @property
    def scale(self) -> ScaleEncoding:
        return ScaleEncoding(self.exponent_width, self.bias, ScaleRule.BLOCKFP)

    @property
    def name(self) -> str:
        return f"BlockFP{self.width}"

    @property
    def element_bits(self) -> int:
        return self.width

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


NVFP4_BLOCK = 16


@dataclass(frozen=True)
class NVFP4Format(_FormatBase):
    """NVIDIA NVFP4: FP4 E2M1 elements in blocks of 16, one FP8 E4M3 block scale (a value,
    not a power of two), and with ``two_level`` a per-tensor FP32 scale computed from the
    tensor's amax (or passed as ``per_tensor_scale=`` to quantize). torchao's nvfp4_quantize
    is the reference recipe (docs/mxsim_semantics.md, NVFP4). Blocks other than 16 are an
    extension that must be asked for with ``allow_any_block_size=True``.
    """

    block_size: int = NVFP4_BLOCK
    two_level: bool = False
    allow_any_block_size: bool = False

    kind = "nvfp4"
    element_bits = 4
    scale_bits = 8  # the E4M3 block scale
    SCALE_RULES = ()  # the E4M3 scale is amax / 6 rounded, not a power-of-two rule
    quantum_log2 = -1  # E2M1 values are multiples of 0.5
    max_int = 12  # 6.0 / 0.5
    element_max = 6.0

    def __post_init__(self):
        super().__post_init__()
        _bool_field(self, "two_level")
        _bool_field(self, "allow_any_block_size")
        if self.block_size != NVFP4_BLOCK and not self.allow_any_block_size:
            raise ValueError(f"block_size: NVFP4 blocks are {NVFP4_BLOCK} elements, got {self.block_size}; other "
                             "sizes are an extension: NVFP4Format(block_size=k, allow_any_block_size=True)")

    @property
    def name(self) -> str:
        return "NVFP4_2L" if self.two_level else "NVFP4"

    @property
    def tensor_scale_bits(self) -> int:
        """Bits of the per-tensor FP32 scale (two level), stored once per tensor."""
        return 32 if self.two_level else 0

    def with_two_level(self, two_level: bool = True):
        return dataclasses.replace(self, two_level=two_level)


Format = MXIntFormat | MXFPFormat | BlockFP | NVFP4Format
FORMAT_CLASSES = (MXIntFormat, MXFPFormat, BlockFP, NVFP4Format)
NVFP4 = NVFP4Format()

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
# OCP's short name where it is unambiguous (FP4 has one element format)
_ALIASES = {"MXFP4": MXFP4_E2M1, "NVFP4": NVFP4, "NVFP4_2L": NVFP4.with_two_level()}

# ---------------------------------------------------------------------------------------
# names

_NAME_SYNTAX = "MXINT<2..8>, BlockFP<2..8>, " + ", ".join(f for f in FORMATS if not f.startswith("MXINT")) + \
    ", MXFP4, NVFP4, NVFP4_2L (each optionally '/<block_size>'; MX formats also '@<scale rule>': " + \
    "floor, ceil, even, rceil), or 'json:{...}' (format_to_str of a custom format)"


def get_format(fmt) -> Format:
    """The one format-name parser: a format object, or a name such as "MXINT3", "mxint4/16",
    "BlockFP4/16", "MXFP4_E2M1/32", "MXFP8_E4M3/32@rceil", "NVFP4" (any case; "/<n>" sets the
    block size, "@<rule>" the scale rule), or the "json:{...}" spelling that
    :func:`format_to_str` writes for custom formats."""
    if isinstance(fmt, FORMAT_CLASSES):
        return fmt
    if not isinstance(fmt, str):
        raise ValueError(f"fmt must be a format object or a name, got {type(fmt).__name__}")
    text = fmt.strip()
    if text.startswith("json:"):
        return format_from_json(text[5:])
    text, at, rule = text.partition("@")
    name, _, block = text.partition("/")
    key = name.strip().upper()
    m = re.fullmatch(r"(MXINT|BLOCKFP)(\d+)", key)
    try:
        if key in FORMATS or key in _ALIASES:
            out = FORMATS.get(key) or _ALIASES[key]
        elif m and m.group(1) == "MXINT":
            out = MXIntFormat(int(m.group(2)))
        elif m:
            out = BlockFP(int(m.group(2)))
        else:
            raise ValueError("unknown name")
    except ValueError:
        raise ValueError(f"unknown format name {fmt!r}; allowed: {_NAME_SYNTAX}") from None
    if block or text.endswith("/"):
        if not block.strip().isdigit() or int(block) < 1:
            raise ValueError(f"block size in format name {fmt!r} must be a positive integer")
        out = out.with_block_size(int(block))
    if at:
        out = out.with_scale_rule(rule)
    return out


parse_format = get_format


def format_to_json(fmt) -> str:
    """Every field of ``fmt`` as JSON ({"class": ..., fields...}); format_from_json inverts it."""
    fmt = get_format(fmt)
    return json.dumps({"class": type(fmt).__name__, **dataclasses.asdict(fmt)})


def format_from_json(text: str) -> Format:
    try:
        d = json.loads(text)
        cls = {c.__name__: c for c in FORMAT_CLASSES}[d.pop("class")]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"not a format_to_json string: {text!r}") from None
    if "scale" in d:
        d["scale"] = ScaleEncoding(**d["scale"])
    return cls(**d)


def format_to_str(fmt) -> str:
    """The shortest name that :func:`get_format` parses back to an equal format: "MXINT4/16",
    "BlockFP4/16", "MXFP4_E2M1/32"; a format no name describes (custom bias, scale, ...) is
    written as "json:{...}"."""
    fmt = get_format(fmt)
    short = f"{fmt.name}/{fmt.block_size}"
    if fmt.SCALE_RULES and fmt.scale.rule is not fmt.SCALE_RULES[0]:
        short += f"@{fmt.scale.rule.value}"
    try:
        if get_format(short) == fmt:
            return short
    except ValueError:
        pass
    return "json:" + format_to_json(fmt)


def check_rounding(rounding) -> Rounding:
    """The boundary check of a rounding argument: a Rounding from a member or its name."""
    return Rounding.parse(rounding)



