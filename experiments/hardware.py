"""Each lqer method's hardware design (hwmodel), and the report's area tables.

Each registered lqer method names its hardware design (``lqer.methods.Method.hardware``: config ->
(hwmodel design name, params), plain data, since lqer does not import hwmodel); this module adds
what depends on the costed model shape and prices it. Formats are the config's (W, x, factor
A/B), the rank is ``config.rank`` (hwmodel's whole-model view: one unit time-shared by every
linear, sized for the largest); hwmodel is handed the config's mxsim.Rank itself and resolves it
per layer as lqer does. The config's input rotation becomes hwmodel's ``input_rotation`` stage.
"""

from __future__ import annotations

from .grid import DesignPoint


def _shape_layers(shape):
    """The linear layers of a model shape (a hwmodel shape name or a hwmodel.shapes.ModelShape)."""
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


def method_design(config, shape="smollm2-135m") -> tuple[str, dict]:
    """(hwmodel design, params) of a QuantConfig's datapath for a model shape (see module doc)."""
    from lqer.methods import METHODS, get_method

    method = get_method(config.method)
    if method.hardware is None:
        raise ValueError(f"method {config.method!r} has no hardware design (its lqer.methods.Method.hardware); "
                         f"methods with one: {', '.join(n for n, m in METHODS.items() if m.hardware is not None)}")
    layers = _shape_layers(shape)
    design, params = method.hardware(config)
    rot = _rotation(config, layers)
    if rot != "none" and method.hw_rotation:  # the design has an input-rotation stage
        params = {**params, "input_rotation": rot}
    if method.hw_accumulator and str(config.accumulator) != "float":
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
    """(totals row, breakdown) of one design over every linear layer of a model shape.
    ``outliers`` ({layer: n} or None) reach only the designs with outlier columns
    (hwmodel.report.OUTLIER_DESIGNS; hwmodel.report.model_report picks them)."""
    from hwmodel.report import canonical, model_report

    d = canonical(design)
    r = model_report(shape, [d], tech=tech, params={d: _fmt_params(params)}, outliers=outliers)
    return r.totals.iloc[0].to_dict(), r.breakdown


def config_area(config, shape: str, tech: str = "fpga", outliers=None) -> tuple[float, str]:
    """(area, unit) of a QuantConfig's design over a model shape's linear layers."""
    design, params = method_design(config, shape)
    tot, _ = model_area(shape, design, params, tech, outliers)
    return float(tot["area"]), str(tot["unit"])


def area_for_point(p: DesignPoint, shape: str, tech: str, outliers=None, factor_axis: str | None = None):
    """(area, unit) of a sweep point's datapath over a model shape's linear layers."""
    from .configs import point_config

    return config_area(point_config(p, factor_axis), shape, tech, outliers)


# ----------------------------------------------------------------------------- the report's tables
REFERENCE_SHAPE = "llama-7b"  # the LQER paper's hardware figures are one LLaMA-7B MLP layer


def model_shape(model_name, model=None):
    """The hwmodel shape of a model: hwmodel's named ``smollm2-135m`` for the bundled SmolLM2, else
    read from the model's config (the loaded ``model``'s, or from the path without loading any
    weight: an HF directory's config.json, a GGUF file's header). ValueError when hwmodel has no
    layer layout for the architecture."""
    import json
    from pathlib import Path

    from hwmodel.shapes import from_hf_config, get_model as get_shape
    from lqer.model import is_default_model, resolve_model_path

    from .report import model_tag

    if is_default_model(model_name):
        return get_shape("smollm2-135m")
    if model is not None:
        config = model.config
    else:
        path = resolve_model_path(model_name)
        if path.is_dir():
            config = json.loads((Path(path) / "config.json").read_text())
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    return from_hf_config(config, name=model_tag(model_name))


def report_shape(model_name, model):
    """(shape of the model being reported, None), or (None, why it cannot be priced)."""
    try:
        return model_shape(model_name, model), None
    except ValueError as e:
        return None, f"hwmodel has no layer layout for this model ({e})"


def sweep_shape(settings: dict, model=None):
    """The shape a sweep prices: ``settings.hw_shape`` when given, else the swept model's own
    (``model_shape``); a model hwmodel cannot lay out is refused naming settings.hw_shape."""
    from hwmodel.shapes import MODELS
    from mxsim.errors import UserError

    if settings.get("hw_shape") is not None:
        return settings["hw_shape"]
    try:
        return model_shape(settings["model"], model)
    except ValueError as e:
        raise UserError(f"settings.hw_shape: the swept model's layer shapes are unknown to hwmodel ({e}); set "
                        f"hw_shape to one of {', '.join(sorted(MODELS))}") from None


