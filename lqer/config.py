"""QuantConfig: what to quantize how, and TOML presets (lqer/configs/*.toml).

Format strings in TOML: "MXINT4/16" (MXINTb, b = 2..8, block 16), "BlockFP4/16" (the LQER
authors' block floating point), any mxsim format name ("MXFP4_E2M1/32"), or "none" for
full precision.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import mxsim
from mxsim.formats import FORMAT_CLASSES, MXIntFormat
from mxsim.formats import format_to_json as mxsim_format_to_json

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


@dataclass(frozen=True)
class QuantConfig:
    """Defaults as the LQER paper: W MXINT4 blocks of 16 along in, x MXINT8 blocks of 16,
    A and B MXINT8 blocks of 16, rank 32, factors blocked along their last dim ("as published")."""

    method: str = "l2qer"
    w_format: object = MXIntFormat(4, block_size=16)
    x_format: object = MXIntFormat(8, block_size=16)
    a_format: object = MXIntFormat(8, block_size=16)
    b_format: object = MXIntFormat(8, block_size=16)
    rank: int = 32
    factor_axis: str = "last"
    svd: str = "full"
    quantize_lowrank_output: bool = True
    name: str = ""
    extra: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        for f in ("w_format", "x_format", "a_format", "b_format"):
            object.__setattr__(self, f, parse_format(getattr(self, f)))
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a non-empty string, got {self.method!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, (int, float)) or self.rank <= 0:
            raise ValueError(f"rank must be a positive integer (or a fraction for methods that accept one), got {self.rank!r}")
        if self.factor_axis not in FACTOR_AXES:
            raise ValueError(f"factor_axis must be one of {FACTOR_AXES}, got {self.factor_axis!r}")
        if self.svd not in SVD_KINDS:
            raise ValueError(f"svd must be one of {SVD_KINDS}, got {self.svd!r}")
        object.__setattr__(self, "extra", dict(self.extra or {}))

    def replace(self, **kw) -> "QuantConfig":
        return dataclasses.replace(self, **kw)

    @property
    def lowrank_output_format(self):
        return self.x_format if self.quantize_lowrank_output else None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for f in ("w_format", "x_format", "a_format", "b_format"):
            d[f] = format_to_str(d[f])
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
    d.setdefault("name", p.stem)
    d.update(overrides)
    return QuantConfig.from_dict(d)
