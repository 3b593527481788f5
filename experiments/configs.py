"""lqer QuantConfigs for experiments/: presets by name, and the config of a sweep point."""

from __future__ import annotations

from functools import lru_cache

from .grid import DesignPoint


def check_preset(name: str) -> None:
    from lqer.config import load_config

    from .util import UserError

    try:
        load_config(name)
    except ValueError as e:
        raise UserError(str(e)) from None


def preset(name: str):
    """The named lqer preset (cached QuantConfig)."""
    return _preset(name)


@lru_cache(maxsize=None)
def _preset(name: str):
    from lqer.config import load_config

    return load_config(name)


def describe_preset(name: str) -> str:
    from lqer.config import format_to_str

    c = _preset(name)
    return (f"W {format_to_str(c.w_format)}, x {format_to_str(c.x_format)}, A/B {format_to_str(c.a_format)}"
            f"/{format_to_str(c.b_format)} (factor blocks along the {c.factor_axis} dim), k={c.rank}")


def config_rank(name: str, method: str):
    """The rank of ``method`` at preset ``name`` for tables: the integer of an absolute rank, the
    fraction of a fractional one (mxsim.Rank.value), 0 for methods without a low-rank part."""
    from lqer.methods import get_method

    return _preset(name).rank.value if get_method(method).low_rank else 0


def make_config(preset: str, method: str, rank: int | None = None):
    kw = {"method": method}
    if rank is not None:
        kw["rank"] = rank
    return _preset(preset).replace(**kw)


def point_config(p: DesignPoint, factor_axis: str | None = None):
    """QuantConfig for a sweep point: MXINT<w>/<block> weights, MXINT<a>/<block> activations,
    factors as the W4A8 preset (MXINT8/16); fp is the full-precision config."""
    from lqer.config import QuantConfig, parse_format
    from lqer.methods import get_method

    if get_method(p.method).full_precision:
        return QuantConfig(method=p.method, name=p.label)
    kw = dict(method=p.method, w_format=parse_format(f"MXINT{p.w_bits}/{p.block}{p.format_suffix()}"),
              x_format=parse_format(f"MXINT{p.a_bits}/{p.block}{p.format_suffix()}"), name=p.label)
    if get_method(p.method).low_rank:
        kw["rank"] = p.rank
    if factor_axis:
        kw["factor_axis"] = factor_axis
    kw["accumulator"] = p.accumulator
    return _preset("W4A8").replace(**kw)