def report_designs(configs, methods, shape) -> list[tuple[str, str, dict]]:
    """(label, hwmodel design, params) for every (preset, method) the report quantizes, each from
    its method's hardware design (``method_design``); methods with one datapath share one row
    (LQER / L2QER / QERA-exact)."""
    import json

    from lqer.methods import get_method

    from .configs import make_config

    layers = _shape_layers(shape)
    rows: dict = {}
    for preset in configs:
        for m in methods:
            cfg = make_config(preset, m)
            design, params = method_design(cfg, shape)
            key = (design, json.dumps(jsonable_params(params), sort_keys=True))
            suffix = "" if get_method(m).own_formats is not None else f" {preset}"  # same unit for every preset
            if get_method(m).low_rank:
                suffix += f" k={design_rank(cfg, layers)}"
            label = get_method(m).table_label(cfg)
            if key not in rows:
                rows[key] = (design, params, suffix, [])
            if label not in rows[key][3]:
                rows[key][3].append(label)
    return [(" / ".join(labels) + suffix, design, params) for design, params, suffix, labels in rows.values()]


def hardware_tables(out, configs, methods, shape=None, model_label: str = "SmolLM2-135M", tag: str = "smollm2",
                    tech: str = "fpga", outliers=None, shape_error: str | None = None) -> dict:
    """Area per design of the report's (preset, method) pairs for the reported model's layer shapes
    (``shape``; None with ``shape_error`` when hwmodel has no layout for it) and, labelled as such,
    for the paper's reference LLaMA-7B shapes; the paper table; breakdown plots."""
    import pandas as pd
    from hwmodel.paper import paper_table

    from . import figures

    if tag == "llama7b":
        tag = "model"  # the reference's file names stay the reference's
    views = [] if shape is None else [(tag, shape, f"{model_label} (the reported model)", outliers)]
    views.append(("llama7b", REFERENCE_SHAPE, "LLaMA-7B (the LQER paper's reference shape, not the reported model)",
                  None))
    tables, md = {}, []
    for vtag, vshape, title, o_view in views:
        rows, bds = [], []
        for label, design, params in report_designs(configs, methods, vshape):
            tot, bd = model_area(vshape, design, params, tech, o_view)
            rows.append({"design": label, "hwmodel_design": design, "area": tot["area"], "unit": tot["unit"],
                         "on_chip_memory_bits": tot["on_chip_memory_bits"],
                         "offchip_bytes_per_token": tot["offchip_bytes_per_token"], "cycles": tot["cycles"]})
            bds.append(bd.assign(design=label))
        df = pd.DataFrame(rows)
        fp16 = df.loc[df.hwmodel_design == "fp16", "area"]
        df["area_ratio_to_fp16"] = df["area"] / float(fp16.iloc[0]) if len(fp16) else float("nan")
        tables[f"area_{vtag}"] = df
        bd = pd.concat(bds, ignore_index=True)
        tables[f"breakdown_{vtag}"] = bd
        figures.breakdown_plot(bd, out / f"hw_breakdown_{vtag}.png",
                               title=f"Area of one time-shared unit for {title.split(' (')[0]}'s largest linear layer "
                                     f"({tech})")
    pt = paper_table(tech)
    tables["paper"] = pt
    unit = next(iter(tables.values()))["unit"].iloc[0]
    note = (f"LLM.int8() outlier columns per layer: calibrated on {model_label} (|x| > threshold on the calibration "
            "tokens)" if outliers else "LLM.int8() outlier columns: hwmodel's default") + "; LLaMA-7B uses hwmodel's default."
    md.append(f"Each design is one hardware unit time-shared over all linear layers (hwmodel's whole-model view: the area "
              f"is the largest unit's; memory and cycles add up), technology `{tech}`, area in {unit}. The rows are the "
              f"designs of the report's presets × methods (`experiments.hardware.method_design`); methods with the same "
              f"datapath share a row (L2QER's scale is folded into A). {note}\n")
    if shape is None:
        md.append(f"### {model_label} layer shapes\n\nNot priced: {shape_error}.\n")
    for vtag, vshape, title, _ in views:
        show = tables[f"area_{vtag}"][["design", "area", "area_ratio_to_fp16", "on_chip_memory_bits",
                                       "offchip_bytes_per_token", "cycles"]]
        md.append(f"### {title}: layer shapes\n\n![breakdown](hw_breakdown_{vtag}.png)\n\n"
                  f"*Stacked area per component for each design's largest unit; look for the LQER-MXINT bar staying "
                  f"close to plain MXINT and far below FP16 and the LLM.int8() design.* "
                  f"Data: [hw_area_{vtag}.csv](hw_area_{vtag}.csv), [hw_breakdown_{vtag}.csv](hw_breakdown_{vtag}.csv).\n\n"
                  + show.to_markdown(index=False, floatfmt=".4g") + "\n")
    cols = [c for c in ("design", "rows", "paper_area", "paper_ratio", "model_ratio", "diff_%", "fit_ratio",
                        "fit_diff_%", "within_10%_fit") if c in pt.columns]
    md.append("### Model vs the paper's figures (one LLaMA-7B MLP layer, x 1×4096 · W 4096×11008, k = 32)\n\n"
              "*Ratios to FP16: the paper's (authors' workbook) beside hwmodel's, with the difference; "
              "`fit` rows use hwmodel's documented one-parameter FP16 fit. Gaps are explained in "
              "[hw_paper.csv](hw_paper.csv) (columns assumptions, gap).*\n\n"
              + pt[cols].to_markdown(index=False, floatfmt=".4g") + "\n")
    return {"tables": tables, "markdown": "\n".join(md)}
