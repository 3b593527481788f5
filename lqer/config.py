"""QuantConfig: what to quantize how, and TOML presets (lqer/configs/*.toml).

Format strings in TOML: "MXINT4/16" (MXINTb, b = 2..8, block 16), "BlockFP4/16" (the LQER
authors' block floating point), any mxsim format name ("MXFP4_E2M1/32", "NVFP4"), with an MX scale rule
after "@" ("MXFP8_E4M3/32@rceil", "MXINT4/16@even"; floor, ceil, even, rceil), or "none" for
full precision.

Rank (``mxsim.Rank``): ``rank = 32`` (absolute), ``rank = 0.1`` (a fraction of
min(d_in, d_out)), or ``rank = {value = 0.1, reading = "of_params"}``; resolved per layer.
The method's options (lqer.options) are a table named after the method, e.g. ``[lrc]``.

Accumulator (mxsim.accumulators; lqer.datapath): ``accumulator = "float"`` (default: fake-quantize
+ float matmul), ``"exact"``, ``"fp32"``, ``{fp32 = {lanes = 4}}`` or
``{fixed = [24, 8], overflow = "saturate"}``: every MX GEMM of the replaced layers then runs on
mxsim.matmul with it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

import mxsim
from mxsim.formats import FORMAT_CLASSES, MXIntFormat
from mxsim.formats import format_to_json as mxsim_format_to_json
from mxsim.accumulators import Float, accumulator_to_toml, parse_accumulator
from mxsim.rank import Rank

from .options import MethodOptions

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
FACTOR_AXES = ("last", "reduction")
SVD_KINDS = ("full", "randomized")


NO_FORMAT = ("none", "fp", "fp32", "full", "")


def parse_format(spec):
    """A format object, None, or a string: "none" (full precision) or any mxsim format name
    ("MXINT3/16", "BlockFP4/16", ...; mxsim.get_format is the one parser) -> format or None."""
    if spec is None:
        return None
    if isinstance(spec, str) and spec.strip().lower() in NO_FORMAT:
        return None
    if not isinstance(spec, (str, *FORMAT_CLASSES)):
        raise ValueError(f"format must be a format object, a name or 'none', got {spec!r}")
    return mxsim.get_format(spec)


def format_to_str(fmt) -> str:
    return "none" if fmt is None else mxsim.format_to_str(fmt)


format_to_json = mxsim_format_to_json
format_from_str = parse_format


def parse_rank(spec) -> Rank:
    """int (absolute), float fraction (of_min_dim), {"value": v, "reading": r} or a Rank -> Rank."""
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"value", "reading"})
        if unknown or "value" not in spec:
            raise ValueError(f"rank table needs 'value' and may have 'reading', got keys {sorted(spec)}")
        return Rank(spec["value"], spec.get("reading", "of_min_dim" if isinstance(spec["value"], float)
                                            else "absolute"))
    return Rank.of(spec)


def rank_to_toml(rank: Rank):
    return rank.value if rank.reading in ("absolute", "of_min_dim") else {"value": rank.value, "reading": rank.reading}


@dataclass(frozen=True)
class QuantConfig:
    """Defaults as the LQER paper: W MXINT4 blocks of 16 along in, x MXINT8 blocks of 16,
    A and B MXINT8 blocks of 16, rank 32, factors blocked along their last dim ("as published").

    ``options``: the method's options (an instance of its ``Method.options`` class, or a dict
    of them; None = defaults). A config whose method changes keeps the option fields both
    methods share and resets the rest (lqer.options)."""

    method: str = "l2qer"
    w_format: object = MXIntFormat(4, block_size=16)
    x_format: object = MXIntFormat(8, block_size=16)
    a_format: object = MXIntFormat(8, block_size=16)
    b_format: object = MXIntFormat(8, block_size=16)
    rank: Rank = Rank(32)
    factor_axis: str = "last"
    svd: str = "full"
    quantize_lowrank_output: bool = True
    name: str = ""
    options: MethodOptions | None = None
    accumulator: object = Float()

    def __post_init__(self):
        from .methods import get_method

        for f in ("w_format", "x_format", "a_format", "b_format"):
            try:
                object.__setattr__(self, f, parse_format(getattr(self, f)))
            except ValueError as e:  # which of the four formats (a scale rule, a block size, a name)
                raise ValueError(f"{f}: {e}") from None
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a non-empty string, got {self.method!r}")
        method = get_method(self.method)
        try:
            object.__setattr__(self, "rank", parse_rank(self.rank))
        except ValueError as e:
            raise ValueError(f"rank: {e}") from None
        if self.factor_axis not in FACTOR_AXES:
            raise ValueError(f"factor_axis must be one of {FACTOR_AXES}, got {self.factor_axis!r}")
        if self.svd not in SVD_KINDS:
            raise ValueError(f"svd must be one of {SVD_KINDS}, got {self.svd!r}")
        object.__setattr__(self, "accumulator", parse_accumulator(self.accumulator, what="accumulator"))
        o = self.options
        if o is None or isinstance(o, dict):
            o = method.options.from_dict(o, self.method)
        elif isinstance(o, MethodOptions):
            o = o.converted(method.options)
        else:
            raise ValueError(f"options must be a dict or a lqer.options.MethodOptions, got {type(o).__name__}")
        object.__setattr__(self, "options", o)
        from .datapath import check_config_accumulator

        check_config_accumulator(self)  # a datapath accumulator needs the method's MX operands

    def replace(self, **kw) -> "QuantConfig":
        return dataclasses.replace(self, **kw)

    @property
    def lowrank_output_format(self):
        return self.x_format if self.quantize_lowrank_output else None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for f in ("w_format", "x_format", "a_format", "b_format"):
            d[f] = format_to_str(d[f])
        d["rank"] = rank_to_toml(self.rank)
        d["options"] = self.options.to_dict()
        d["accumulator"] = accumulator_to_toml(self.accumulator)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown QuantConfig keys: {sorted(unknown)} (allowed: {sorted(known)})")
        d = dict(d)
        for f in ("w_format", "x_format", "a_format", "b_format"):
            if f in d and isinstance(d[f], str):
                d[f] = format_from_str(d[f])
        return cls(**d)


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_config(name_or_path, **overrides) -> QuantConfig:
    """A preset name (W4A8, W3A8, W4A8-BFP, W4A4, ...) or a TOML file path -> QuantConfig."""
    if isinstance(name_or_path, QuantConfig):
        return name_or_path.replace(**overrides) if overrides else name_or_path
    p = Path(str(name_or_path))
    if not p.suffix == ".toml":
        cand = CONFIG_DIR / f"{name_or_path}.toml"
        if not cand.is_file():
            matches = [c for c in available_configs() if c.lower() == str(name_or_path).lower()]
            if not matches:
                raise ValueError(f"unknown config {name_or_path!r}; presets: {', '.join(available_configs())}")
            cand = CONFIG_DIR / f"{matches[0]}.toml"
        p = cand
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    try:
        with open(p, "rb") as f:
            d = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {e}") from None
    except OSError as e:
        raise ValueError(f"config file {str(p)!r} cannot be read: {e.strerror or e}") from None
    return _from_toml(d, p, overrides)


def _from_toml(d: dict, path: Path, overrides: dict) -> QuantConfig:
    """A TOML preset's dict -> QuantConfig: the method's options come from the table named
    after the method (the file's method; an overridden method keeps the shared fields)."""
    from .methods import get_method, method_names

    d = dict(d)
    d.setdefault("name", path.stem)
    method = d.get("method", QuantConfig.method)
    get_method(method)
    tables = {k: d.pop(k) for k in list(d) if isinstance(d[k], dict) and k not in ("rank", "accumulator")}
    stray = sorted(set(tables) - {method})
    if stray:
        what = "are other methods' tables" if set(stray) <= set(method_names()) else "are not tables lqer knows"
        raise ValueError(f"config {str(path)!r}: table(s) {stray} {what}; the options of method {method!r} "
                         f"go in a [{method}] table")
    if "options" in d:
        raise ValueError(f"config {str(path)!r}: write the options as a [{method}] table, not 'options'")
    if method in tables:
        d["options"] = get_method(method).options.from_dict(tables[method], method)
    d.update(overrides)
    return QuantConfig.from_dict(d)
