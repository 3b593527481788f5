"""LRC benchmarks.

  python benchmarks/bench_lrc.py layer [--d 4096] [--tokens 8192] [--rank 0.1] [--device cpu|cuda] [--threads 2]
                                       [--out docs/results]
      LRC(1) of one d x d layer (random weights, synthetic correlated activations with outlier
      channels), W4A4 MXINT4/32: time of the statistics and of LRC(1), peak RSS; vs targets.
      --out DIR also writes them to DIR/bench_lrc_layer_{cpu,cuda}.csv + .meta.json.
  python benchmarks/bench_lrc.py model --tasks W4A4:fp,rtn,gptq,... [--windows 8 --seq 512 --calib 16]
      SmolLM2 perplexity and bits per weight for the listed (setting:method@rank) tasks; JSON lines.
  python benchmarks/bench_lrc.py table results.jsonl [--csv table.csv] [--tech fpga] [--shape smollm2-135m]
      markdown table (+ CSV) with hwmodel's area of each row's design and its ratio to FP16

The table's configs, runs and area columns live in experiments.lrc_table (this script only
times); ``mxlab reproduce lrc_table`` regenerates docs/results/lrc_table.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import mxsim  # noqa: E402
from mxsim.errors import int_at_least, rank_arg  # noqa: E402

TARGET_LAYER_S = 60.0
TARGET_LAYER_GB = 2.0
TARGET_MODEL_S = 600.0
# the layer CSV: the printed JSON line's values (and the targets), one row per run
LAYER_CSV_COLUMNS = ["d", "tokens", "rank", "device", "threads", "stats_s", "lrc1_s", "target_s", "peak_rss_gb",
                     "target_gb", "rss_before_gb", "gpu_peak_gb"]


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cmd_layer(a):
    from experiments.util import set_threads
    from lqer.covariance import CovarianceObserver
    from lqer.lrc import lrc

    set_threads(a.threads)  # torch's and numba's, so the CSV's threads column is what ran
    dev = torch.device(a.device)
    fmt = mxsim.MXINT4
    g = torch.Generator().manual_seed(0)
    d, n = a.d, a.tokens
    rss0 = _rss_gb()
    t0 = time.perf_counter()
    obs = CovarianceObserver(fmt, device=dev)
    # synthetic activations: low-rank correlated part + noise, a few outlier channels
    mix = torch.randn(64, d, generator=g) / 8
    scale = torch.ones(d)
    scale[torch.randperm(d, generator=g)[: d // 100]] = 20.0
    for s in range(0, n, 1024):
        m = min(1024, n - s)
        x = (torch.randn(m, 64, generator=g) @ mix + torch.randn(m, d, generator=g)) * scale
        obs.update(x.to(dev))
    st = obs.result()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_stats = time.perf_counter() - t0
    W = (torch.randn(d, d, generator=g) / d**0.5).to(dev)
    t1 = time.perf_counter()
    res = lrc(W, st, w_format=fmt, a_format=fmt, rank=a.rank, iterations=1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_lrc = time.perf_counter() - t1
    peak = _rss_gb()
    out = {"d": d, "tokens": n, "rank": res.rank, "device": str(dev), "threads": a.threads,
           "stats_s": round(t_stats, 2), "lrc1_s": round(t_lrc, 2), "peak_rss_gb": round(peak, 3),
           "rss_before_gb": round(rss0, 3), "losses": res.losses,
           "gpu_peak_gb": round(torch.cuda.max_memory_allocated() / 1024**3, 3) if dev.type == "cuda" else None}
    print(json.dumps(out))
    print(f"LRC(1) {d}x{d}, {n} tokens, rank {res.rank} on {dev} ({a.threads} threads): "
          f"{t_lrc:.1f} s (target <= {TARGET_LAYER_S:.0f} s on the 2-core CPU), statistics {t_stats:.1f} s; "
          f"peak RSS {peak:.2f} GB (target <= {TARGET_LAYER_GB} GB)")
    if a.out is not None:
        from experiments.provenance import run_meta, write_table

        name = f"bench_lrc_layer_{dev.type}"
        write_table(a.out, name, [{**out, "target_s": TARGET_LAYER_S, "target_gb": TARGET_LAYER_GB}],
                    LAYER_CSV_COLUMNS, run_meta(name, "benchmarks/bench_lrc.py", device=str(dev), losses=res.losses,
                                                format="MXINT4/32 W4A4", iterations=1))
        print(f"wrote {Path(a.out) / name}.csv and its .meta.json")


def cmd_model(a):
    """Rows of the LRC table (experiments.lrc_table.run_tasks), one JSON line each."""
    from experiments.lrc_table import parse_tasks, run_tasks
    from experiments.util import set_threads

    set_threads(a.threads)
    for _ in run_tasks(a.model, parse_tasks(a.tasks), rotation=a.rotation, windows=a.windows, seq=a.seq,
                       calib=a.calib, device=a.device, log=lambda line: print(line, flush=True)):
        pass


def cmd_table(a):
    """Markdown table (+ ``--csv``) of ``model`` rows with hwmodel's area columns
    (experiments.lrc_table.table_records)."""
    from experiments.lrc_table import markdown, read_jsonl_rows, table_records, write_csv

    records = table_records(read_jsonl_rows(a.files), a.shape, a.tech)
    print(markdown(records))
    if a.csv:
        write_csv(a.csv, records)
    return records


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("layer")
    pl.add_argument("--d", type=int, default=4096)
    pl.add_argument("--tokens", type=int, default=8192)
    pl.add_argument("--rank", type=rank_arg, default=mxsim.Rank.of(0.1), help="32, 0.1 (of min dim) or 0.1:of_params")
    pl.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    pl.add_argument("--threads", type=int_at_least(1), default=2)
    pl.add_argument("--out", default=None, help="also write bench_lrc_layer_DEVICE.csv + .meta.json into this folder")
    pm = sub.add_parser("model")
    pm.add_argument("--model", default="smollm2-135m")
    pm.add_argument("--tasks", required=True)
    pm.add_argument("--windows", type=int, default=8)
    pm.add_argument("--seq", type=int, default=512)
    pm.add_argument("--calib", type=int, default=16)
    pm.add_argument("--rotation", default="none")
    pm.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    pm.add_argument("--threads", type=int_at_least(1), default=2)
    pt = sub.add_parser("table", help="markdown table of model rows with hwmodel area columns")
    pt.add_argument("files", nargs="+")
    pt.add_argument("--csv", default=None, metavar="PATH", help="also write the table as CSV (atomically)")
    pt.add_argument("--tech", default="fpga", help="hwmodel unit-cost table (fpga, asic, ... or a CSV path)")
    pt.add_argument("--shape", default="smollm2-135m", help="hwmodel model shape the area is computed for")
    a = p.parse_args(argv)
    if a.cmd == "layer":
        from experiments.provenance import check_out_dir

        a.out = check_out_dir(pl, a.out)  # before any work
        if a.d < 1 or a.tokens < 2 * a.d:  # the covariances need >= 2 x d_in tokens (lqer.covariance)
            pl.error(f"--d must be >= 1 and --tokens >= 2 x --d, got --d {a.d} --tokens {a.tokens}")
        try:
            a.rank.resolve(a.d, a.d)
        except ValueError as e:
            pl.error(f"--rank: {e}")
        if a.device == "cuda" and not torch.cuda.is_available():
            pl.error("--device cuda: no CUDA device is available")
    {"layer": cmd_layer, "model": cmd_model, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
