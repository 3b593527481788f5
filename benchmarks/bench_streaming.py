"""Streaming quantization of a 7B-shaped model (issue 18): peak RSS and time per layer.

Writes a synthetic Llama checkpoint with LLaMA-2-7B shapes (hidden 4096, MLP 11008, 32 heads,
vocab 32000; bf16 on disk, sharded one layer per file; random weights) once under --work,
then quantizes it with ``lqer.streaming.quantize_streaming`` in a fresh child process per
run and reports that child's peak RSS (ru_maxrss) against the target

    one decoder layer in fp32 + calibration activations + 2 GiB

where "calibration activations" = the hidden states carried between layers, in and out
(2 x tokens x hidden x bytes of the compute dtype), plus one batch's MLP intermediate in fp32
(tokens_per_batch x 11008 x 4 x 3: gate, up, their product). A run with --layers 4 and one
with --layers 32 (both the 32-layer checkpoint's first layers are read from the same shard
files through a 4-layer view: its own config.json and index) show whether the peak depends on
the number of layers.

    .venv/bin/python benchmarks/bench_streaming.py --layers 4 32 --method l2qer
    .venv/bin/python benchmarks/bench_streaming.py --layers 4 32 --quantize-layers 4   # same depth quantized
    .venv/bin/python benchmarks/bench_streaming.py --layers 2 32 --quantize-layers 1 --method lrc \\
        --stats-dtype float32 --calib-samples 172 --calib-seq-len 128   # LRC needs >= 2 x 11008 tokens

Disk: the 32-layer bf16 checkpoint is 13.0 GB plus ~0.2 GB per quantized layer; --cleanup
deletes the work directory afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GiB = 1024**3


def layer_params(hidden, inter, heads, kv_heads):
    hd = hidden // heads
    return hidden * heads * hd * 2 + 2 * hidden * kv_heads * hd + 3 * hidden * inter + 2 * hidden


def make_checkpoint(work: Path, n_layers: int, shapes: dict) -> Path:
    """The full checkpoint (written once, reused) and an n-layer view of it (symlinked shards)."""
    from lqer.synthetic import write_synthetic_llama

    full_layers = shapes["num_hidden_layers"]
    full = work / f"llama7b-shapes-{full_layers}L"
    if not (full / ".complete").is_file():
        if full.exists():
            shutil.rmtree(full)
        t = time.perf_counter()
        write_synthetic_llama(full, **shapes)
        (full / ".complete").write_text("ok\n")
        print(f"# wrote {full} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if n_layers == full_layers:
        return full
    view = work / f"llama7b-shapes-{n_layers}L-view"
    if view.exists():
        shutil.rmtree(view)
    view.mkdir()
    cfg = json.loads((full / "config.json").read_text())
    cfg["num_hidden_layers"] = n_layers
    (view / "config.json").write_text(json.dumps(cfg, indent=1))
    index = json.loads((full / "model.safetensors.index.json").read_text())
    keep = {}
    for name, f in index["weight_map"].items():
        if name.startswith("model.layers."):
            if int(name.split(".")[2]) >= n_layers:
                continue
        keep[name] = f
    for f in set(keep.values()):
        os.symlink(full / f, view / f)
    # the head's shard is only readable whole: fine, the reader reads tensors by name
    (view / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": keep}))
    return view


def child(args):
    """Runs in a fresh process: one streaming quantization; prints a JSON line."""
    import torch

    from lqer import load_config
    from lqer.streaming import quantize_streaming

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    calib = torch.randint(0, args.vocab, (args.calib_samples, args.calib_seq_len), generator=g)
    over = {"method": args.method, "rank": args.rank, "svd": args.svd}
    if args.stats_dtype is not None:
        over["options"] = {"stats_dtype": args.stats_dtype}
    cfg = load_config(args.config, **over)
    out = Path(args.child_out)
    if out.exists():
        shutil.rmtree(out)
    marks = []  # after each layer: (peak RSS so far, process CPU seconds so far, 1-min load average)

    def log(s):
        u = resource.getrusage(resource.RUSAGE_SELF)
        if s.startswith("stream: layer "):
            marks.append((u.ru_maxrss * 1024, u.ru_utime + u.ru_stime, os.getloadavg()[0]))
        print(f"{s}; peak RSS so far {u.ru_maxrss * 1024 / GiB:.2f} GiB; load {os.getloadavg()[0]:.1f}",
              file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = cpu0.ru_utime + cpu0.ru_stime
    man = quantize_streaming(args.ckpt, cfg, calib, out, calibration_input=args.calibration_input,
                             dtype=args.dtype, device=args.device, progress=False, layers=args.quantize_layers,
                             log=log)
    total = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    per = [r["seconds"] for r in man["layers"]]
    cpu = [b[1] - a for a, b in zip([cpu0] + [m[1] for m in marks[:-1]], marks)]
    gpu_peak = None
    if args.device.startswith("cuda"):
        gpu_peak = torch.cuda.max_memory_allocated()
    print(json.dumps({"layers": len(per), "total_s": total, "per_layer_s": per, "peak_rss": rss, "per_layer_cpu_s": cpu,
                      "peak_rss_after_layer": [m[0] for m in marks], "model_layers": man["n_layers"],
                      "load_after_layer": [m[2] for m in marks],
                      "gpu_peak_alloc": gpu_peak, "bits_per_weight": man["avg_bits_per_weight"]}))


CSV_COLUMNS = ("model layers", "quantized", "peak_rss_GiB", "target_GiB", "rss/target",
               "peak after each layer (GiB)", "wall s/layer(mean)", "wall s/layer(min)", "cpu s/layer(mean)",
               "load(mean)", "load(min)", "load(max)", "bits/w")


def _printed(row: dict) -> dict:
    """A row as the CSV holds it: floats to 4 significant digits."""
    return {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--layers", type=int, nargs="+", default=[4], help="model depths to run (e.g. 4 32)")
    ap.add_argument("--method", default="l2qer", help="lqer method (l2qer, lrc, ...)")
    ap.add_argument("--config", default="W4A8", help="lqer config preset")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--svd", choices=["full", "randomized"], default="randomized")
    ap.add_argument("--calib-samples", type=int, default=4)
    ap.add_argument("--calib-seq-len", type=int, default=128)
    ap.add_argument("--calibration-input", choices=["fp_prefix", "quantized_prefix"], default="fp_prefix")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--stats-dtype", choices=["float64", "float32"], default=None,
                    help="LRC's covariance dtype (lqer.options.LRCOptions.stats_dtype; float32 fits a 7B layer "
                         "in the target)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--mlp", type=int, default=11008)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--total-layers", type=int, default=32, help="layers of the checkpoint written")
    ap.add_argument("--quantize-layers", type=int, default=None,
                    help="quantize only the first K layers of each model (default: all; K x time per layer)")
    ap.add_argument("--work", default="/tmp/mxlab-bench-streaming", help="directory for the checkpoint + outputs")
    ap.add_argument("--cleanup", action="store_true", help="delete --work at the end")
    ap.add_argument("--out", default=None,
                    help="also write the table to OUT/NAME.csv + NAME.meta.json (experiments.provenance: "
                         "atomically, after each run; command, commit, machine, load, settings)")
    ap.add_argument("--name", default=None,
                    help="result name (default streaming_7b_METHOD_DEVICE, or streaming_hHIDDEN_METHOD_DEVICE "
                         "for other shapes)")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--_child-out", dest="child_out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        return child(args)
    if max(args.layers) > args.total_layers or min(args.layers) < 1:
        ap.error(f"--layers must be in 1..--total-layers ({args.total_layers})")
    from experiments.provenance import check_out_dir, run_meta, write_table

    out_dir = check_out_dir(ap, args.out)
    dev_kind = "cuda" if args.device.startswith("cuda") else args.device
    size = "7b" if (args.hidden, args.mlp, args.heads) == (4096, 11008, 32) else f"h{args.hidden}"
    name = args.name or f"streaming_{size}_{args.method}_{dev_kind}"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    shapes = dict(hidden_size=args.hidden, intermediate_size=args.mlp, num_attention_heads=args.heads,
                  num_key_value_heads=args.heads, num_hidden_layers=args.total_layers, vocab_size=args.vocab)
    import torch

    dbytes = 2 if args.dtype in ("auto", "bfloat16", "float16") else 4
    tokens = args.calib_samples * args.calib_seq_len
    layer_fp32 = layer_params(args.hidden, args.mlp, args.heads, args.heads) * 4
    acts = 2 * tokens * args.hidden * dbytes + args.calib_seq_len * args.mlp * 4 * 3
    target = layer_fp32 + acts + 2 * GiB
    print(f"# machine: {os.cpu_count()} cores, torch {torch.__version__}, threads {args.threads}, "
          f"device {args.device}; method {args.method} {args.config} rank {args.rank} svd {args.svd}; "
          f"calibration {args.calib_samples} x {args.calib_seq_len} tokens ({args.calibration_input})")
    print(f"# one decoder layer fp32 {layer_fp32 / GiB:.2f} GiB + activations {acts / GiB:.3f} GiB + 2 GiB "
          f"= target {target / GiB:.2f} GiB")
    print(f"# load average at start: {os.getloadavg()[0]:.1f} (wall time per layer grows with it; CPU time less)")
    rows = []
    meta = run_meta(name, "benchmarks/bench_streaming.py", argv, device=args.device,
                    model={"synthetic": "lqer.synthetic.write_synthetic_llama", **shapes, "stored_dtype": "bfloat16",
                           "weights": "N(0, 0.02^2), seed 0"},
                    method={"method": args.method, "config": args.config, "rank": args.rank, "svd": args.svd,
                            "dtype": args.dtype, "calibration_input": args.calibration_input,
                            **({"stats_dtype": args.stats_dtype} if args.stats_dtype else {})},
                    calibration={"samples": args.calib_samples, "seq_len": args.calib_seq_len, "tokens": tokens,
                                 "ids": "torch.randint(0, vocab) with generator seed 0"},
                    target={"formula": "one decoder layer fp32 + calibration activations + 2 GiB",
                            "layer_fp32_GiB": layer_fp32 / GiB, "activations_GiB": acts / GiB,
                            "target_GiB": target / GiB})
    try:
        for n in args.layers:
            ck = make_checkpoint(work, n, shapes)
            cmd = [sys.executable, __file__, "--_child", "--ckpt", str(ck), "--_child-out", str(work / f"q-{n}L"),
                   "--method", args.method, "--config", args.config, "--rank", str(args.rank), "--svd", args.svd,
                   "--calib-samples", str(args.calib_samples), "--calib-seq-len", str(args.calib_seq_len),
                   "--calibration-input", args.calibration_input, "--dtype", args.dtype, "--device", args.device,
                   "--threads", str(args.threads), "--vocab", str(args.vocab)]
            if args.stats_dtype is not None:
                cmd += ["--stats-dtype", args.stats_dtype]
            if args.quantize_layers:
                cmd += ["--quantize-layers", str(min(args.quantize_layers, n))]
            res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if res.returncode != 0:
                raise SystemExit(f"bench_streaming: child for {n} layers failed (exit {res.returncode})")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            per = r["per_layer_s"]
            cpu = r["per_layer_cpu_s"]
            row = {"model layers": n, "quantized": r["layers"], "peak_rss_GiB": r["peak_rss"] / GiB,
                   "target_GiB": target / GiB, "rss/target": r["peak_rss"] / target,
                   "peak after each layer (GiB)": " ".join(f"{x / GiB:.2f}" for x in r["peak_rss_after_layer"]),
                   "wall s/layer(mean)": sum(per) / len(per), "wall s/layer(min)": min(per),
                   "cpu s/layer(mean)": sum(cpu) / len(cpu), "bits/w": r["bits_per_weight"]}
            if r["gpu_peak_alloc"] is not None:
                row["gpu_peak_GiB"] = r["gpu_peak_alloc"] / GiB
            loads = r["load_after_layer"]
            row.update({"load(mean)": sum(loads) / len(loads), "load(min)": min(loads), "load(max)": max(loads)})
            rows.append(row)
            print(json.dumps(row), flush=True)
            if out_dir is not None:
                cols = list(CSV_COLUMNS) + [c for c in row if c not in CSV_COLUMNS]
                write_table(out_dir, name, [_printed(r) for r in rows], cols,
                            {**meta, "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "load_average_at_end": list(os.getloadavg())})
            shutil.rmtree(work / f"q-{n}L", ignore_errors=True)
    finally:
        if args.cleanup:
            shutil.rmtree(work, ignore_errors=True)
    import pandas as pd

    df = pd.DataFrame(rows)
    print(df.to_markdown(index=False, floatfmt=".3g"))
    if len(rows) > 1:
        print(f"# peak RSS ratio deepest/shallowest: {rows[-1]['peak_rss_GiB'] / rows[0]['peak_rss_GiB']:.3f}")


if __name__ == "__main__":
    main()
