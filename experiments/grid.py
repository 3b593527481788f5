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
    hw_shape = "smollm2-135m"   # hwmodel model shape whose linear layers are costed (default: the model's own)

    [grid]                # the Cartesian product of these lists
    method = ["plain", "lqer", "l2qer"]
    w_bits = [3, 4]
    a_bits = [8]
    block = [16]
    rank = [32]
    scale_rule = ["floor", "rceil"]   # MX shared-scale rule (floor = OCP; ceil, even, rceil)
    accumulator = ["float", "fp32", "fixed:24:8"]   # the MX datapath's accumulator (mxsim spellings;
                          # float = fake-quantize + float matmul; priced by hwmodel's MX units)

    [[points]]            # extra single points (any field missing takes the grid's first value)
    method = "fp"
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from mxsim.errors import UserError, user_input
from mxsim.formats import MXIntFormat

# a point's formats are MXINT<w_bits>/<block>@<scale_rule> (experiments.configs.point_config), so the
# bit widths and scale rules a grid may name are the ones mxsim's MXIntFormat implements
ELEMENT_BITS = MXIntFormat.ELEMENT_BITS
SCALE_RULES = tuple(r.value for r in MXIntFormat.SCALE_RULES)  # "floor" (OCP's) first
GRID_KEYS = ("method", "w_bits", "a_bits", "block", "rank", "scale_rule", "accumulator")

DEFAULT_SETTINGS = {
    "model": "smollm2-135m",
    "windows": 2,
    "seq_len": 512,
    "calib_samples": 8,
    "calib_seq_len": 512,
    "seed": 0,
    "tech": "fpga",
    "hw_shape": None,  # None: the swept model's own layer shapes (experiments.hardware.sweep_shape)
    "factor_axis": None,  # None: the lqer preset's default (the paper's "as published" blocking)
    "device": None,  # None: auto (CUDA when present)
    "svd": "randomized",  # lqer's SVD for the low-rank factors ("full" as the paper)
    "max_blocks": None,  # None: every decoder block; N: only the first N blocks (smoke tests)
}

DEFAULT_GRID = Path(__file__).with_name("grids") / "default.toml"


def _low_rank(method: str) -> bool:
    from lqer.methods import get_method

    return get_method(method).low_rank


def _full_precision(method: str) -> bool:
    """The method keeps the float weights (lqer.methods.Method.full_precision): no formats, no rank."""
    from lqer.methods import get_method

    return get_method(method).full_precision


@dataclass(frozen=True)
class DesignPoint:
    method: str
    w_bits: int | None
    a_bits: int | None
    block: int | None
    rank: int
    scale_rule: str = "floor"
    accumulator: str = "float"  # an mxsim accumulator's canonical spelling (str of the typed value)

    @property
    def label(self) -> str:
        if _full_precision(self.method):
            return self.method
        r = f" k={self.rank}" if _low_rank(self.method) else ""
        s = f" @{self.scale_rule}" if self.scale_rule != "floor" else ""
        a = f" acc={self.accumulator}" if self.accumulator != "float" else ""
        return f"{self.method} W{self.w_bits}A{self.a_bits} b{self.block}{r}{s}{a}"

    def format_suffix(self) -> str:
        """What the point adds to an mxsim format name ("@rceil"; nothing for OCP's floor)."""
        return "" if self.scale_rule == "floor" else f"@{self.scale_rule}"

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["scale_rule"] == "floor":
            del d["scale_rule"]  # OCP points keep the cache keys they had before scale rules existed
        if d["accumulator"] == "float":
            del d["accumulator"]  # float-emulation points keep theirs from before the accumulator axis
        return d


def normalise_point(method, w_bits, a_bits, block, rank, scale_rule="floor", accumulator="float") -> DesignPoint:
    """Drop the fields a method ignores so equal designs hash equally; the accumulator in its
    canonical spelling ("fixed:24:8", not "fixed:24:8:saturate")."""
    if _full_precision(method):
        return DesignPoint(method, None, None, None, 0)
    if not _low_rank(method):
        rank = 0
    from mxsim.accumulators import parse_accumulator

    acc = str(parse_accumulator(accumulator, what="accumulator"))
    return DesignPoint(method, int(w_bits), int(a_bits), int(block), int(rank), str(scale_rule), acc)


def _check_accumulators(values, where):
    from mxsim.accumulators import parse_accumulator

    if not isinstance(values, list) or not values:
        raise UserError(f"{where}.accumulator must be a non-empty list, got {values!r}")
    for v in values:
        with user_input(f"{where}.accumulator"):
            parse_accumulator(v, what="accumulator")


def _check_scale_rules(values, where):
    if not isinstance(values, list) or not values:
        raise UserError(f"{where}.scale_rule must be a non-empty list, got {values!r}")
    for v in values:
        if v not in SCALE_RULES:
            raise UserError(f"{where}.scale_rule: unknown rule {v!r} (allowed: {', '.join(SCALE_RULES)})")


