"""Whole-model L2QER (W4A8, k = 32) of SmolLM2-135M on CPU. Targets: <= 120 s excluding
calibration; peak RSS <= 3x the model's fp32 size.

    .venv/bin/python benchmarks/bench_quantize_model.py [--svd full|randomized] [--calib-samples 4] [--out docs/results]

``--out DIR`` also writes the printed values (same rounding) to DIR/bench_quantize_model_cpu.csv and
the machine, threads, commit and command to its .meta.json (experiments.provenance).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import resource
import time

import torch

TARGET_S = 120.0
CSV_COLUMNS = ["model", "svd", "params_M", "fp32_MiB", "calibration_s", "layers", "quantize_s", "target_s",
               "rss_after_load_MiB", "peak_rss_MiB", "x_fp32", "target_x_fp32", "bits_per_weight"]


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--svd", default="full", choices=["full", "randomized"])
    p.add_argument("--calib-samples", type=int, default=4)
    p.add_argument("--calib-seq-len", type=int, default=256)
    p.add_argument("--out", default=None, help="also write bench_quantize_model_cpu.csv + .meta.json into this folder")
    a = p.parse_args()
    from experiments.provenance import check_out_dir, run_meta, write_table

    out = check_out_dir(p, a.out)
    from lqer.config import load_config
    from lqer.data import calibration_batches
    from lqer.model import load_model
    from lqer.quantize import quantize_model

    model, tok = load_model(a.model)
    model_mb = sum(t.numel() * 4 for t in model.state_dict().values()
                   if t.data_ptr() not in ()) / 2**20
    n_params = sum(p.numel() for p in model.parameters())
    model_mb = n_params * 4 / 2**20
    rss_loaded = rss_mb()
    calib = calibration_batches(tok, a.calib_samples, a.calib_seq_len, 0)
    cfg = load_config("W4A8", method="l2qer", svd=a.svd)
    model, info = quantize_model(model, cfg, calibration_batches=calib, progress=True)
    peak = rss_mb()
    print(f"model: {n_params / 1e6:.1f} M params, fp32 size {model_mb:.0f} MiB; torch threads {torch.get_num_threads()}")
    print(f"calibration ({a.calib_samples} x {a.calib_seq_len} tokens): {info['calibration_s']:.1f} s")
    print(f"quantize {info['n_layers']} layers (L2QER W4A8 k=32, svd={a.svd}): {info['quantize_s']:.1f} s "
          f"(target <= {TARGET_S:.0f} s: ratio {info['quantize_s'] / TARGET_S:.2f})")
    print(f"peak RSS {peak:.0f} MiB (after load {rss_loaded:.0f} MiB) = {peak / model_mb:.2f}x the fp32 model "
          f"(target <= 3x)")
    print(f"avg bits per weight {info['avg_bits_per_weight']:.3f}")
    if out is not None:
        row = {"model": a.model, "svd": a.svd, "params_M": round(n_params / 1e6, 1), "fp32_MiB": round(model_mb),
               "calibration_s": round(info["calibration_s"], 1), "layers": info["n_layers"],
               "quantize_s": round(info["quantize_s"], 1), "target_s": TARGET_S, "rss_after_load_MiB": round(rss_loaded),
               "peak_rss_MiB": round(peak), "x_fp32": round(peak / model_mb, 2), "target_x_fp32": 3.0,
               "bits_per_weight": round(info["avg_bits_per_weight"], 3)}
        write_table(out, "bench_quantize_model_cpu", [row], CSV_COLUMNS,
                    run_meta("bench_quantize_model_cpu", "benchmarks/bench_quantize_model.py", method="l2qer",
                             config="W4A8", calibration=[a.calib_samples, a.calib_seq_len]))
        print(f"wrote {out / 'bench_quantize_model_cpu.csv'} and its .meta.json")


if __name__ == "__main__":
    main()
