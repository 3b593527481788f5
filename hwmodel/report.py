"""Per-layer and whole-model reports as pandas DataFrames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .designs import ALIASES, DESIGNS, build
from .designs.base import Layer
from .shapes import get_model
from .units import load_table

OUTLIER_DESIGNS = ("llm.int8", "llm.int4")


def canonical(design: str) -> str:
    if not isinstance(design, str):
        raise ValueError(f"design must be a name, got {design!r}")
    key = ALIASES.get(design.lower(), design.lower())
    if key not in DESIGNS:
        raise ValueError(f"design must be one of {sorted(DESIGNS)}, got {design!r}")
    return key


def parse_designs(designs) -> list[str]:
    if isinstance(designs, str):
        designs = [d for d in designs.split(",") if d.strip()]
    if not designs:
        raise ValueError("designs must name at least one design")
    return [canonical(d.strip()) for d in designs]


def layer_report(layer: Layer, designs, tech="fpga", params: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, breakdown) for one layer. ``params``: {design: {kwarg: value}}."""
    table = load_table(tech)
    params = params or {}
    summ, bds = [], []
    for d in parse_designs(designs):
        c = build(d, layer, **params.get(d, {}))
        summ.append(c.summary(table))
        bds.append(c.breakdown(table))
    s = pd.DataFrame(summ)
    if "fp16" in set(s.design):
        s["ratio_to_fp16"] = s["area"] / float(s.loc[s.design == "fp16", "area"].iloc[0])
    return s, pd.concat(bds, ignore_index=True)


def load_outliers(path) -> dict[str, int]:
    """Read an outlier-count file: JSON object {module_name: n_outlier_columns}."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"outliers file {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"outliers file {str(p)!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"outliers file {str(p)!r} must hold a JSON object {{layer_name: n}}")
    out = {}
    for k, v in data.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"outliers file {str(p)!r}: value for {k!r} must be an integer >= 0, got {v!r}")
        out[str(k)] = v
    return out


def _match_outliers(outliers: dict, name: str):
    if name in outliers:
        return outliers[name]
    for k, v in outliers.items():  # tolerate prefixes (e.g. 'base_model.model.' or no 'model.')
        if k.endswith(name) or name.endswith(k):
            return v
    return None


@dataclass
class ModelReport:
    linears: pd.DataFrame  # one row per (design, projection): summed over blocks
    totals: pd.DataFrame  # one row per design
    breakdown: pd.DataFrame  # breakdown of each design's largest unit


def model_report(model: str, designs, tech="fpga", layer: str = "all", tokens: int = 1, outliers=None,
                 params: dict | None = None) -> ModelReport:
    """Whole-model report. Each design is ONE hardware unit time-shared over all linears, so its
    area is the largest unit's; cycles, memory and off-chip bytes add up over all linears.
    ``outliers``: None (design default), an int for every layer, or {module_name: n}."""
    shape = get_model(model)
    table = load_table(tech)
    params = params or {}
    if outliers is not None and not isinstance(outliers, dict):
        if isinstance(outliers, (bool, np.bool_)) or not isinstance(outliers, (int, np.integer)) or outliers < 0:
            raise ValueError(f"outliers must be an integer >= 0 or a dict, got {outliers!r}")
        outliers = int(outliers)
    memo: dict = {}
    rows, bds = [], {}
    for d in parse_designs(designs):
        for name, proj, L in shape.layer_shapes(layer, tokens):
            kw = dict(params.get(d, {}))
            if d in OUTLIER_DESIGNS and outliers is not None:
                n = outliers if isinstance(outliers, int) else _match_outliers(outliers, name)
                if n is not None:
                    kw["outliers"] = min(n, L.in_features)
            key = (d, L.in_features, L.out_features, tuple(sorted(kw.items(), key=str)))
            if key not in memo:
                c = build(d, Layer(tokens, L.in_features, L.out_features, proj), **kw)
                memo[key] = (c.summary(table), c)
            s, c = memo[key]
            s = dict(s, layer=name, projection=proj)
            rows.append(s)
            if d not in bds or s["area"] > bds[d][0]:
                bds[d] = (s["area"], c)
    per = pd.DataFrame(rows)
    sum_cols = [c for c in per.columns if c.startswith("mem_")] + ["on_chip_memory_bits", "offchip_bytes_per_token", "cycles"]
    g = per.groupby(["design", "projection", "in", "out"], sort=False)
    linears = g[sum_cols].sum().reset_index()
    linears.insert(4, "blocks", g.size().values)
    linears.insert(5, "area", g["area"].max().values)
    # storage (weights, exponents, scales, low-rank factors), off-chip traffic and cycles add up over
    # linears; on-chip buffers are reused by the time-shared unit, so the largest one counts.
    reuse = ("mem_outlier_buffers_bits", "mem_activation_buffers_bits", "on_chip_memory_bits")
    tot = per.groupby("design", sort=False).agg(area=("area", "max"), unit=("unit", "first"), linears=("layer", "count"),
                                                **{c: (c, "max" if c in reuse else "sum") for c in sum_cols})
    tot = tot.reset_index()
    tot.insert(1, "model", shape.name)
    if "fp16" in set(tot.design):
        f = tot.loc[tot.design == "fp16"].iloc[0]
        tot["area_ratio_to_fp16"] = tot["area"] / f["area"]
        tot["offchip_ratio_to_fp16"] = tot["offchip_bytes_per_token"] / f["offchip_bytes_per_token"]
    bd = pd.concat([c.breakdown(table) for _, c in bds.values()], ignore_index=True)
    return ModelReport(linears, tot, bd)


def to_text(df: pd.DataFrame, fmt: str = "md", floatfmt: str = ".4g") -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "md":
        return df.to_markdown(index=False, floatfmt=floatfmt)
    raise ValueError(f"format must be 'md' or 'csv', got {fmt!r}")
