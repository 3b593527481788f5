"""hwmodel command line: report, paper, components, calibrate (forwarded to hwmodel.calibrate)."""

from __future__ import annotations

import argparse
import sys

from mxsim.errors import ArgumentParser, UserError, int_at_least, rank_arg, run_cli, user_input

from . import report as rep
from .designs import LOWRANK_DESIGNS
from .shapes import get_model as get_shape


def _check_tech(tech) -> None:
    from .units import load_table

    with user_input("--tech"):
        load_table(tech)


def _report(a) -> int:
    # every argument first: the report is cheap, but a bad --plot must not cost the printed tables
    if a.outliers is not None and a.outliers_file is not None:
        raise UserError("give --outliers or --outliers-file, not both")
    outliers = a.outliers
    if a.outliers_file:
        with user_input("--outliers-file"):
            outliers = rep.load_outliers(a.outliers_file)
    with user_input("--designs"):
        designs = rep.parse_designs(a.designs)
    with user_input("--model"):
        get_shape(a.model)
    _check_tech(a.tech)
    if a.plot:
        from .plot import check_plot_path

        check_plot_path(a.plot, "--plot")
    params = {}
    for d in designs:
        kw = {}
        if a.lanes is not None:
            kw["lanes"] = a.lanes
        if a.lowrank_lanes is not None and d in LOWRANK_DESIGNS:
            kw["lowrank_lanes"] = a.lowrank_lanes
        if a.rank is not None and d in LOWRANK_DESIGNS:
            kw["rank"] = a.rank
        params[d] = kw
    r = rep.model_report(a.model, designs, tech=a.tech, layer=a.layer, tokens=a.tokens, outliers=outliers, params=params)
    if a.format == "md":
        print(f"## hwmodel: {a.model}, layers={a.layer}, tokens={a.tokens}, tech={a.tech}\n")
        print("### totals (area: one time-shared unit = the largest linear's unit)\n")
        print(rep.to_text(r.totals, "md"))
        print("\n### per projection (summed over decoder blocks)\n")
        print(rep.to_text(r.linears, "md"))
        if a.breakdown:
            print("\n### breakdown of each design's largest unit\n")
            print(rep.to_text(r.breakdown.drop(columns=["source"]), "md"))
    else:
        print(rep.to_text(r.breakdown if a.breakdown else r.totals, "csv"), end="")
    if a.plot:
        from .plot import plot_breakdown

        plot_breakdown(r.breakdown, a.plot, title=f"{a.model}: area per design ({a.tech})")
        print(f"wrote {a.plot}", file=sys.stderr)
    return 0


def _paper(a) -> int:
    from .paper import headline, paper_table

    _check_tech(a.tech)
    df = paper_table(a.tech, sensitivity=not a.no_sensitivity)
    if a.format == "csv":
        print(df.to_csv(index=False), end="")
        return 0
    s = df.attrs["fp16_fit_scale"]
    print("## Model vs paper: one LLaMA-7B MLP layer, 1×4096 · 4096×11008, rank 32, 16 lanes\n")
    fit = (f"fit_* = the same with ONE fitted parameter (FP16 operator costs ×{s:.4f} so FP16 = 6125)"
           if s == s else "fit_*: not applicable to this table's unit")
    print("paper_* = MEASURED (HLS+Vivado LUT counts + workbook arithmetic); model_* = derived unit costs, "
          f"no fit; {fit}.\n")
    cols = ["design", "rows", "paper_area", "paper_ratio", "model_area", "model_ratio", "diff_%", "fit_area",
            "fit_ratio", "fit_diff_%"]
    unit = df.attrs["unit"]
    if unit != "LUT":
        print(f"(tech {a.tech!r} is in {unit}: model ratios only; the FP16 fit applies to LUT tables only)\n")
    print(df[cols].to_markdown(index=False, floatfmt=("", "", ".1f", ".3f", ".1f", ".3f", "+.1f", ".1f", ".3f", "+.1f")))
    print("\n### assumptions and where the gaps come from\n")
    for r in df.itertuples():
        print(f"- **{r.design}** ({r.rows}): {r.assumptions}." + (f" Gap: {r.gap}." if r.gap else ""))
    h = headline()
    print(f"\nPaper headline 1.36× = round(0.45)/round(0.33) = {h['rounded']}; unrounded 2760/1993.375 = {h['unrounded']:.3f}.")
    return 0


