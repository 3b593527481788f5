"""The hardware results of ``mxlab reproduce`` (experiments.results): hwmodel's tables, quick
to regenerate because Yosys runs only for what the committed synthesis cache
(hwmodel/rtl/synth_cache.json) lacks.

- ``hw_paper``: the analytical model vs the LQER paper (``hwmodel paper``) and our Yosys synthesis
  of the paper's designs (``python -m hwmodel.rtl_designs paper``);
- ``hw_composite``: the composite check (``python -m hwmodel.rtl_designs composite``);
- ``hw_accumulators``: the README's accumulator pricing table.
"""

from __future__ import annotations

from pathlib import Path

from mxsim.files import write_json

from .provenance import commit

COMPOSITE_TECHS = ("sky130", "xilinx", "ecp5", "cmos")
PAPER_YOSYS_TECHS = ("xilinx", "sky130")


def _frame_csv(path: Path, df) -> None:
    from mxsim.files import write_text

    write_text(path, df.to_csv(index=False))


def _hw_meta(name: str, command: str, measured: str) -> dict:
    from hwmodel.synth import yosys_version_or_cached

    return {"result": name, "command": command, "measured_by": measured, "written_at_commit": commit(),
            "unit_costs": "hwmodel/costs/*.csv (the 'fpga' table: hand-derived fpga_lut.csv)",
            "synthesis": f"hwmodel/rtl/synth_cache.json (committed; Yosys {yosys_version_or_cached()}); --rerun "
                         "re-synthesizes entries whose source, parameters or Yosys version changed",
            "configs": "hwmodel.paper.PAPER_CONFIGS / SENSITIVITY_CONFIGS and hwmodel.rtl_designs.PAPER_DESIGNS / "
                       "COMPOSITES (the designs and their parameters)"}


def hw_paper(out: Path, rerun: bool) -> None:
    """The analytical model vs the paper (hwmodel paper: every row, sensitivity included) and our
    Yosys synthesis of the paper's designs (python -m hwmodel.rtl_designs paper)."""
    import pandas as pd
    from hwmodel import rtl_designs
    from hwmodel.paper import paper_table

    _frame_csv(out / "hw_paper.csv", paper_table("fpga"))
    rows = []
    for tech in PAPER_YOSYS_TECHS:
        rs = rtl_designs.paper_luts(cached_only=not rerun, log=None, tech=tech)
        rtl_designs.add_model_ratios(rs)
        for r in rs:
            pr = r.get("paper_ratio")
            rows.append({"tech": tech, **r, "diff_pct": None if pr is None else 100.0 * (r["ratio"] - pr) / pr})
    _frame_csv(out / "hw_paper_yosys.csv", pd.DataFrame(rows))
    write_json(out / "hw_paper.meta.json", _hw_meta(
        "hw_paper", "mxlab reproduce hw_paper" + (" --rerun" if rerun else ""),
        "hw_paper.csv: hwmodel.paper.paper_table('fpga') (= hwmodel paper); hw_paper_yosys.csv: "
        f"hwmodel.rtl_designs.paper_luts for {', '.join(PAPER_YOSYS_TECHS)} (= python -m hwmodel.rtl_designs paper "
        "--tech T) with the analytical ratio beside it"))


def hw_composite(out: Path, rerun: bool) -> None:
    """The composite check: the designs' counts x the calibrated unit-cost table vs the whole
    composite synthesized (python -m hwmodel.rtl_designs composite --tech T)."""
    import pandas as pd
    from hwmodel import rtl_designs

    rows = [r for tech in COMPOSITE_TECHS for r in rtl_designs.composite_check(tech, cached_only=not rerun, log=None)]
    _frame_csv(out / "hw_composite.csv", pd.DataFrame(rows))
    write_json(out / "hw_composite.meta.json", _hw_meta(
        "hw_composite", "mxlab reproduce hw_composite" + (" --rerun" if rerun else ""),
        f"hwmodel.rtl_designs.composite_check for {', '.join(COMPOSITE_TECHS)}; analytical = the designs' counts "
        "priced by the Yosys-calibrated unit-cost table of the same technology"))


# the README's accumulator pricing table: (label, method, weight bits, block) at x = MXINT8; the
# columns are the accumulators ("float" has no hardware of its own: the default aligned accumulator)
HW_ACCUMULATOR_ROWS = (("MXINT W8A8 /16", "plain", 8, 16), ("MXINT W8A8 /32", "plain", 8, 32),
                       ("L2QER-MXINT W4A8 k=32 /16", "l2qer", 4, 16), ("L2QER-MXINT W4A8 k=32 /32", "l2qer", 4, 32))
HW_ACCUMULATORS = ("float", "fp32", "fp32:4", "fixed:32:16", "fixed:24:8", "fixed:20:8", "fixed:20:8:wrap")


def accumulator_configs():
    """(label, accumulator, QuantConfig) of every cell: the W4A8 preset with MXINT<w>/<block>
    weights, MXINT8/<block> activations and factors, factors blocked along the reduction."""
    from mxsim import parse_accumulator
    from lqer.config import parse_format

    from .configs import preset

    for label, method, w_bits, block in HW_ACCUMULATOR_ROWS:
        f8 = parse_format(f"MXINT8/{block}")
        base = preset("W4A8").replace(method=method, w_format=parse_format(f"MXINT{w_bits}/{block}"), x_format=f8,
                                      a_format=f8, b_format=f8, factor_axis="reduction")
        for acc in HW_ACCUMULATORS:
            yield label, acc, base.replace(accumulator=parse_accumulator(acc, what="accumulator"))


def hw_accumulators(out: Path, rerun: bool) -> None:
    import pandas as pd

    from .hardware import config_area, jsonable_params, method_design

    rows, configs = [], []
    for label, acc, cfg in accumulator_configs():
        area, unit = config_area(cfg, "smollm2-135m", "fpga")
        rows.append({"design": label, "accumulator": acc, "area": area, "unit": unit})
        design, params = method_design(cfg, "smollm2-135m")
        configs.append({"design": label, "accumulator": acc, "config": cfg.to_dict(), "hw_design": design,
                        "hw_params": jsonable_params(params)})
    _frame_csv(out / "hw_accumulators.csv", pd.DataFrame(rows))
    meta = _hw_meta("hw_accumulators", "mxlab reproduce hw_accumulators",
                    "experiments.hardware.config_area: hwmodel's whole-model view of SmolLM2-135M's linears, one "
                    "16-lane unit, 'fpga' table; the accumulator priced by hwmodel.designs.base.mx_gemm")
    meta.pop("synthesis")
    write_json(out / "hw_accumulators.meta.json", {**meta, "configs": configs})
