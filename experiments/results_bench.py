"""The benchmark results of ``mxlab reproduce`` (experiments.results): each benchmark script writes
NAME.csv + NAME.meta.json into its output folder (experiments.provenance); ``--rerun`` runs it.
Time them on an idle machine: the files are what the README and the docs quote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


# the columns of the two speed tables (the scripts write them, the README tests read them)
MATMUL_CSV_COLUMNS = ["benchmark", "ms", "ratio", "target", "cpu_time_ratio"]
QUANTIZE_CSV_COLUMNS = ["format", "rounding", "threads", "melem_per_s", "x_copy", "target", "referee_melem_per_s",
                        "x_referee", "x_copy_kept"]
# --device cuda: one row per timed kernel and input dtype; pct_of_clone = clone() time / its time
QUANTIZE_CUDA_CSV_COLUMNS = ["dtype", "case", "op", "ms", "pct_of_clone", "target_pct", "clone_gb_per_s", "torchao_ms",
                             "x_torchao", "target_x_torchao"]


# (script, its arguments, its output-folder flag): each writes NAME.csv + NAME.meta.json there
# (experiments.provenance); bench_lqer's --out is the layer's output width, so it takes --results
BENCHMARKS = {
    "bench_matmul_cpu": ("benchmarks/bench_matmul.py", [], "--out"),
    "bench_quantize_cpu": ("benchmarks/bench_quantize.py", ["--no-compile", "--repeat", "5", "--threads", "2"], "--out"),
    "bench_quantize_cuda": ("benchmarks/bench_quantize.py", ["--device", "cuda", "--repeat", "20"], "--out"),
    "bench_datapath_cpu": ("benchmarks/bench_datapath.py", ["--threads", "2"], "--out"),
    "bench_lqer_cpu": ("benchmarks/bench_lqer.py", [], "--results"),
    "bench_quantize_model_cpu": ("benchmarks/bench_quantize_model.py", [], "--out"),
    "bench_lrc_layer_cpu": ("benchmarks/bench_lrc.py", ["layer", "--threads", "2"], "--out"),
    "bench_lrc_layer_cuda": ("benchmarks/bench_lrc.py", ["layer", "--device", "cuda", "--threads", "4"], "--out"),
    # writes a 13 GB synthetic 7B checkpoint under /tmp (deleted after); 1-2 h on an idle 2-core CPU
    "streaming_7b_l2qer_cpu": ("benchmarks/bench_streaming.py", ["--layers", "4", "32", "--method", "l2qer",
                                                                "--cleanup"], "--out"),
    # LRC needs >= 2 x 11008 calibration tokens; the first layer of a 2- and a 32-layer model (the
    # same 13 GB checkpoint), float32 statistics: ~12 min per layer on a 2-core CPU
    "streaming_7b_lrc_cpu": ("benchmarks/bench_streaming.py", ["--layers", "2", "32", "--quantize-layers", "1",
                                                              "--method", "lrc", "--stats-dtype", "float32",
                                                              "--calib-samples", "172", "--calib-seq-len", "128",
                                                              "--cleanup"], "--out"),
    # LRC end to end on a 4-layer checkpoint of the same shapes (written alone: ~1.7 GB):
    # ~7 min per layer on an idle 2-core CPU
    "streaming_7b_lrc4_cpu": ("benchmarks/bench_streaming.py", ["--layers", "4", "--total-layers", "4", "--method",
                                                               "lrc", "--stats-dtype", "float32", "--calib-samples",
                                                               "172", "--calib-seq-len", "128", "--threads", "2",
                                                               "--name", "streaming_7b_lrc4_cpu", "--cleanup"],
                              "--out"),
}


def bench_command(name: str) -> str:
    script, args, flag = BENCHMARKS[name]
    return " ".join(["python", script, *args, flag, "docs/results"])


def benchmark(name: str):
    """--rerun only: the benchmark itself, on this machine (time it on an idle one)."""
    def regen(out: Path, rerun: bool) -> None:
        script, args, flag = BENCHMARKS[name]
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": str(root)}
        rc = subprocess.run([sys.executable, str(root / script), *args, flag, str(out)], env=env).returncode
        if rc:
            raise RuntimeError(f"{script} exited {rc}")

    return regen
