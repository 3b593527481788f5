"""Rounding of an element to its format's grid: one typed value, parsed from strings at the
boundary (``fake_quantize(..., rounding="floor")``) and passed as a ``Rounding`` past it.

Each member carries the integer ``kernel_id`` the numba kernels branch on (the kernels take
ints, not enums); nothing else spells the modes out.

* ``NEAREST_EVEN``  round half to even (IEEE 754 default, OCP MX's conversion rule)
* ``NEAREST_AWAY``  round half away from zero
* ``FLOOR``         round the magnitude down (toward zero)
* ``STOCHASTIC``    round up with probability equal to the remainder, from a hash of the
                    element's flat index and the seed (docs/mxsim_semantics.md)
"""

from __future__ import annotations

import enum


class Rounding(str, enum.Enum):
    NEAREST_EVEN = "nearest_even"
    NEAREST_AWAY = "nearest_away"
    FLOOR = "floor"
    STOCHASTIC = "stochastic"

    def __str__(self):
        return self.value

    @property
    def kernel_id(self) -> int:
        """The integer the numba kernels branch on (declaration order)."""
        return _KERNEL_IDS[self]

    @classmethod
    def parse(cls, spec, what: str = "rounding") -> "Rounding":
        """A Rounding from a member or its name ("nearest_even", ...); ``what`` names the argument."""
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, str):
            try:
                return cls(spec.strip().lower())
            except ValueError:
                pass
        allowed = ", ".join(m.value for m in cls)
        raise ValueError(f"{what} must be one of {allowed} (or an mxsim.Rounding), got {spec!r}")


_KERNEL_IDS = {m: i for i, m in enumerate(Rounding)}

# every mode, in declaration order (tests and sweeps iterate over it)
ROUNDING_MODES = tuple(Rounding)
