"""Whole designs in Verilog, synthesized: the LQER paper's FPGA micro-architectures and the
composite check of the unit-cost table.

    python -m hwmodel.rtl_designs paper       # LUTs of the paper designs (xcup, -nodsp)
    python -m hwmodel.rtl_designs composite --tech xilinx

Both read the synthesis cache (hwmodel/rtl/synth_cache.json) and only run Yosys for
entries whose key (source hash + parameters + tech + Yosys version) is missing.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from . import synth

COSTS_DIR = Path(__file__).resolve().parent / "costs"
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


def paper_luts(use_cache: bool = True, cached_only: bool = False, log=print) -> list[dict]:
    """Synthesize (or read from the cache) every paper design; LUTs per design."""
    rows = []
    for name, main, whole, paper in PAPER_DESIGNS:
        res_m = _get(main, "xilinx", use_cache, cached_only, hierarchical=True)
        if whole is not None:
            res_t = _get(whole, "xilinx", use_cache, cached_only, hierarchical=True)
            lut = res_m.cost + (res_t.cost - res_m.cost) / 16
            how = f"M + (T - M)/16, M = {res_m.cost:g}, T = {res_t.cost:g}"
        else:
            lut = res_m.cost
            how = "whole design (hierarchical)"
        rows.append({"design": name, "lut": lut, "how": how, "paper_lut": paper})
        if log:
            log(f"{name:18s} {lut:10.1f} LUT  ({how})")
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
        paths = synth.module_files(module)
        key = synth.cache_key(module, synth.check_params(params), tech, paths, synth.yosys_version_or_cached(),
                              hierarchical)
        entry = synth.load_cache().get(key)
        if entry is None:
            raise synth.SynthError(f"no cache entry for {module} {params} ({tech}) with the current source; "
                                   f"run `python -m hwmodel.rtl_designs paper` to synthesize it")
        return synth.SynthResult(**{**entry, "cached": True})
    return synth.synthesize(module, params, tech, use_cache=use_cache, timeout=7200, hierarchical=hierarchical)


# ---------------------------------------------------------------- composite check

def load_table(tech: str) -> dict:
    path = COSTS_DIR / f"yosys_{tech}.csv"
    table = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            table[(row["component"], int(row["a"]), int(row["b"]))] = float(row["cost"])
    return table


def _interp(table, comp, a, b=0):
    """Unit cost, linearly interpolated in a between swept widths (exact when swept)."""
    if (comp, a, b) in table:
        return table[(comp, a, b)]
    pts = sorted((k[1], v) for k, v in table.items() if k[0] == comp and k[2] == b)
    if not pts:
        raise KeyError(f"no {comp} rows with b={b} in the table")
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= a <= x1:
            return y0 + (y1 - y0) * (a - x0) / (x1 - x0)
    (x0, y0), (x1, y1) = (pts[0], pts[1]) if a < pts[0][0] else (pts[-2], pts[-1])
    return y0 + (y1 - y0) * (a - x0) / (x1 - x0)


def _c(table, comp, a, b=0):
    """Unit cost from this module's table dict, or from a lookup callable (e.g. hwmodel.units)."""
    if callable(table):
        return table(comp, a, b)
    return _interp(table, comp, a, b)


def analytical_mx_dot(table, a, b, k):
    """k multipliers (a x b), adder tree (k/2^l adders of width a+b-1+l-1 at level l),
    one exponent adder (8 bits)."""
    pw = a + b - 1
    cost = k * _c(table, "int_mul", a, b)
    n, w = k, pw
    while n > 1:
        cost += (n // 2) * _c(table, "int_add", w)
        n = n - n // 2
        w += 1
    cost += _c(table, "exp_add", 8)
    return cost


def analytical_llm_int8_path(table, k=16):
    """Per column: a 15-bit comparator, two scatter muxes and a gather mux (16 bits)."""
    return k * (_c(table, "comparator", 15) + 3 * _c(table, "mux2", 16))


def analytical_fp16_mac(table):
    return _c(table, "fp16_mul", 0, 0) + _c(table, "fp16_add", 0, 0) + 16 * _c(table, "register_bit", 1, 0)


COMPOSITES = (
    [(f"MX dot k={k} {a}x{b}", ("mx_dot", {"A": a, "B": b, "K": k}),
      (lambda t, a=a, b=b, k=k: analytical_mx_dot(t, a, b, k)))
     for k in (16, 32) for a, b in ((4, 8), (6, 8), (8, 8))]
    + [("LLM.int8() scatter/gather k=16", ("llm_int8_path", {"K": 16}), lambda t: analytical_llm_int8_path(t, 16)),
       ("FP16 MAC", ("fp16_mac", {}), analytical_fp16_mac)]
)


def composite_check(tech: str = "xilinx", use_cache: bool = True, cached_only: bool = False, log=print):
    table = load_table(tech)
    try:   # the analytical model's own lookup (hwmodel.units) on the same table, when present
        from . import units

        ut = units.load_table(tech)

        def lookup(comp, a, b=0):
            return float(ut.cost(comp, a, b)[0])
    except Exception:
        lookup = None
    rows = []
    for name, spec, fn in COMPOSITES:
        res = _get(spec, tech, use_cache, cached_only)
        ana = fn(table)
        row = {"composite": name, "tech": tech, "analytical": ana, "synthesized": res.cost,
               "unit": res.unit, "diff_pct": 100.0 * (ana - res.cost) / res.cost}
        if lookup is not None:
            try:
                row["units_py"] = fn(lookup)
                row["units_diff_pct"] = 100.0 * (row["units_py"] - res.cost) / res.cost
            except Exception:
                pass
        rows.append(row)
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
            rows = paper_luts(cached_only=args.cached_only, log=None)
            add_model_ratios(rows)
            for r in rows:
                pr = r.get("paper_ratio")
                r["diff_pct"] = None if pr is None else 100.0 * (r["ratio"] - pr) / pr
            print(markdown(rows, ["design", "lut", "ratio", "paper_lut", "paper_ratio", "diff_pct", "model_ratio", "how"],
                           ["design", "Yosys LUT", "ratio to FP16", "paper LUT", "paper ratio",
                            "ratio diff % (Yosys vs paper)", "analytical model ratio", "how"]))
        else:
            rows = composite_check(synth.check_tech(args.tech), cached_only=args.cached_only, log=None)
            print(markdown(rows, ["composite", "tech", "analytical", "synthesized", "unit", "diff_pct",
                                  "units_py", "units_diff_pct"],
                           ["composite", "tech", "analytical (table sum)", "synthesized whole", "unit", "diff %",
                            "hwmodel.units on the same table", "its diff %"]))
    except synth.SynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
