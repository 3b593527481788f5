"""Whole designs in Verilog, synthesized: the LQER paper's FPGA micro-architectures and the
composite check of the unit-cost table.

    python -m hwmodel.rtl_designs paper       # LUTs of the paper designs (xcup, -nodsp)
    python -m hwmodel.rtl_designs composite --tech xilinx

Both read the synthesis cache (hwmodel/rtl/synth_cache.json) and only run Yosys for
entries whose key (source hash + parameters + tech + Yosys version) is missing.
"""

from __future__ import annotations

import argparse
import math
import sys

from . import synth

FP16_PAPER_LUT = 6125.0

# name, main module + params, optional whole-design module + params (the sheet's
# Area = M + (T - M)/16 folding), the paper's area (LUT) from hw_area_facts.md
PAPER_DESIGNS = [
    ("FP16", ("paper_fp16", {}), None, 6125.0),
    ("LLM.int4()", ("paper_llm_int", {"LB": 4}), None, 130019.0),
    ("LLM.int8()", ("paper_llm_int", {"LB": 8}), None, None),
    ("GPTQ/AWQ W4", ("paper_awq", {"WB": 4}), None, 85714.0),
    ("GPTQ/AWQ W2", ("paper_awq", {"WB": 2}), None, 85733.0),
    ("LQER int16/int4", ("paper_lqer_int", {}), None, 6955.0),
    ("LQER-MXINT 8/4", ("paper_mx_main", {"XB": 8, "WB": 4}),
     ("paper_lqer_mxint", {"XB": 8, "WB": 4, "LB": 8}), 1993.375),
    ("LQER-MXINT 6/4", ("paper_mx_main", {"XB": 6, "WB": 4}),
     ("paper_lqer_mxint", {"XB": 6, "WB": 4, "LB": 6}), 1401.0625),
]


def paper_luts(use_cache: bool = True, cached_only: bool = False, log=print, tech: str = "xilinx") -> list[dict]:
    """Synthesize (or read from the cache) every paper design; area per design in ``tech``'s unit
    (LUT for xilinx, um^2 for sky130; the key stays "lut")."""
    rows = []
    for name, main, whole, paper in PAPER_DESIGNS:
        res_m = _get(main, tech, use_cache, cached_only, hierarchical=True)
        if whole is not None:
            res_t = _get(whole, tech, use_cache, cached_only, hierarchical=True)
            lut = res_m.cost + (res_t.cost - res_m.cost) / 16
            how = f"M + (T - M)/16, M = {res_m.cost:g}, T = {res_t.cost:g}"
        else:
            lut = res_m.cost
            how = "whole design (hierarchical)"
        rows.append({"design": name, "lut": lut, "how": how, "paper_lut": paper})
        if log:
            log(f"{name:18s} {lut:10.1f} {res_m.unit}  ({how})")
    fp16 = rows[0]["lut"]
    for r in rows:
        r["ratio"] = r["lut"] / fp16
        r["paper_ratio"] = None if r["paper_lut"] is None else r["paper_lut"] / FP16_PAPER_LUT
    return rows


_MODEL_NAMES = {"FP16": "FP16", "LLM.int4()": "LLM.int4()", "GPTQ/AWQ W4": "GPTQ/AWQ W4",
                "GPTQ/AWQ W2": "GPTQ/AWQ W2", "LQER int16/int4": "LQER int16", "LQER-MXINT 8/4": "LQER-MXINT 8b",
                "LQER-MXINT 6/4": "LQER-MXINT 6b"}


def add_model_ratios(rows) -> None:
    """Add the analytical model's ratio (hwmodel.paper, paper assumptions, FPGA table) when present."""
    try:
        from . import paper

        df = paper.paper_table("fpga", sensitivity=False)
    except Exception:  # the analytical model is optional here
        return
    for r in rows:
        prefix = _MODEL_NAMES.get(r["design"])
        hit = df[df["design"].str.startswith(prefix)] if prefix else df.iloc[0:0]
        if len(hit):
            r["model_ratio"] = float(hit["model_ratio"].iloc[0])


def _get(spec, tech, use_cache, cached_only, hierarchical=False):
    module, params = spec
    if cached_only:
        paths = synth.module_files(module) + synth.tech_files(tech)
        key = synth.cache_key(module, synth.check_params(params), tech, paths, synth.yosys_version_or_cached(),
                              hierarchical)
        entry = synth.load_cache().get(key)
        if entry is None:
            raise synth.SynthError(f"no cache entry for {module} {params} ({tech}) with the current source; "
                                   f"run `python -m hwmodel.rtl_designs paper` to synthesize it")
        return synth.SynthResult(**{**entry, "cached": True})
    return synth.synthesize(module, params, tech, use_cache=use_cache, timeout=7200, hierarchical=hierarchical)


# ---------------------------------------------------------------- composite check
#
# The analytical side is the model that prints the areas: Counts built with hwmodel.designs'
# own builders (mx_gemm, fp16_gemm, llm_int8's scatter), priced by Counts.breakdown(tech), i.e.
# UnitCostTable's lookup and scaling laws on the calibrated table of the same technology.

