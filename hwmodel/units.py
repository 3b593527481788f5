"""Unit costs: the component vocabulary and the per-technology cost tables.

Counts (how many of each component a design needs) live in ``hwmodel.designs``; this module
only says how much ONE component costs. Tables are CSV files, one per technology:

    hwmodel/costs/<tech>.csv   columns: component,a,b,cost,unit,source

* ``component`` is a name from :data:`COMPONENTS` (below); ``a``/``b`` are integers (0 where
  the component has no such parameter); ``cost`` is a float in ``unit`` ("LUT", "GE",
  "transistor", ...); ``source`` is free text saying where the number comes from.
* Lookup: an exact ``(component, a, b)`` row wins. Otherwise the nearest row of the same
  component (distance in log of the component's size measure) is scaled by the component's
  documented scaling law, ``cost * size(a, b) / size(a_row, b_row)``, and the returned source
  says so. A component missing from the table, or an unknown technology, is a ValueError.

Technology names: ``fpga`` (hand-written LUT table), ``asic`` (hand-written gate equivalents),
``xilinx``, ``ecp5``, ``cmos`` (tables written by ``hwmodel calibrate`` from Yosys runs), or a
path to any CSV in the same schema.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

COLUMNS = ["component", "a", "b", "cost", "unit", "source"]
COSTS_DIR = Path(__file__).resolve().parent / "costs"


@dataclass(frozen=True)
class Component:
    name: str
    params: str  # what a and b mean
    law: str  # the scaling law used when no exact row exists
    size: Callable[[int, int], float]


def _c(name, params, law, size):
    return Component(name, params, law, size)


_one = lambda a, b: 1.0  # noqa: E731  (cost independent of a, b: nearest row used as is)

COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in [
        _c("int_mul", "a x b bits, signed (two's complement or sign-magnitude)", "cost ∝ a·b", lambda a, b: a * b),
        _c("int_add", "a-bit adder/subtractor", "cost ∝ a", lambda a, b: a),
        _c("comparator", "a-bit magnitude comparator", "cost ∝ a", lambda a, b: a),
        _c("mux2", "2:1 multiplexer, a bits wide", "cost ∝ a", lambda a, b: a),
        _c("barrel_shifter", "a data bits, b shift-amount bits", "cost ∝ a·b", lambda a, b: a * b),
        _c("max_tree", "max of b inputs of a bits (shared-exponent unit)", "cost ∝ a·(b-1)", lambda a, b: a * max(b - 1, 1)),
        _c("leading_one", "leading-one detector / priority encoder of a bits", "cost ∝ a", lambda a, b: a),
        _c("exp_add", "a-bit exponent adder", "cost ∝ a", lambda a, b: a),
        _c("int_to_fp16", "a-bit signed int to FP16", "cost ∝ a", lambda a, b: a),
        _c("fp16_to_int", "FP16 to a-bit signed int (round, saturate)", "cost ∝ a", lambda a, b: a),
        _c("fp16_mul", "IEEE half multiplier", "constant", _one),
        _c("fp16_add", "IEEE half adder", "constant", _one),
        _c("fp16_div", "IEEE half divider, pipelined II=1", "constant", _one),
        _c("fp32_add", "IEEE single adder", "constant", _one),
        _c("fp32_mul", "IEEE single multiplier", "constant", _one),
        _c("fp32_div", "IEEE single divider, pipelined II=1", "constant", _one),
        _c("fp64_mul", "IEEE double multiplier", "constant", _one),
        _c("fp64_add", "IEEE double adder", "constant", _one),
        _c("fp64_div", "IEEE double divider, pipelined II=1", "constant", _one),
        _c("fp16_to_fp64", "half to double conversion", "constant", _one),
        _c("fp64_to_fp16", "double to half conversion (round)", "constant", _one),
        _c("fp64_to_int", "double to a-bit signed int (round, saturate)", "cost ∝ a", lambda a, b: a),
        _c("fixed_acc", "a-bit accumulator: adder + register", "cost ∝ a", lambda a, b: a),
        _c("register_bit", "one flip-flop", "constant", _one),
        _c("sram_bit", "one bit of on-chip RAM", "constant", _one),
    ]
}

TECHS = {
    "fpga": "fpga_lut.csv",
    "fpga_lut": "fpga_lut.csv",
    "asic": "asic_ge.csv",
    "asic_ge": "asic_ge.csv",
    "xilinx": "yosys_xilinx.csv",
    "ecp5": "yosys_ecp5.csv",
    "cmos": "yosys_cmos.csv",
    "sky130": "yosys_sky130.csv",
}


def _check_int(name: str, v, minimum: int = 0) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) and not (
            isinstance(v, float) and v.is_integer()):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


class UnitCostTable:
    """One technology's unit costs (a validated DataFrame in the schema above)."""

    def __init__(self, rows: pd.DataFrame, name: str = "custom"):
        missing = [c for c in COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"unit-cost table {name!r} lacks columns {missing}; need {COLUMNS}")
        df = rows[COLUMNS].copy()
        for i, r in df.iterrows():
            if r["component"] not in COMPONENTS:
                raise ValueError(
                    f"unit-cost table {name!r} row {i}: unknown component {r['component']!r}; "
                    f"allowed: {sorted(COMPONENTS)}"
                )
            cost = float(r["cost"])
            if not math.isfinite(cost) or cost < 0:
                raise ValueError(f"unit-cost table {name!r} row {i}: cost must be finite and >= 0, got {r['cost']!r}")
        df["a"] = df["a"].astype(int)
        df["b"] = df["b"].astype(int)
        df["cost"] = df["cost"].astype(float)
        df["source"] = df["source"].fillna("").astype(str)
        df["unit"] = df["unit"].astype(str)
        units = set(df["unit"])
        if len(units) > 1:
            raise ValueError(f"unit-cost table {name!r} mixes units {sorted(units)}; one unit per table")
        self.rows = df.reset_index(drop=True)
        self.name = name
        self.unit = next(iter(units)) if units else ""
        self._memo: dict = {}

    # --- I/O -----------------------------------------------------------------------------
    @classmethod
    def from_csv(cls, path, name: str | None = None) -> "UnitCostTable":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"unit-cost table file {str(path)!r} does not exist")
        df = pd.read_csv(path, comment=None, keep_default_na=False, dtype={"component": str, "unit": str, "source": str})
        return cls(df, name or path.stem)

    def to_csv(self, path) -> None:
        self.rows.to_csv(path, index=False, columns=COLUMNS)

    # --- lookup --------------------------------------------------------------------------
    def cost(self, component: str, a: int = 0, b: int = 0) -> tuple[float, str]:
        """Cost of one ``component`` with parameters (a, b), and a note saying where it came from."""
        if component not in COMPONENTS:
            raise ValueError(f"component must be one of {sorted(COMPONENTS)}, got {component!r}")
        a = _check_int("a", a)
        b = _check_int("b", b)
        key = (component, a, b)
        if key not in self._memo:
            self._memo[key] = self._lookup(component, a, b)
        return self._memo[key]

    def _lookup(self, component: str, a: int, b: int) -> tuple[float, str]:
        sub = self.rows[self.rows["component"] == component]
        if sub.empty:
            raise ValueError(f"unit-cost table {self.name!r} has no row for component {component!r}")
        exact = sub[(sub["a"] == a) & (sub["b"] == b)]
        if not exact.empty:
            r = exact.iloc[0]
            return float(r["cost"]), str(r["source"])
        comp = COMPONENTS[component]
        target = comp.size(a, b)
        if target <= 0:
            raise ValueError(f"{component}: size measure is 0 for a={a}, b={b}; give a, b >= 1")
        best, best_key = None, None
        for _, r in sub.iterrows():
            s = comp.size(int(r["a"]), int(r["b"]))
            if s <= 0:
                continue
            key = (abs(math.log(target / s)), abs(int(r["a"]) - a) + abs(int(r["b"]) - b))
            if best_key is None or key < best_key:
                best, best_key = r, key
        if best is None:
            raise ValueError(f"unit-cost table {self.name!r}: no usable row to scale for {component}")
        s = comp.size(int(best["a"]), int(best["b"]))
        scaled = float(best["cost"]) * target / s
        if comp.law == "constant":
            note = f"row ({best['a']},{best['b']}) used as is (constant law): {best['source']}"
        else:
            note = f"scaled from row ({best['a']},{best['b']}) by {comp.law}: {best['source']}"
        return scaled, note


