"""L2QER of one LLaMA-7B MLP-sized layer (W: 11008 x 4096, i.e. 4096 -> 11008) at k = 32 with
random weights. Target: <= 10 s with the randomized SVD. Also times the full SVD path.

    .venv/bin/python benchmarks/bench_lqer.py [--skip-full] [--out 11008 --in 4096 --rank 32] [--results docs/results]

``--results DIR`` also writes the printed values (same rounding) to DIR/bench_lqer_cpu.csv and the
machine, threads, commit and command to its .meta.json (experiments.provenance).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import time

import torch

from lqer.approximate import approximate
from lqer.config import QuantConfig

TARGET_S = 10.0
CSV_COLUMNS = ["svd", "seconds", "target_s", "frobenius", "frobenius_plain", "error_ratio_to_full"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=int, default=11008)
    p.add_argument("--in", dest="inp", type=int, default=4096)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--skip-full", action="store_true")
    p.add_argument("--results", default=None, help="also write bench_lqer_cpu.csv + .meta.json into this folder")
    a = p.parse_args()
    from experiments.provenance import check_out_dir, run_meta, write_table

    results = check_out_dir(p, a.results)
    cfg = QuantConfig()
    g = torch.Generator().manual_seed(0)
    W = torch.randn(a.out, a.inp, generator=g) * 0.02
    s = torch.rand(a.inp, generator=g) + 0.1
    s = s / torch.sqrt(s.min() * s.max())
    kw = dict(w_format=cfg.w_format, a_format=cfg.a_format, b_format=cfg.b_format, rank=a.rank, scale=s)
    print(f"layer {a.out}x{a.inp}, rank {a.rank}, W {cfg.w_format.name}/{cfg.w_format.block_size}, "
          f"torch threads {torch.get_num_threads()}")
    approximate(W[:256, :512], **{**kw, "rank": 8, "scale": s[:512]}, svd="randomized")  # warm-up (numba compile)
    t = time.perf_counter()
    r = approximate(W, **kw, svd="randomized")
    t_rand = time.perf_counter() - t
    print(f"randomized SVD L2QER: {t_rand:.2f} s (target <= {TARGET_S} s: ratio {t_rand / TARGET_S:.2f}) "
          f"frobenius {r.metrics['frobenius']:.5f} (plain {r.metrics['frobenius_plain']:.5f})")
    if not a.skip_full:
        t = time.perf_counter()
        f = approximate(W, **kw, svd="full")
        t_full = time.perf_counter() - t
        print(f"full SVD L2QER:       {t_full:.2f} s ({t_full / t_rand:.1f}x the randomized path); "
              f"frobenius {f.metrics['frobenius']:.5f}; randomized/full error ratio "
              f"{r.metrics['frobenius'] / f.metrics['frobenius']:.5f}")
    if results is not None:
        rows = [{"svd": "randomized", "seconds": round(t_rand, 2), "target_s": TARGET_S,
                 "frobenius": round(r.metrics["frobenius"], 5), "frobenius_plain": round(r.metrics["frobenius_plain"], 5),
                 "error_ratio_to_full": None if a.skip_full else round(r.metrics["frobenius"] / f.metrics["frobenius"], 5)}]
        if not a.skip_full:
            rows.append({"svd": "full", "seconds": round(t_full, 2), "frobenius": round(f.metrics["frobenius"], 5)})
        write_table(results, "bench_lqer_cpu", rows, CSV_COLUMNS,
                    run_meta("bench_lqer_cpu", "benchmarks/bench_lqer.py", layer=[a.out, a.inp], rank=a.rank,
                             method="l2qer", weights="randn x 0.02, seed 0"))
        print(f"wrote {results / 'bench_lqer_cpu.csv'} and its .meta.json")


if __name__ == "__main__":
    main()
