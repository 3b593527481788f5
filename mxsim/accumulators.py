"""The accumulator of the MX dot-product datapath: one typed value for every layer of the toolkit.

``Exact()``, ``FP32(lanes)`` and ``FixedPoint(total_bits, frac_bits, overflow)`` are what
``mxsim.matmul`` computes with (semantics: docs/mxsim_semantics.md, matmul section).
``Float()`` is the model-level "no datapath": fake-quantize the operands and multiply in
float (what every perplexity was before the datapath was fast enough); mxsim.matmul refuses
it because it has no integer semantics.

Spellings accepted at the boundaries (CLI, TOML, sweep grids) are parsed by
:func:`parse_accumulator` into these types; nothing past the boundary sees a string.
  CLI / string: ``float``, ``exact``, ``fp32``, ``fp32:LANES``, ``fixed:TOTAL:FRAC[:saturate|wrap]``
  TOML:         ``"fp32"`` or ``{fp32 = {lanes = 4}}`` or ``{fixed = [24, 8], overflow = "saturate"}``

``fixed:TOTAL[:saturate|wrap]`` (no FRAC) is :class:`CalibratedFixedPoint`: a fixed point whose
fraction bits a calibration chooses per GEMM (lqer.datapath.calibrated_fixed_point). It is not
an accumulator anything can compute with, so only a caller that calibrates asks for it
(``parse_accumulator(spec, allow_calibrated=True)``); everywhere else it is a ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OVERFLOW_MODES = ("saturate", "wrap")
ACCUMULATOR_SPELLINGS = "float, exact, fp32, fp32:LANES, fixed:TOTAL:FRAC[:saturate|wrap]"
CALIBRATED_SPELLING = "fixed:TOTAL[:saturate|wrap]"


def _is_int(v) -> bool:
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer))


@dataclass(frozen=True)
class Float:
    """Fake-quantized operands, float matmul: the emulation without the integer datapath."""

    name = "float"

    def __str__(self):
        return "float"


@dataclass(frozen=True)
class Exact:
    """Every block product summed exactly; the result correctly rounded to float64."""

    name = "exact"

    def __str__(self):
        return "exact"


@dataclass(frozen=True)
class FP32:
    """Fused float32 accumulator: one round-to-nearest-even per ``lanes``-wide step (a
    ``lanes``-input adder tree feeds it); ``lanes=None`` means one step per block."""

    lanes: int | None = None
    name = "fp32"

    def __post_init__(self):
        if self.lanes is not None:
            if not _is_int(self.lanes) or self.lanes < 1:
                raise ValueError(f"FP32 lanes must be a positive integer or None, got {self.lanes!r}")
            object.__setattr__(self, "lanes", int(self.lanes))

    def lanes_for(self, block_size: int) -> int:
        """The step width for a block size: lanes must divide it."""
        lanes = block_size if self.lanes is None else self.lanes
        if block_size % lanes:
            raise ValueError(f"FP32 lanes must divide the block size {block_size}, got {lanes}")
        return lanes

    def __str__(self):
        return "fp32" if self.lanes is None else f"fp32:{self.lanes}"


@dataclass(frozen=True)
class FixedPoint:
    """Two's-complement fixed-point accumulator: ``total_bits`` wide (2..64), ``frac_bits``
    below the binary point; ``overflow`` "saturate" or "wrap". One update per block."""

    total_bits: int
    frac_bits: int
    overflow: str = "saturate"
    name = "fixed"

    def __post_init__(self):
        for field_name, v, lo, hi in (("total_bits", self.total_bits, 2, 64), ("frac_bits", self.frac_bits, -512, 512)):
            if not _is_int(v) or not lo <= v <= hi:
                raise ValueError(f"FixedPoint {field_name} must be an integer in [{lo}, {hi}], got {v!r}")
            object.__setattr__(self, field_name, int(v))
        if self.overflow not in OVERFLOW_MODES:
            raise ValueError(f"FixedPoint overflow must be one of {OVERFLOW_MODES}, got {self.overflow!r}")

    @property
    def saturate(self) -> bool:
        return self.overflow == "saturate"

    def __str__(self):
        return f"fixed:{self.total_bits}:{self.frac_bits}" + (":wrap" if self.overflow == "wrap" else "")


@dataclass(frozen=True)
class CalibratedFixedPoint:
    """A FixedPoint of ``total_bits`` (2..64) and ``overflow`` whose fraction bits are not given:
    a calibration of the partial-sum ranges chooses them per GEMM. ``str`` spells the overflow
    mode out (``fixed:24:saturate``), the name the datapath table's rows carry."""

    total_bits: int
    overflow: str = "saturate"
    name = "fixed"

    def __post_init__(self):
        if not _is_int(self.total_bits) or not 2 <= self.total_bits <= 64:
            raise ValueError(f"CalibratedFixedPoint total_bits must be an integer in [2, 64], got {self.total_bits!r}")
        object.__setattr__(self, "total_bits", int(self.total_bits))
        if self.overflow not in OVERFLOW_MODES:
            raise ValueError(f"CalibratedFixedPoint overflow must be one of {OVERFLOW_MODES}, got {self.overflow!r}")

    def with_frac_bits(self, frac_bits: int) -> FixedPoint:
        return FixedPoint(self.total_bits, frac_bits, self.overflow)

    def __str__(self):
        return f"fixed:{self.total_bits}:{self.overflow}"


