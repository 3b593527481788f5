"""Each lqer method's hardware design (hwmodel), and the report's area tables.

lqer does not import hwmodel, so the method -> design mapping lives here: ``METHOD_DESIGNS``
has one entry per registered lqer method (a test holds them in step), each a function of the
method's QuantConfig and the costed model shape's linear layers returning (hwmodel design,
params). Formats are the config's (W, x, factor A/B), the rank is ``config.rank`` (hwmodel's
whole-model view: one unit time-shared by every
linear, sized for the largest); hwmodel is handed the config's mxsim.Rank itself and resolves it
per layer as lqer does. The config's input rotation becomes hwmodel's ``input_rotation`` stage.
"""

from __future__ import annotations

from .grid import DesignPoint


def _fmt(f) -> str:
    from lqer.config import format_to_str

    return format_to_str(f)


def _shape_layers(shape: str):
    from hwmodel.shapes import get_model as get_shape

    return [L for _, _, L in get_shape(shape).layer_shapes("all", 1)]


def design_rank(config, layers) -> int:
    """The integer rank of the time-shared unit (for tables): an absolute rank as given, a
    fraction resolved (mxsim.Rank.resolve, lqer's floor) for every layer and the largest kept.
    hwmodel itself is handed the Rank and resolves it per layer the same way."""
    r = config.rank
    if not r.is_fraction:
        return int(r.value)
    return max(r.resolve(L.in_features, L.out_features) for L in layers)


def _rotation(config, layers) -> str:
    """lqer.rotation kind -> hwmodel input_rotation: "auto" is a Hadamard when every input width
    is a power of two, else dense (SmolLM2's 576 and 1536 are not); "random" is dense."""
    from lqer.options import RotationOptions

    o = config.options
    rot = o.rotation if isinstance(o, RotationOptions) else "none"
    if rot == "auto":
        return "hadamard" if all(L.in_features & (L.in_features - 1) == 0 for L in layers) else "dense"
    return "dense" if rot == "random" else rot


def _fp16(config, layers):
    return "fp16", {}


def _mxint(config, layers):
    return "mxint", {"w_fmt": _fmt(config.w_format), "x_fmt": _fmt(config.x_format)}


def _lqer_mxint(config, layers):
    """LQER/L2QER/QERA: same datapath (L2QER's scale is folded into A), factors in a_format
    blocked along ``factor_axis``, x·A re-quantized into x's format."""
    return "lqer-mxint", {"w_fmt": _fmt(config.w_format), "x_fmt": _fmt(config.x_format),
                          "lr_fmt": _fmt(config.a_format), "rank": config.rank,
                          "lr_block_axis": config.factor_axis}


def _lrc(config, layers):
    """LRC(i): FP16 factors on the unquantized x; any number of iterations is the same hardware."""
    return "lrc", {"w_fmt": _fmt(config.w_format), "x_fmt": _fmt(config.x_format), "rank": config.rank}


METHOD_DESIGNS = {
    "fp": _fp16,
    "plain": _mxint,
    "rtn": _mxint,
    "gptq": _mxint,            # GPTQ changes the weights' values, not the datapath
    "lqer": _lqer_mxint,
    "l2qer": _lqer_mxint,
    "qera": _lqer_mxint,
    "qera_approx": _lqer_mxint,
    "llm_int8": lambda config, layers: ("llm.int8", {}),
    "llm_int4": lambda config, layers: ("llm.int4", {}),
    "lrc": _lrc,
}


def method_design(config, shape: str = "smollm2-135m") -> tuple[str, dict]:
    """(hwmodel design, params) of a QuantConfig's datapath for a model shape (see module doc)."""
    if config.method not in METHOD_DESIGNS:
        raise ValueError(f"no hardware design for method {config.method!r} (known: {', '.join(METHOD_DESIGNS)})")
    layers = _shape_layers(shape)
    design, params = METHOD_DESIGNS[config.method](config, layers)
    rot = _rotation(config, layers)
    if rot != "none" and design not in ("fp16", "llm.int8", "llm.int4"):
        params = {**params, "input_rotation": rot}
    if design in ("mxint", "lqer-mxint") and str(config.accumulator) != "float":
        # the MX units' accumulator (hwmodel.designs.base.mx_gemm); "float" is an emulation with
        # no hardware of its own: it is priced as the default aligned accumulator
        params = {**params, "accumulator": str(config.accumulator)}
    return design, params


def jsonable_params(params: dict) -> dict:
    """Design params for JSON files (an mxsim.Rank as its TOML spelling)."""
    from lqer.config import rank_to_toml
    from mxsim.rank import Rank

    return {k: (rank_to_toml(v) if isinstance(v, Rank) else v) for k, v in params.items()}


def _fmt_params(params: dict) -> dict:
    from lqer.config import parse_format

    return {k: (parse_format(v) if k.endswith("_fmt") else v) for k, v in params.items()}


def model_area(shape: str, design: str, params: dict, tech: str = "fpga", outliers=None):
    """(totals row, breakdown) of one design over every linear layer of a model shape."""
    from hwmodel.report import canonical, model_report

    d = canonical(design)
    r = model_report(shape, [d], tech=tech, params={d: _fmt_params(params)}, outliers=outliers)
    return r.totals.iloc[0].to_dict(), r.breakdown


