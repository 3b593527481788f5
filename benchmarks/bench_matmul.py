"""Exact-accumulator MXINT8 matmul vs torch float32 matmul, in the same run.

    python benchmarks/bench_matmul.py [--size 2048] [--repeat 3] [--fp32]

Target: exact MXINT8 matmul <= 5x the float32 matmul time.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mxsim  # noqa: E402


def best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--fp32", action="store_true", help="also time the fused fp32 accumulator")
    args = p.parse_args()
    import torch

    n = args.size
    r = np.random.default_rng(0)
    A = r.standard_normal((n, n)).astype(np.float32)
    B = r.standard_normal((n, n)).astype(np.float32)
    a, b = mxsim.quantize(A, "MXINT8"), mxsim.quantize(B, "MXINT8", axis=0)
    t = time.perf_counter()
    small = mxsim.matmul(mxsim.quantize(A[:4, :64], "MXINT8"), mxsim.quantize(B[:64, :4], "MXINT8", axis=0))
    print(f"first matmul call (compile or cache load): {time.perf_counter() - t:.2f} s")
    assert np.isfinite(small).all()
    At, Bt = torch.from_numpy(A), torch.from_numpy(B)
    torch.matmul(At, Bt)
    ts = best_of(lambda: torch.matmul(At, Bt), args.repeat)
    ms = best_of(lambda: mxsim.matmul(a, b, "exact"), args.repeat)
    print(f"{n}^3, torch threads {torch.get_num_threads()}")
    print(f"torch float32 matmul      {ts * 1e3:9.1f} ms")
    print(f"mxsim MXINT8 exact        {ms * 1e3:9.1f} ms   {ms / ts:5.2f}x float32 (target <= 5x)")
    if args.fp32:
        fs = best_of(lambda: mxsim.matmul(a, b, "fp32"), 1)
        print(f"mxsim MXINT8 fp32 (fused) {fs * 1e3:9.1f} ms   {fs / ts:5.2f}x float32")
    # sanity: exact equals the float64 product of the dequantized operands when that is exact
    ref = a.dequantize(np.float64)[:64] @ b.dequantize(np.float64)
    assert np.array_equal(mxsim.matmul(mxsim.quantize(A[:64], "MXINT8"), b), ref)


if __name__ == "__main__":
    main()