Accumulator = Float | Exact | FP32 | FixedPoint
DATAPATH_ACCUMULATORS = (Exact, FP32, FixedPoint)


def _spellings(allow_calibrated):
    return ACCUMULATOR_SPELLINGS + (f", {CALIBRATED_SPELLING} (fraction bits from calibration)"
                                    if allow_calibrated else "")


def _bad(what, spec, allow_calibrated=False):
    return ValueError(f"{what} must be one of {_spellings(allow_calibrated)} (or an mxsim accumulator object), "
                      f"got {spec!r}")


def _parse_int(text, what, spec, allow_calibrated=False):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise _bad(what, spec, allow_calibrated) from None


def parse_accumulator(spec, what: str = "accumulator", allow_calibrated: bool = False):
    """An accumulator object from any accepted spelling (see module doc); ``what`` names the
    argument in the error message. ``allow_calibrated``: also accept ``fixed:TOTAL[:saturate|wrap]``
    (and CalibratedFixedPoint objects) as a :class:`CalibratedFixedPoint`; without it they are
    refused, since the caller needs an accumulator it can compute with."""
    try:
        acc = _parse(spec, what, allow_calibrated)
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(what) else f"{what}: {msg}") from None
    if isinstance(acc, CalibratedFixedPoint) and not allow_calibrated:
        raise ValueError(f"{_bad(what, spec)}: a fixed point without FRAC takes its fraction bits from a "
                         "calibration (experiments.datapath_table); here the accumulator must compute")
    return acc


def _parse(spec, what, allow_calibrated=False):
    if isinstance(spec, (Float, Exact, FP32, FixedPoint, CalibratedFixedPoint)):
        return spec
    if isinstance(spec, str):
        parts = spec.strip().lower().split(":")
        head, rest = parts[0], parts[1:]
        if head == "float" and not rest:
            return Float()
        if head == "exact" and not rest:
            return Exact()
        if head == "fp32" and len(rest) <= 1:
            return FP32(_parse_int(rest[0], what, spec) if rest else None)
        if head == "fixed" and (len(rest) == 1 or len(rest) == 2 and rest[1] in OVERFLOW_MODES):
            # no FRAC: fixed:TOTAL or fixed:TOTAL:saturate|wrap (a FRAC is an integer, never a mode)
            overflow = rest[1] if len(rest) == 2 else "saturate"
            return CalibratedFixedPoint(_parse_int(rest[0], what, spec, allow_calibrated), overflow)
        if head == "fixed" and len(rest) in (2, 3):
            overflow = rest[2] if len(rest) == 3 else "saturate"
            return FixedPoint(_parse_int(rest[0], what, spec, allow_calibrated),
                              _parse_int(rest[1], what, spec, allow_calibrated), overflow)
        raise _bad(what, spec, allow_calibrated)
    if isinstance(spec, dict):
        if set(spec) == {"fp32"} and isinstance(spec["fp32"], dict) and set(spec["fp32"]) <= {"lanes"}:
            return FP32(spec["fp32"].get("lanes"))
        if "fixed" in spec and set(spec) <= {"fixed", "overflow"}:
            tf = spec["fixed"]
            if isinstance(tf, (list, tuple)) and len(tf) == 2:
                return FixedPoint(tf[0], tf[1], spec.get("overflow", "saturate"))
        raise _bad(what, spec, allow_calibrated)
    raise _bad(what, spec, allow_calibrated)