def config_area(config, shape: str, tech: str = "fpga", outliers=None) -> tuple[float, str]:
    """(area, unit) of a QuantConfig's design over a model shape's linear layers."""
    design, params = method_design(config, shape)
    tot, _ = model_area(shape, design, params, tech, outliers if design.startswith("llm") else None)
    return float(tot["area"]), str(tot["unit"])


def area_for_point(p: DesignPoint, shape: str, tech: str, outliers=None, factor_axis: str | None = None):
    """(area, unit) of a sweep point's datapath over a model shape's linear layers."""
    from .configs import point_config

    return config_area(point_config(p, factor_axis), shape, tech, outliers)


# ----------------------------------------------------------------------------- the report's tables
HW_DESIGNS = [
    # (label, hwmodel design, params); formats as the report's W4A8 preset
    ("FP16", "fp16", {}),
    ("MXINT W4A8", "mxint", {"w_fmt": "MXINT4/16", "x_fmt": "MXINT8/16"}),
    ("MXINT W3A8", "mxint", {"w_fmt": "MXINT3/16", "x_fmt": "MXINT8/16"}),
    ("(L2)QER-MXINT W4A8 k=32", "lqer-mxint", {"w_fmt": "MXINT4/16", "x_fmt": "MXINT8/16", "lr_fmt": "MXINT8/16", "rank": 32}),
    ("LLM.int8()", "llm.int8", {}),
    ("LLM.int4()", "llm.int4", {}),
    ("GPTQ/AWQ W4 (FP16 compute)", "gptq", {}),
]


def hardware_tables(out, tech: str = "fpga", outliers=None) -> dict:
    """Area per design for SmolLM2 and LLaMA-7B shapes, the paper table, breakdown plots."""
    import pandas as pd
    from hwmodel.paper import paper_table

    from . import figures

    tables, md = {}, []
    for shape, tag in (("smollm2-135m", "smollm2"), ("llama-7b", "llama7b")):
        rows, bds = [], []
        for label, design, params in HW_DESIGNS:
            o = outliers if (tag == "smollm2" and design.startswith("llm")) else None
            tot, bd = model_area(shape, design, params, tech, o)
            rows.append({"design": label, "hwmodel_design": design, "area": tot["area"], "unit": tot["unit"],
                         "on_chip_memory_bits": tot["on_chip_memory_bits"],
                         "offchip_bytes_per_token": tot["offchip_bytes_per_token"], "cycles": tot["cycles"]})
            bds.append(bd.assign(design=label))
        df = pd.DataFrame(rows)
        df["area_ratio_to_fp16"] = df["area"] / float(df.loc[df.design == "FP16", "area"].iloc[0])
        tables[f"area_{tag}"] = df
        bd = pd.concat(bds, ignore_index=True)
        tables[f"breakdown_{tag}"] = bd
        figures.breakdown_plot(bd, out / f"hw_breakdown_{tag}.png",
                               title=f"Area of one time-shared unit for {shape}'s largest linear layer ({tech})")
    pt = paper_table(tech)
    tables["paper"] = pt
    unit = tables["area_smollm2"]["unit"].iloc[0]
    note = ("LLM.int8()/int4() outlier columns per layer: calibrated on SmolLM2 (|x| > 6 on the calibration "
            "tokens)" if outliers else "LLM.int8()/int4() outlier columns: hwmodel's default") + "; LLaMA-7B uses hwmodel's default."
    md.append(f"Each design is one hardware unit time-shared over all linear layers (hwmodel's whole-model view: the area "
              f"is the largest unit's; memory and cycles add up), technology `{tech}`, area in {unit}. L2QER and LQER "
              f"have the same datapath (L2QER's scale is folded into A). {note}\n")
    for tag, shape in (("smollm2", "SmolLM2-135M"), ("llama7b", "LLaMA-7B")):
        show = tables[f"area_{tag}"][["design", "area", "area_ratio_to_fp16", "on_chip_memory_bits",
                                      "offchip_bytes_per_token", "cycles"]]
        md.append(f"### {shape} layer shapes\n\n![breakdown](hw_breakdown_{tag}.png)\n\n"
                  f"*Stacked area per component for each design's largest unit; look for the LQER-MXINT bar staying "
                  f"close to plain MXINT and far below FP16 and the LLM.int8()/GPTQ designs.* "
                  f"Data: [hw_area_{tag}.csv](hw_area_{tag}.csv), [hw_breakdown_{tag}.csv](hw_breakdown_{tag}.csv).\n\n"
                  + show.to_markdown(index=False, floatfmt=".4g") + "\n")
    cols = [c for c in ("design", "rows", "paper_area", "paper_ratio", "model_ratio", "diff_%", "fit_ratio",
                        "fit_diff_%", "within_10%_fit") if c in pt.columns]
    md.append("### Model vs the paper's figures (one LLaMA-7B MLP layer, x 1×4096 · W 4096×11008, k = 32)\n\n"
              "*Ratios to FP16: the paper's (authors' workbook) beside hwmodel's, with the difference; "
              "`fit` rows use hwmodel's documented one-parameter FP16 fit. Gaps are explained in "
              "[hw_paper.csv](hw_paper.csv) (columns assumptions, gap).*\n\n"
              + pt[cols].to_markdown(index=False, floatfmt=".4g") + "\n")
    return {"tables": tables, "markdown": "\n".join(md)}