def _check_int_list(name, values, lo, hi):
    if not isinstance(values, list) or not values:
        raise UserError(f"grid.{name} must be a non-empty list, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise UserError(f"grid.{name}: {v!r} is not an integer in [{lo}, {hi}]")


def _check_methods(values, where):
    """Methods are lqer's registered ones (each has a hardware design in experiments.hardware)."""
    from lqer.methods import method_names

    if not isinstance(values, list) or not values:
        raise UserError(f"{where}.method must be a non-empty list, got {values!r}")
    for m in values:
        if m not in method_names():
            raise UserError(f"{where}.method: unknown method {m!r} (known: {', '.join(method_names())})")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_settings(settings: dict, where: str = "grid") -> None:
    """Every setting's type and spelling, before any point runs (a bad one would fail every point
    after its work). The model path is checked by the sweep (it may live on remote workers only)."""
    from hwmodel.shapes import get_model as get_shape
    from hwmodel.units import table_path
    from lqer.config import FACTOR_AXES, SVD_KINDS

    for k in ("windows", "seq_len", "calib_samples", "calib_seq_len"):
        if not _is_int(settings[k]) or settings[k] < 1:
            raise UserError(f"{where}: settings.{k} must be a positive integer, got {settings[k]!r}")
    if not _is_int(settings["seed"]):
        raise UserError(f"{where}: settings.seed must be an integer, got {settings['seed']!r}")
    mb = settings["max_blocks"]
    if mb is not None and (not _is_int(mb) or mb < 1):
        raise UserError(f"{where}: settings.max_blocks must be a positive integer (omit it for every block), got {mb!r}")
    if not isinstance(settings["model"], str) or not settings["model"]:
        raise UserError(f"{where}: settings.model must be a model name or path, got {settings['model']!r}")
    for k, allowed in (("svd", SVD_KINDS), ("factor_axis", FACTOR_AXES)):
        v = settings[k]
        if v is not None and v not in allowed:
            raise UserError(f"{where}: settings.{k} must be one of {', '.join(allowed)}, got {v!r}")
    dev = settings["device"]
    if dev is not None and not (isinstance(dev, str) and (dev in ("auto", "cpu", "cuda") or
                                                          (dev.startswith("cuda:") and dev[5:].isdigit()))):
        raise UserError(f"{where}: settings.device must be auto, cpu, cuda or cuda:N, got {dev!r}")
    with user_input(f"{where}: settings.tech"):
        table_path(settings["tech"])
    if settings["hw_shape"] is not None:
        with user_input(f"{where}: settings.hw_shape"):
            if not isinstance(settings["hw_shape"], str):
                raise ValueError(f"must be a model shape name, got {settings['hw_shape']!r}")
            get_shape(settings["hw_shape"])


def _check_formats(p: "DesignPoint", where: str) -> None:
    """The point's MXINT formats exist in mxsim (element bits and block size as mxsim allows),
    and its accumulator can run them (the method's operands are MX, a FixedPoint holds a block sum)."""
    if _full_precision(p.method):
        return
    from mxsim.formats import MXIntFormat

    for key, bits in (("w_bits", p.w_bits), ("a_bits", p.a_bits)):
        with user_input(f"{where}: point {p.label}: {key}={bits}, block={p.block}, scale_rule={p.scale_rule}"):
            MXIntFormat(bits, block_size=p.block).with_scale_rule(p.scale_rule)
    if p.accumulator != "float":
        from .configs import point_config

        with user_input(f"{where}: point {p.label}"):
            point_config(p)  # QuantConfig checks the accumulator against the method and formats


def load_grid(path: str | Path | None) -> tuple[dict, list[DesignPoint]]:
    """(settings, unique design points in file order) from a TOML grid file."""
    path = Path(path) if path is not None else DEFAULT_GRID
    if not path.is_file():
        raise UserError(f"grid file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"grid file {str(path)!r} is not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"grid file {str(path)!r} cannot be read: {e}") from None
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
    check_settings(settings, where)

    grid = data.get("grid", {})
    bad = set(grid) - set(GRID_KEYS)
    if bad:
        raise UserError(f"{where}: unknown grid key(s) {sorted(bad)} (allowed: {', '.join(GRID_KEYS)})")
    defaults = {"method": ["plain"], "w_bits": [4], "a_bits": [8], "block": [16], "rank": [32], "scale_rule": ["floor"],
                "accumulator": ["float"]}
    full = {k: grid.get(k, defaults[k]) for k in GRID_KEYS}
    _check_methods(full["method"], "grid")
    _check_int_list("w_bits", full["w_bits"], *ELEMENT_BITS)
    _check_int_list("a_bits", full["a_bits"], *ELEMENT_BITS)
    _check_int_list("block", full["block"], 1, 4096)
    _check_int_list("rank", full["rank"], 1, 1 << 20)
    _check_scale_rules(full["scale_rule"], "grid")
    _check_accumulators(full["accumulator"], "grid")

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
        for k, lo, hi in (("w_bits", *ELEMENT_BITS), ("a_bits", *ELEMENT_BITS), ("block", 1, 4096), ("rank", 1, 1 << 20)):
            _check_int_list(k, [vals[k]], lo, hi)
        _check_scale_rules([vals["scale_rule"]], f"points[{i}]")
        _check_accumulators([vals["accumulator"]], f"points[{i}]")
        points.append(normalise_point(*(vals[k] for k in GRID_KEYS)))
    if not points:
        raise UserError(f"{where}: no design points (give a [grid] table or [[points]])")
    for p in points:
        _check_formats(p, where)
    seen, unique = set(), []
    for p in points:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return settings, unique