def _components(a) -> int:
    from .units import components_doc, load_table

    if a.tech:
        _check_tech(a.tech)
        print(rep.to_text(load_table(a.tech).rows, a.format))
    else:
        print(rep.to_text(components_doc(), a.format))
    return 0


def _calibrate(argv) -> int:
    try:
        from . import calibrate
    except ImportError as e:
        print(f"hwmodel calibrate: the module hwmodel.calibrate is not available ({e}); it comes with the "
              "Yosys-calibration work (hwmodel/calibrate.py)", file=sys.stderr)
        return 2
    return calibrate.main(list(argv)) or 0


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="hwmodel", description="Analytical hardware-cost model of quantized LLM linear layers.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report", help="per-design report for a model's linears")
    r.add_argument("--model", required=True, help="model shape, e.g. llama-7b, opt-1.3b, mistral-7b, smollm2-135m")
    r.add_argument("--designs", default="lqer-mxint,llm.int8,gptq,fp16", help="comma-separated design names")
    r.add_argument("--tech", default="fpga", help="fpga | asic | xilinx | ecp5 | cmos | path/to/table.csv")
    r.add_argument("--format", default="md", choices=["md", "csv"])
    r.add_argument("--layer", default="all", choices=["all", "mlp", "attn"])
    r.add_argument("--tokens", type=int_at_least(1), default=1, help="tokens sharing one weight read (default 1)")
    r.add_argument("--outliers", type=int_at_least(0), default=None, help="outlier columns for every layer (LLM.int8/int4)")
    r.add_argument("--outliers-file", default=None, help="JSON {layer_name: n_outlier_columns}")
    r.add_argument("--lanes", type=int_at_least(1), default=None, help="lanes per GEMM unit (default 16)")
    r.add_argument("--lowrank-lanes", type=int_at_least(1), default=None, help="lanes of the low-rank units (1 = the paper's fold)")
    r.add_argument("--rank", type=rank_arg, default=None,
                   help="low-rank rank: 32, a fraction of min(d_in, d_out) such as 0.1, or 0.1:of_params (LQER default 32)")
    r.add_argument("--breakdown", action="store_true", help="print (md) or emit (csv) the per-component breakdown")
    r.add_argument("--plot", default=None, help="write a stacked area breakdown PNG here")
    r.set_defaults(func=_report)
    q = sub.add_parser("paper", help="model vs the LQER paper's area figures")
    q.add_argument("--tech", default="fpga")
    q.add_argument("--format", default="md", choices=["md", "csv"])
    q.add_argument("--no-sensitivity", action="store_true", help="omit the alternative-assumption rows")
    q.set_defaults(func=_paper)
    c = sub.add_parser("components", help="the component vocabulary, or a technology's unit-cost table")
    c.add_argument("--tech", default=None)
    c.add_argument("--format", default="md", choices=["md", "csv"])
    c.set_defaults(func=_components)
    sub.add_parser("calibrate", help="Yosys-calibrated unit costs (forwards all arguments to hwmodel.calibrate)",
                   add_help=False)
    sub.add_parser("verify", help="simulate the RTL with cocotb + Icarus against mxsim/numpy (hwmodel.verify)",
                   add_help=False)
    sub.add_parser("lint", help="verilator --lint-only -Wall on every RTL module (hwmodel.lint)", add_help=False)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "calibrate":
        return _calibrate(argv[1:])
    if argv and argv[0] in ("verify", "lint"):   # RTL simulation / Verilator lint, own argument parsers
        from . import lint, verify

        return {"verify": verify.main, "lint": lint.main}[argv[0]](argv[1:])
    p = build_parser()
    a = p.parse_args(argv)
    return run_cli(f"hwmodel {a.cmd}", lambda: a.func(a))


if __name__ == "__main__":
    sys.exit(main())