def accumulator_to_toml(acc) -> object:
    """The TOML value that parses back to ``acc`` (a string, or a table for FixedPoint)."""
    if isinstance(acc, FixedPoint):
        return {"fixed": [acc.total_bits, acc.frac_bits], "overflow": acc.overflow}
    return str(parse_accumulator(acc))


def datapath_accumulator(spec, lanes=None, what: str = "accumulator"):
    """An accumulator that mxsim.matmul can run (Exact, FP32 or FixedPoint).

    ``lanes`` is the legacy keyword of matmul: it is honoured for fp32 and refused for the
    others (they update once per block), never ignored."""
    acc = parse_accumulator(spec, what)
    if isinstance(acc, Float):
        raise ValueError(f"{what} 'float' is the fake-quantize + float-matmul emulation, not a datapath; "
                         "mxsim.matmul takes exact, fp32[:lanes] or a FixedPoint")
    if lanes is not None:
        if not isinstance(acc, FP32):
            raise ValueError(f"lanes applies to the fp32 accumulator only (the {acc.name} accumulator "
                             f"updates once per block), got lanes={lanes!r} with {acc}")
        if acc.lanes is not None and acc.lanes != lanes:
            raise ValueError(f"lanes={lanes!r} contradicts the accumulator's own lanes ({acc})")
        acc = FP32(lanes)
    return acc


def check_accumulator_fits(acc, fmt_a, fmt_b, where: str = "") -> None:
    """Refuse an accumulator that cannot be built for a fmt_a x fmt_b dot-product unit: a
    FixedPoint narrower than one block's integer sum (datapath_widths' sum_bits) or with more
    fraction bits than it has below its sign bit (frac_bits > total_bits - 1); FP32 lanes that
    do not divide the block size. ``where`` is added to the message (the layer, the design)."""
    from .formats import get_format
    from .widths import datapath_widths

    fmt_a, fmt_b = get_format(fmt_a), get_format(fmt_b)
    where = f" ({where})" if where else ""
    if isinstance(acc, FixedPoint):
        need = datapath_widths(fmt_a, fmt_b)["sum_bits"]
        if acc.total_bits < need:
            raise ValueError(f"accumulator {acc}{where}: total_bits {acc.total_bits} is narrower than one block's "
                             f"integer sum of {fmt_a.name} x {fmt_b.name} ({need} bits, mxsim.datapath_widths); "
                             f"allowed: total_bits in [{need}, 64]")
        if acc.frac_bits > acc.total_bits - 1:
            raise ValueError(f"accumulator {acc}{where}: frac_bits {acc.frac_bits} is beyond the accumulator "
                             f"(total_bits {acc.total_bits} leaves at most {acc.total_bits - 1} below the sign bit); "
                             f"allowed: frac_bits <= {acc.total_bits - 1}")
    elif isinstance(acc, FP32):
        try:
            acc.lanes_for(fmt_a.block_size)
        except ValueError as e:
            raise ValueError(f"accumulator {acc}{where}: {e}") from None
