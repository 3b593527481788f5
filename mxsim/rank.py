"""Rank of a low-rank correction: an absolute integer, or a fraction of the weight matrix with
its reading. One type for lqer (which factorizes) and hwmodel (which prices the factors), so
both turn "10%" into the same integer.

Readings of a fraction f for a d_out × d_in weight:
  of_min_dim: k = floor(f · min(d_in, d_out))                  (the LRC paper's "10% rank", reading a)
  of_params:  k = floor(f · d_in · d_out / (d_in + d_out))     (the factors hold f of W's parameters)
Both clamp to 1..min(d_in, d_out). An absolute rank must lie in 1..min(d_in, d_out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RANK_READINGS = ("absolute", "of_min_dim", "of_params")


@dataclass(frozen=True)
class Rank:
    value: int | float
    reading: str = "absolute"

    def __post_init__(self):
        if self.reading not in RANK_READINGS:
            raise ValueError(f"rank reading must be one of {RANK_READINGS}, got {self.reading!r}")
        v = self.value
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"rank must be a positive integer or a fraction in (0, 1], got {v!r}")
        if self.reading == "absolute":
            if not (isinstance(v, (int, np.integer)) and v >= 1):
                raise ValueError(f"an absolute rank must be a positive integer, got {v!r}")
            object.__setattr__(self, "value", int(v))
        else:
            if not (math.isfinite(float(v)) and 0 < float(v) <= 1):
                raise ValueError(f"a rank fraction ({self.reading}) must be in (0, 1], got {v!r}")
            object.__setattr__(self, "value", float(v))

    @classmethod
    def of(cls, spec, reading: str = "of_min_dim") -> "Rank":
        """A Rank from an int (absolute), a float fraction (under ``reading``) or a Rank."""
        if isinstance(spec, Rank):
            return spec
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, (bool, np.bool_)):
            return cls(int(spec))
        if isinstance(spec, (float, np.floating)):
            return cls(float(spec), reading)
        raise ValueError(f"rank must be a positive integer, a fraction in (0, 1] or a Rank, got {spec!r}")

    @classmethod
    def parse(cls, text: str) -> "Rank":
        """A command line's rank: ``32`` (absolute), ``0.1`` (a fraction, of_min_dim) or
        ``0.1:of_params`` (a fraction with its reading)."""
        value, _, reading = str(text).strip().partition(":")
        try:
            number = int(value) if value.lstrip("+").isdigit() else float(value)
        except ValueError:
            number = None
        if number is None or (reading and reading not in RANK_READINGS[1:]) or (reading and isinstance(number, int)):
            raise ValueError(f"rank must be a positive integer (32), a fraction in (0, 1] (0.1) or a fraction with "
                             f"its reading (0.1:{'|'.join(RANK_READINGS[1:])}), got {text!r}")
        return cls.of(number, reading or "of_min_dim")

    @property
    def is_fraction(self) -> bool:
        return self.reading != "absolute"

    def resolve(self, d_in: int, d_out: int) -> int:
        """The integer rank for a d_out × d_in weight."""
        cap = min(int(d_in), int(d_out))
        if self.reading == "absolute":
            if self.value > cap:
                raise ValueError(f"rank {self.value} out of range: must be in 1..{cap} (= min(d_in={d_in}, d_out={d_out}))")
            return self.value
        if self.reading == "of_min_dim":
            k = math.floor(self.value * cap + 1e-9)
        else:
            k = math.floor(self.value * d_in * d_out / (d_in + d_out) + 1e-9)
        return max(1, min(k, cap))

    def __str__(self):
        return str(self.value) if self.reading == "absolute" else f"{self.value:g} ({self.reading})"
