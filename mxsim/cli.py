"""The ``mxsim`` command: ``mxsim demo`` prints an error / bits-per-element table."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import ArgumentParser, int_at_least, run_cli


def _demo_table(rows, cols, seed, dist, rounding):
    import pandas as pd

    import mxsim

    r = np.random.default_rng(seed)
    x = (r.standard_normal((rows, cols)) if dist == "normal" else r.laplace(size=(rows, cols))).astype(np.float32)
    fmts = [*mxsim.FORMATS.values(), mxsim.BlockFP(4), mxsim.BlockFP(8)]
    recs = []
    x64 = x.astype(np.float64)
    for f in fmts:
        t = mxsim.quantize(x, f, rounding=rounding)
        y = mxsim.fake_quantize(x, f, rounding=rounding).astype(np.float64)
        err = y - x64
        recs.append({
            "format": f.name,
            "block": f.block_size,
            "bits/elem": t.nbits / x.size,
            "rmse": float(np.sqrt(np.mean(err**2))),
            "max |err|": float(np.abs(err).max()),
            "SQNR dB": float(10 * np.log10(np.sum(x64**2) / max(np.sum(err**2), 1e-300))),
        })
    return pd.DataFrame.from_records(recs)


def _rounding(text: str) -> str:
    from .formats import ROUNDING_MODES

    if text not in ROUNDING_MODES:
        raise argparse.ArgumentTypeError(f"unknown rounding {text!r} (allowed: {', '.join(ROUNDING_MODES)})")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="mxsim", description="Bit-exact MX number-format emulator.")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="quantize a random tensor to every format; print error and storage")
    d.add_argument("--rows", type=int_at_least(1), default=256)
    d.add_argument("--cols", type=int_at_least(1), default=1024)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--dist", choices=("normal", "laplace"), default="normal")
    d.add_argument("--rounding", type=_rounding, default="nearest_even",
                   help="nearest_even, nearest_away, floor or stochastic")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def demo():
        df = _demo_table(args.rows, args.cols, args.seed, args.dist, args.rounding)
        print(f"{args.rows}x{args.cols} {args.dist} float32, blocks along the last axis, rounding {args.rounding}")
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    return run_cli(f"mxsim {args.cmd}", demo)


if __name__ == "__main__":
    sys.exit(main())
