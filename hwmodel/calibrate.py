"""``hwmodel calibrate``: synthesize the unit components over a sweep of widths and write the
unit-cost table (``component,a,b,cost,unit,source``) that the analytical model reads.

    hwmodel calibrate --tech xilinx [--out hwmodel/costs/yosys_xilinx.csv] [--widths 2,4,8]

The table is written atomically (mxsim.files.atomic_write) and only after every synthesis
has succeeded, so a failed run never leaves a partial table. Results come from (and go to)
the synthesis cache, so a re-run with unchanged RTL and Yosys is instant.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from mxsim.errors import ArgumentParser, run_cli
from mxsim.files import atomic_write, check_output

from . import sky130, synth

COSTS_DIR = Path(__file__).resolve().parent / "costs"
MUL_WIDTHS = (2, 3, 4, 6, 8, 12, 16)
ADD_WIDTHS = (4, 6, 8, 12, 16, 20, 24, 32)
REG_WIDTH = 32


def sweep(mul_widths=MUL_WIDTHS, add_widths=ADD_WIDTHS):
    """(component, a, b, module, params, divisor): one synthesis per entry."""
    jobs = []
    for i, a in enumerate(mul_widths):
        for b in mul_widths[i:]:
            jobs.append(("int_mul", a, b, "int_mul", {"A": a, "B": b}, 1))
    for w in add_widths:
        jobs.append(("int_add", w, 0, "int_add", {"W": w}, 1))
        jobs.append(("fixed_acc", w, 0, "fixed_acc", {"W": w}, 1))
    for w in sorted({4, 8, 15, 16, 32} | {w for w in add_widths if w in (12, 24)}):
        jobs.append(("comparator", w, 0, "comparator", {"W": w}, 1))
        jobs.append(("mux2", w, 0, "mux2", {"W": w}, 1))
    for w, s in ((8, 3), (16, 4), (24, 5), (32, 5), (48, 6), (64, 6)):
        jobs.append(("barrel_shifter", w, s, "barrel_shifter", {"W": w, "S": s}, 1))
    for w, n in ((5, 16), (8, 16), (8, 32), (5, 32)):
        jobs.append(("max_tree", w, n, "max_tree", {"W": w, "N": n}, 1))
    for w in (5, 8, 9):
        jobs.append(("exp_add", w, 0, "exp_add", {"W": w}, 1))
    for a in (4, 8, 16, 24, 32):
        jobs.append(("int_to_fp16", a, 0, "int_to_fp16", {"A": a}, 1))
    for a in (4, 8, 16):
        jobs.append(("fp16_to_int", a, 0, "fp16_to_int", {"A": a}, 1))
    for comp in ("fp16_mul", "fp16_add", "fp16_div", "fp32_add"):
        jobs.append((comp, 0, 0, comp, {}, 1))
    jobs.append(("register_bit", 1, 0, "reg_bits", {"W": REG_WIDTH}, REG_WIDTH))
    return jobs


def calibrate(tech: str, out: Path | None = None, mul_widths=MUL_WIDTHS, add_widths=ADD_WIDTHS,
              use_cache: bool = True, log=print) -> Path:
    synth.check_tech(tech)
    for w in list(mul_widths) + list(add_widths):
        if w < 1:
            raise ValueError(f"widths must be >= 1, got {w}")
    out = Path(out) if out is not None else COSTS_DIR / f"yosys_{tech}.csv"
    if tech == "sky130":   # the Liberty is derived from the PDK package each time (PDKError if it is missing)
        lib = sky130.write_liberty()
        if log:
            log(f"sky130 Liberty {lib.name}: {sky130.PDK_PACKAGE} {sky130.pdk_version()}, areas from LEF SIZE")
    rows = []
    for comp, a, b, module, params, div in sweep(mul_widths, add_widths):
        res = synth.synthesize(module, params, tech, use_cache=use_cache)
        extra = {k: v for k, v in res.cells.items()
                 if not k.startswith(("LUT", "$_")) and k not in ("IBUF", "OBUF")}
        note = f"; other cells: {extra}" if extra and tech != "cmos" else ""
        if div != 1:
            note += f"; cost = total / {div} bits"
        source = f"{res.yosys_version}: {res.command}{note}"
        cost = res.cost / div
        rows.append((comp, a, b, cost, res.unit, source))
        if comp == "int_mul" and a != b:   # signed a x b and b x a: same array, mirrored
            rows.append((comp, b, a, cost, res.unit, source + f"; mirrored from int_mul {a}x{b}"))
        if log:
            log(f"{tech:6s} {comp:15s} a={a:<3d} b={b:<3d} cost={cost:g}{' (cached)' if res.cached else ''}")
    with atomic_write(out) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["component", "a", "b", "cost", "unit", "source"])
            for r in rows:
                w.writerow([r[0], r[1], r[2], f"{r[3]:.10g}", r[4], r[5]])  # µm² need more than 6 digits
    return out


def _widths(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated integers, got {text!r}") from exc
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"widths must be integers >= 1, got {text!r}")
    return vals


def main(argv=None) -> int:
    p = ArgumentParser(prog="hwmodel calibrate",
                                description="Synthesize unit components with Yosys and write a unit-cost table.")
    p.add_argument("--tech", required=True, help="xilinx | ecp5 | cmos | sky130 (µm², needs the sky130 PDK package)")
    p.add_argument("--out", type=Path, default=None, help="output CSV (default hwmodel/costs/yosys_<tech>.csv)")
    p.add_argument("--widths", type=_widths, default=None,
                   help="comma-separated widths for multiplier pairs and adders (default: the built-in sweep)")
    p.add_argument("--no-cache", action="store_true", help="re-synthesize everything")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.tech not in synth.TECHS:
        p.error(f"unknown technology {args.tech!r}; known: {', '.join(synth.TECHS)}")
    mul_w = args.widths or MUL_WIDTHS
    add_w = args.widths or ADD_WIDTHS

    def body() -> int:
        # before minutes of synthesis: the table must be writable where it goes
        check_output(args.out if args.out is not None else COSTS_DIR / f"yosys_{args.tech}.csv", "--out", "file")
        try:
            out = calibrate(args.tech, args.out, mul_w, add_w, use_cache=not args.no_cache,
                            log=None if args.quiet else print)
        except synth.SynthError as exc:
            print(f"hwmodel calibrate: {exc}", file=sys.stderr)
            return 1
        except (sky130.PDKError, sky130.CellError) as exc:   # what is missing and how to install it
            print(f"hwmodel calibrate: error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {out}")
        return 0

    return run_cli("hwmodel calibrate", body)


if __name__ == "__main__":
    sys.exit(main())
