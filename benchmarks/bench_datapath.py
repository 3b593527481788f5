"""Whole-model forward on mxsim's integer datapath vs the float emulation, timed in the same run.

    python benchmarks/bench_datapath.py [--batch 4 --seq 512] [--method plain] [--threads N]

Issue 15's targets (CPU, 2 cores): a SmolLM2 forward over 4 x 512 tokens with accumulator
"fp32" at most 3x the same forward with "float" (fake-quantize + float32 matmul), FixedPoint at
most 4x. One model is quantized once (config W4A8: MXINT4/16 weights, MXINT8/16 activations);
each accumulator is set on every layer (lqer.datapath.set_accumulator) and the forward is
timed ``--repeat`` rounds (every accumulator once per round, in turn) after one warm-up
(numba compilation), best time kept. Prints the
machine, the threads and the ratios; ``--out DIR`` also writes them (rounded as printed) to
DIR/bench_datapath_cpu.csv with the machine, threads, commit and command in its .meta.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the CSV: one row per accumulator, the values rounded as printed
CSV_COLUMNS = ["accumulator", "seconds", "x_float", "target"]
TARGETS = {"fp32": 3.0, "fixed": 4.0}  # issue 15: at most this many times the float forward


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--config", default="W4A8")
    p.add_argument("--method", default="plain")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch/numba threads (default: as found)")
    p.add_argument("--accumulators", default="float,fp32,fp32:4,fixed:32:16")
    p.add_argument("--out", default=None, help="also write bench_datapath_cpu.csv + .meta.json into this folder")
    args = p.parse_args(argv)
    from experiments.provenance import check_out_dir, run_meta, write_table
    from experiments.util import set_threads
    from mxsim.accumulators import parse_accumulator
    from mxsim.errors import UserError

    out = check_out_dir(p, args.out)
    try:  # every spelling checked before the model loads; a name's kind picks its target below
        accs = {a: parse_accumulator(a, what="accumulator") for a in args.accumulators.split(",")}
    except ValueError as e:
        p.error(f"--accumulators: {e}")

    import torch

    if args.threads is not None:
        try:
            set_threads(args.threads)  # torch (also mxsim.matmul's strip workers) and numba (quantize kernels)
        except UserError as e:
            p.error(str(e))
    from lqer.config import load_config
    from lqer.data import load_wikitext, token_windows
    from lqer.datapath import set_accumulator
    from lqer.model import load_model
    from lqer.quantize import quantize_model

    model, tok = load_model(args.model)
    ids = token_windows(tok, load_wikitext("test"), args.seq, args.batch)
    quantize_model(model, load_config(args.config, method=args.method), progress=False)
    times = {acc: float("inf") for acc in accs}
    with torch.no_grad():
        for acc in accs:  # warm-up: numba compiles (cached) and the layers move W^T, A, B once
            set_accumulator(model, accs[acc])
            model(ids[:1, :16])
        # rounds of every accumulator in turn, best per accumulator: on a shared machine a load
        # change then hits all of them instead of biasing the ratios of whichever ran during it
        for rnd in range(args.repeat):
            for acc in accs:
                set_accumulator(model, accs[acc])
                t = time.perf_counter()
                model(ids)
                times[acc] = min(times[acc], time.perf_counter() - t)
                print(json.dumps({"round": rnd, "accumulator": acc, "seconds": round(times[acc], 2)}), flush=True)
    base = times.get("float")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import numba

    # read back after the forwards (mxsim.matmul narrows torch's pool per strip and restores it)
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"numba threads {numba.get_num_threads()}, "
          f"load average {load:.1f}; {args.batch} x {args.seq} tokens, {args.config} {args.method}")
    rows = []
    for acc, t in times.items():
        target = TARGETS.get(accs[acc].name)
        if base:
            goal = f" (target <= {target:g}x)" if target else ""
            print(f"{acc:>14}: {t:8.2f} s  {t / base:6.2f}x float{goal}")
        rows.append({"accumulator": acc, "seconds": round(t, 2), "x_float": round(t / base, 2) if base else None,
                     "target": f"<= {target:g}x" if target else None})
    if out is not None:
        write_table(out, "bench_datapath_cpu", rows, CSV_COLUMNS,
                    run_meta("bench_datapath_cpu", "benchmarks/bench_datapath.py", argv, model=args.model,
                             config=args.config, method=args.method, tokens=[args.batch, args.seq],
                             repeat=args.repeat))
        print(f"wrote {out / 'bench_datapath_cpu.csv'} and its .meta.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
