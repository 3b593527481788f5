"""Design-space grids: read from TOML, expanded into normalised design points.

A grid file has three tables (all optional except ``[grid]`` or ``[[points]]``):

    [settings]            # how each point is evaluated (same for every point)
    model = "smollm2-135m"
    windows = 2           # WikiText-2 test windows for perplexity
    seq_len = 512
    calib_samples = 8     # calibration samples from the validation split
    calib_seq_len = 512
    seed = 0
    tech = "fpga"         # hwmodel technology for the area column
    hw_shape = "smollm2-135m"   # hwmodel model shape whose linear layers are costed

    [grid]                # the Cartesian product of these lists
    method = ["plain", "lqer", "l2qer"]
    w_bits = [3, 4]
    a_bits = [8]
    block = [16]
    rank = [32]

    [[points]]            # extra single points (any field missing takes the grid's first value)
    method = "fp"
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from .util import UserError

METHODS = ("fp", "plain", "lqer", "l2qer", "qera", "llm_int8", "rtn", "gptq", "lrc")
LOW_RANK = ("lqer", "l2qer", "qera", "lrc")
GRID_KEYS = ("method", "w_bits", "a_bits", "block", "rank")

DEFAULT_SETTINGS = {
    "model": "smollm2-135m",
    "windows": 2,
    "seq_len": 512,
    "calib_samples": 8,
    "calib_seq_len": 512,
    "seed": 0,
    "tech": "fpga",
    "hw_shape": None,  # None: the shape named by `model` when hwmodel knows it, else smollm2-135m
    "factor_axis": None,  # None: the lqer preset's default (the paper's "as published" blocking)
    "device": None,  # None: auto (CUDA when present)
    "svd": "randomized",  # lqer's SVD for the low-rank factors ("full" as the paper)
    "max_blocks": None,  # None: every decoder block; N: only the first N blocks (smoke tests)
}

DEFAULT_GRID = Path(__file__).with_name("grids") / "default.toml"


@dataclass(frozen=True)
class DesignPoint:
    method: str
    w_bits: int | None
    a_bits: int | None
    block: int | None
    rank: int

    @property
    def label(self) -> str:
        if self.method == "fp":
            return "fp"
        r = f" k={self.rank}" if self.method in LOW_RANK else ""
        return f"{self.method} W{self.w_bits}A{self.a_bits} b{self.block}{r}"

    def to_dict(self) -> dict:
        return asdict(self)


def normalise_point(method, w_bits, a_bits, block, rank) -> DesignPoint:
    """Drop the fields a method ignores so equal designs hash equally."""
    if method == "fp":
        return DesignPoint("fp", None, None, None, 0)
    if method not in LOW_RANK:
        rank = 0
    return DesignPoint(method, int(w_bits), int(a_bits), int(block), int(rank))


def _check_int_list(name, values, lo, hi):
    if not isinstance(values, list) or not values:
        raise UserError(f"grid.{name} must be a non-empty list, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise UserError(f"grid.{name}: {v!r} is not an integer in [{lo}, {hi}]")


def _check_methods(values, where):
    if not isinstance(values, list) or not values:
        raise UserError(f"{where}.method must be a non-empty list, got {values!r}")
    for m in values:
        if m not in METHODS:
            raise UserError(f"{where}.method: unknown method {m!r} (known: {', '.join(METHODS)})")


def load_grid(path: str | Path | None) -> tuple[dict, list[DesignPoint]]:
    """(settings, unique design points in file order) from a TOML grid file."""
    path = Path(path) if path is not None else DEFAULT_GRID
    if not path.is_file():
        raise UserError(f"grid file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"grid file {str(path)!r} is not valid TOML: {e}") from None
    return parse_grid(data, where=str(path))


def parse_grid(data: dict, where: str = "grid") -> tuple[dict, list[DesignPoint]]:
    unknown = set(data) - {"settings", "grid", "points"}
    if unknown:
        raise UserError(f"{where}: unknown table(s) {sorted(unknown)} (allowed: settings, grid, points)")
    settings = dict(DEFAULT_SETTINGS)
    extra = set(data.get("settings", {})) - set(DEFAULT_SETTINGS)
    if extra:
        raise UserError(f"{where}: unknown setting(s) {sorted(extra)} (allowed: {sorted(DEFAULT_SETTINGS)})")
    settings.update(data.get("settings", {}))
    for k in ("windows", "seq_len", "calib_samples", "calib_seq_len"):
        v = settings[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{where}: settings.{k} must be a positive integer, got {v!r}")

    grid = data.get("grid", {})
    bad = set(grid) - set(GRID_KEYS)
    if bad:
        raise UserError(f"{where}: unknown grid key(s) {sorted(bad)} (allowed: {', '.join(GRID_KEYS)})")
    defaults = {"method": ["plain"], "w_bits": [4], "a_bits": [8], "block": [16], "rank": [32]}
    full = {k: grid.get(k, defaults[k]) for k in GRID_KEYS}
    _check_methods(full["method"], "grid")
    _check_int_list("w_bits", full["w_bits"], 2, 16)
    _check_int_list("a_bits", full["a_bits"], 2, 16)
    _check_int_list("block", full["block"], 1, 4096)
    _check_int_list("rank", full["rank"], 1, 1 << 20)

    points: list[DesignPoint] = []
    if grid:
        for combo in itertools.product(*(full[k] for k in GRID_KEYS)):
            points.append(normalise_point(*combo))
    for i, p in enumerate(data.get("points", [])):
        bad = set(p) - set(GRID_KEYS)
        if bad:
            raise UserError(f"{where}: points[{i}] has unknown key(s) {sorted(bad)}")
        vals = {k: p.get(k, full[k][0]) for k in GRID_KEYS}
        _check_methods([vals["method"]], f"points[{i}]")
        for k, lo, hi in (("w_bits", 2, 16), ("a_bits", 2, 16), ("block", 1, 4096), ("rank", 1, 1 << 20)):
            _check_int_list(k, [vals[k]], lo, hi)
        points.append(normalise_point(*(vals[k] for k in GRID_KEYS)))
    if not points:
        raise UserError(f"{where}: no design points (give a [grid] table or [[points]])")
    seen, unique = set(), []
    for p in points:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return settings, unique