def _mx_dot_counts(a: int, b: int, k: int):
    """The designs' MX GEMM unit (mx_gemm, lanes = block = k) restricted to what the RTL mx_dot
    holds: the k multipliers, the adder tree and the shared-exponent adder. mx_gemm counts two
    exp_add per block (shared-exponent sum, then exponent difference); the second one, and the
    comparator, shifter, mux, accumulator and exponent register, belong to the cross-block
    accumulator (mx_acc_fixed in the RTL), not to mx_dot."""
    from mxsim.formats import get_format

    from .designs.base import Counts, Layer, mx_gemm

    full = Counts("mx_gemm", Layer(1, k, 1))
    mx_gemm(full, "mx_dot", 1, k, 1, k, get_format(f"MXINT{a}/{k}"), get_format(f"MXINT{b}/{k}"))
    dot = Counts(f"mx_dot {a}x{b} k={k}", full.layer)
    exp_adds = [it for it in full.items if it[1] == "exp_add"]
    for it in full.items:
        if it[1] in ("int_mul", "int_add"):
            dot.add(*it)
    dot.add(*exp_adds[0])
    return dot


def _llm_int8_path_counts(k: int = 16):
    """llm_int8's scatter unit at k lanes (a 15-bit comparator and two 16-bit muxes per column)
    plus the gather mux per column that the RTL path has; the design's two write-address
    counters are not in the RTL path and are left out."""
    from .designs.base import Counts, Layer
    from .designs.llm_int8 import llm_int8

    full = llm_int8(Layer(1, k, k), outliers=0, scatter_lanes=k)
    path = Counts(f"llm.int8 scatter/gather k={k}", full.layer)
    for it in full.items:
        if it[0] == "scatter" and it[1] in ("comparator", "mux2"):
            path.add(*it)
    path.add("gather", "mux2", 16, 0, k)
    return path


def _fp16_mac_counts():
    """fp16_gemm at one lane: one fp16_mul, the accumulate fp16_add and the 16-bit accumulator register."""
    from .designs.base import Counts, Layer, fp16_gemm

    c = Counts("fp16 mac", Layer(1, 1, 1))
    fp16_gemm(c, "mac", 1, 1, 1, 1)
    return c


def analytical_area(counts, tech: str) -> float:
    """Σ count × unit cost of ``counts`` on the calibrated table of ``tech`` (hwmodel.units lookup)."""
    return float(counts.breakdown(tech)["area"].sum())


COMPOSITES = (
    [(f"MX dot k={k} {a}x{b}", ("mx_dot", {"A": a, "B": b, "K": k}),
      (lambda a=a, b=b, k=k: _mx_dot_counts(a, b, k)))
     for k in (16, 32) for a, b in ((4, 8), (6, 8), (8, 8))]
    + [("LLM.int8() scatter/gather k=16", ("llm_int8_path", {"K": 16}), lambda: _llm_int8_path_counts(16)),
       ("FP16 MAC", ("fp16_mac", {}), _fp16_mac_counts)]
)


def composite_check(tech: str = "xilinx", use_cache: bool = True, cached_only: bool = False, log=print):
    rows = []
    for name, spec, counts_fn in COMPOSITES:
        res = _get(spec, tech, use_cache, cached_only)
        ana = analytical_area(counts_fn(), synth.check_tech(tech))
        rows.append({"composite": name, "tech": tech, "analytical": ana, "synthesized": res.cost,
                     "unit": res.unit, "diff_pct": 100.0 * (ana - res.cost) / res.cost})
        if log:
            log(f"{name:32s} {tech:6s} analytical {ana:9.1f}  synthesized {res.cost:9.1f}  "
                f"diff {rows[-1]['diff_pct']:+6.1f}%")
    return rows


def markdown(rows, cols, headers):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("–")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}")
            else:
                cells.append(str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwmodel.rtl_designs")
    p.add_argument("what", choices=["paper", "composite"])
    p.add_argument("--tech", default="xilinx")
    p.add_argument("--cached-only", action="store_true", help="never run yosys; fail on a missing entry")
    args = p.parse_args(argv)
    try:
        if args.what == "paper":
            tech = synth.check_tech(args.tech)
            rows = paper_luts(cached_only=args.cached_only, log=None, tech=tech)
            add_model_ratios(rows)
            for r in rows:
                pr = r.get("paper_ratio")
                r["diff_pct"] = None if pr is None else 100.0 * (r["ratio"] - pr) / pr
            unit = synth.TECHS[tech]["unit"]
            print(markdown(rows, ["design", "lut", "ratio", "paper_lut", "paper_ratio", "diff_pct", "model_ratio", "how"],
                           ["design", f"Yosys {tech} ({unit})", "ratio to FP16", "paper LUT", "paper ratio",
                            "ratio diff % (Yosys vs paper)", "analytical model ratio", "how"]))
        else:
            rows = composite_check(synth.check_tech(args.tech), cached_only=args.cached_only, log=None)
            print(markdown(rows, ["composite", "tech", "analytical", "synthesized", "unit", "diff_pct"],
                           ["composite", "tech", "analytical (designs x unit-cost table)", "synthesized whole",
                            "unit", "diff %"]))
    except synth.SynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