def table_path(tech) -> Path:
    """Resolve a technology name or a CSV path to a file path (ValueError if unknown)."""
    if isinstance(tech, os.PathLike) or (isinstance(tech, str) and (tech.endswith(".csv") or os.sep in tech)):
        p = Path(tech)
        if not p.is_file():
            raise ValueError(f"tech: unit-cost table file {str(p)!r} does not exist")
        return p
    if not isinstance(tech, str) or tech.lower() not in TECHS:
        raise ValueError(f"tech must be one of {sorted(TECHS)} or a path to a .csv table, got {tech!r}")
    p = COSTS_DIR / TECHS[tech.lower()]
    if not p.is_file():
        raise ValueError(
            f"tech {tech!r}: table {p.name} is not there (Yosys tables come from `hwmodel calibrate`)"
        )
    return p


_CACHE: dict[str, UnitCostTable] = {}


def load_table(tech="fpga") -> UnitCostTable:
    if isinstance(tech, UnitCostTable):
        return tech
    p = table_path(tech)
    key = str(p.resolve())
    mtime = p.stat().st_mtime
    hit = _CACHE.get(key)
    if hit is not None and getattr(hit, "_mtime", None) == mtime:
        return hit
    t = UnitCostTable.from_csv(p, name=str(tech))
    t._mtime = mtime
    _CACHE[key] = t
    return t


def components_doc() -> pd.DataFrame:
    return pd.DataFrame([{"component": c.name, "a, b": c.params, "scaling law": c.law} for c in COMPONENTS.values()])
