"""mxsim.matmul speed against references timed in the same run (issue 14's matmul rows).

    python benchmarks/bench_matmul.py [--size 2048] [--repeat 3] [--threads N] [--device cpu|cuda] [--out docs/results]

CPU rows: MXINT8 size^3 "exact" and "fp32" (fused, per block) vs torch float32 matmul
(targets <= 2x and <= 3x), FixedPoint(32,16) / (24,8) at the SmolLM2 MLP shape
2048x576x1536 (target <= 3x). CUDA rows (--device cuda): the same accumulators at 8192^3 vs
torch._int_mm on int8 (targets: fp32 and FixedPoint >= 30% of its throughput, exact >= 10%);
``--configs`` adds a sweep of the fused epilogue's launch configuration (mxsim.gpu.MM_CONFIGS).
Every ratio is a best-of-``repeat`` wall time against a reference timed in this process.
``--out DIR`` also writes the printed rows (same rounding) to DIR/bench_matmul_{cpu,cuda}.csv and
the machine, threads, commit and command to its .meta.json (experiments.provenance).
--threads sets torch's and numba's thread counts for both sides (default: torch's default,
the machine's cores); mxsim's CPU matmul runs on torch's thread count.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mxsim  # noqa: E402
from experiments.provenance import check_out_dir, run_meta, write_table  # noqa: E402
from experiments.results_bench import MATMUL_CSV_COLUMNS  # noqa: E402


CPU_TIMES = {}  # best process CPU seconds per timed function (reported beside wall time)


def best_of(fn, repeat, sync=None):
    """Best wall time of ``repeat`` calls; also records the best CPU time of the process,
    which is the fairer ratio on a shared, loaded machine (waiting does not count)."""
    best = cpu = float("inf")
    for _ in range(repeat):
        if sync:
            sync()
        t, c = time.perf_counter(), time.process_time()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    CPU_TIMES[fn] = cpu
    return best


def machine_line(device):
    import numba
    import torch

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if device == "cuda" else ""
    return (f"commit {commit}; {cpu}, {os.cpu_count()} logical CPUs{gpu}; torch {torch.__version__} threads "
            f"{torch.get_num_threads()}, numba threads {numba.get_num_threads()}; load avg {os.getloadavg()[0]:.1f}")


def operands(M, K, N, device, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    A = torch.randn(M, K, generator=g)
    B = torch.randn(K, N, generator=g)
    if device == "cuda":
        A, B = A.cuda(), B.cuda()
    return A, B


def cpu_rows(args):
    import torch

    rows = []
    n = args.size
    A, B = operands(n, n, n, "cpu")
    a, b = mxsim.quantize(A, "MXINT8"), mxsim.quantize(B, "MXINT8", axis=0)
    t = time.perf_counter()
    mxsim.matmul(mxsim.quantize(A[:4, :64], "MXINT8"), mxsim.quantize(B[:64, :4], "MXINT8", axis=0), "fp32")
    print(f"first matmul call (compile or cache load): {time.perf_counter() - t:.2f} s")
    torch.matmul(A, B)
    ref = best_of(lambda: torch.matmul(A, B), args.repeat)
    ref_cpu = CPU_TIMES.popitem()[1]
    rows.append((f"torch float32 matmul {n}^3", ref, None, None, ref_cpu))
    for acc, target in (("exact", 2.0), ("fp32", 3.0)):
        mxsim.matmul(a, b, acc)
        s = best_of(lambda: mxsim.matmul(a, b, acc), args.repeat)
        rows.append((f"MXINT8 {n}^3 {acc}", s, s / ref, f"<= {target:g}x", CPU_TIMES.popitem()[1] / ref_cpu))
    # SmolLM2-135M MLP: tokens x hidden 576 -> intermediate 1536
    M, K, N = 2048, 576, 1536
    A, B = operands(M, K, N, "cpu", 1)
    a, b = mxsim.quantize(A, "MXINT8"), mxsim.quantize(B, "MXINT8", axis=0)
    torch.matmul(A, B)
    ref = best_of(lambda: torch.matmul(A, B), args.repeat)
    ref_cpu = CPU_TIMES.popitem()[1]
    rows.append((f"torch float32 matmul {M}x{K}x{N}", ref, None, None, ref_cpu))
    for acc in (mxsim.FixedPoint(32, 16), mxsim.FixedPoint(24, 8)):
        mxsim.matmul(a, b, acc)
        s = best_of(lambda: mxsim.matmul(a, b, acc), args.repeat)
        rows.append((f"MXINT8 {M}x{K}x{N} {acc}", s, s / ref, "<= 3x", CPU_TIMES.popitem()[1] / ref_cpu))
    # sanity: exact equals the float64 product of the dequantized operands when that is exact
    sub = mxsim.quantize(A[:64], "MXINT8")
    assert np.array_equal(mxsim.matmul(sub, b), sub.dequantize(torch.float64).numpy() @ b.dequantize(torch.float64).numpy())
    return rows


def cuda_rows(args):
    import torch

    rows = []
    n = args.size
    sync = torch.cuda.synchronize
    Ai = torch.randint(-127, 128, (n, n), dtype=torch.int8, device="cuda")
    Bi = torch.randint(-127, 128, (n, n), dtype=torch.int8, device="cuda")
    torch._int_mm(Ai, Bi)
    ref = best_of(lambda: torch._int_mm(Ai, Bi), args.repeat, sync)
    rows.append((f"torch._int_mm int8 {n}^3", ref, None, None, None))
    A, B = operands(n, n, n, "cuda")
    t = time.perf_counter()
    a, b = mxsim.quantize(A, "MXINT8"), mxsim.quantize(B, "MXINT8", axis=0)
    sync()
    print(f"quantize both operands (first call, compiles): {time.perf_counter() - t:.2f} s")
    for acc, target in (("exact", 0.10), ("fp32", 0.30), (mxsim.FixedPoint(32, 16), 0.30),
                        (mxsim.FixedPoint(24, 8), 0.30)):
        mxsim.matmul(a, b, acc)
        s = best_of(lambda: mxsim.matmul(a, b, acc), args.repeat, sync)
        rows.append((f"MXINT8 {n}^3 {acc} (throughput vs _int_mm)", s, ref / s, f">= {target:.0%}", None))
    if args.configs:  # tuning sweep of the float32/int32 epilogue's launch configuration
        from mxsim import gpu

        keep = gpu.MM_CONFIGS["fast"]
        try:
            for spec in args.configs.split(","):
                cfg = tuple(int(v) for v in spec.lower().split("x"))
                gpu.MM_CONFIGS["fast"] = cfg
                for acc in ("fp32", mxsim.FixedPoint(32, 16)):
                    mxsim.matmul(a, b, acc)
                    s = best_of(lambda: mxsim.matmul(a, b, acc), args.repeat, sync)
                    rows.append((f"  config {spec} {acc}", s, ref / s, ">= 30%", None))
        finally:
            gpu.MM_CONFIGS["fast"] = keep
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None, help="square size (default 2048 on CPU, 8192 on CUDA)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default=None, help="also write bench_matmul_DEVICE.csv + .meta.json into this folder")
    p.add_argument("--configs", default=None,
                   help="cuda: also time the fast epilogue at launch configs BMxBNxWARPSxSTAGES,... (e.g. 128x128x8x3,128x64x4x4)")
    p.add_argument("--threads", type=int, default=None, help="threads for torch and numba (default: all cores)")
    args = p.parse_args()
    if args.threads is not None:
        import numba
        import torch

        if args.threads < 1 or args.threads > numba.config.NUMBA_NUM_THREADS:
            p.error(f"--threads must be in 1..{numba.config.NUMBA_NUM_THREADS}, got {args.threads}")
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    if args.size is None:
        args.size = 8192 if args.device == "cuda" else 2048
    if args.size < 64:
        p.error("--size must be at least 64")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device is available")
    out = check_out_dir(p, args.out)
    print(machine_line(args.device))
    rows = cuda_rows(args) if args.device == "cuda" else cpu_rows(args)
    for name, s, ratio, target, cpu in rows:
        line = f"{name:<52}{s * 1e3:10.1f} ms"
        if ratio is not None:
            line += f"   {ratio:6.2f}{'x' if args.device == 'cpu' else ''}   (target {target})"
            if cpu is not None:
                line += f"   CPU-time ratio {cpu:5.2f}x"
        print(line)
    if out is not None:
        write_table(out, f"bench_matmul_{args.device}", [csv_row(*r) for r in rows], MATMUL_CSV_COLUMNS,
                    run_meta(f"bench_matmul_{args.device}", "benchmarks/bench_matmul.py", device=args.device,
                             ratio=RATIO[args.device]))
        print(f"wrote {out / f'bench_matmul_{args.device}.csv'} and its .meta.json")


# the CSV (its columns: experiments.results_bench.MATMUL_CSV_COLUMNS): one row per printed line, the
# values rounded as printed; RATIO: what its ratio column means
RATIO = {"cpu": "mxsim time / the torch float32 matmul above it (wall); cpu_time_ratio: the same in process CPU time",
         "cuda": "throughput as a fraction of torch._int_mm above it"}


def csv_row(name, s, ratio, target, cpu):
    return {"benchmark": name, "ms": round(s * 1e3, 1), "ratio": None if ratio is None else round(ratio, 2),
            "target": target, "cpu_time_ratio": None if cpu is None or ratio is None else round(cpu, 2)}


if __name__ == "__main__":
    main()
