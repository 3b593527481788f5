"""mxlab: the report, the design-space sweep and the perplexity table.

    python -m experiments.cli report [--name NAME] [--model PATH] [--device auto|cpu|cuda]
                                     [--windows N --seq-len L | --full] [--calib-samples N]
                                     [--ranks 4,8,...] [--quick]
    python -m experiments.cli sweep  [--grid grid.toml] [--scheduler ADDRESS] [--out DIR] [--workers N]
    python -m experiments.cli table  [--configs W4A8,W3A8] [--methods ...] [--full] [--device cuda] [--out DIR]
    python -m experiments.cli reproduce [NAME ...] [--list] [--rerun] [--out DIR]
        (the published results in docs/results/: CSV + meta JSON per README table)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mxsim.errors import ArgumentParser, int_at_least, run_cli


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _str_list(text: str) -> list[str]:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    if not vals:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return vals


def _add_eval_args(p, windows_default=None):
    p.add_argument("--model", default="smollm2-135m",
                   help="'smollm2-135m' (default, the bundled GGUF), a .gguf file or a local HF model directory")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--windows", type=int_at_least(1), default=windows_default,
                   help="number of WikiText-2 test windows for perplexity")
    p.add_argument("--seq-len", type=int_at_least(1), default=None, help="tokens per perplexity window")
    p.add_argument("--full", action="store_true", help="evaluate on the whole WikiText-2 test split")
    p.add_argument("--calib-samples", type=int_at_least(1), default=None, help="calibration windows from the valid split")
    p.add_argument("--calib-seq-len", type=int_at_least(1), default=None, help="tokens per calibration window")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--torch-threads", type=int_at_least(1), default=None,
                   help="torch intra-op threads (default: all cores, or 1 when the machine is already busy)")


def build_parser() -> argparse.ArgumentParser:
    from lqer.methods import required_methods, table_methods

    table, required = ",".join(table_methods()), ",".join(required_methods())  # lqer's registry's lists
    ap = ArgumentParser(prog="mxlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")

    r = sub.add_parser("report", help="the LQER report on a real model (the main job)")
    r.add_argument("--name", default=None, help="report name: written to reports/<name>/ (default: <model>-cpu, "
                                                "<model>-quick with --quick, <model>-full with --full; "
                                                "<model> is smollm2 for the bundled model)")
    r.add_argument("--reports-dir", default="reports", help="parent directory of reports/<name>/")
    _add_eval_args(r)
    r.add_argument("--ranks", type=_int_list, default=None, help="ranks for the perplexity-vs-rank figure")
    r.add_argument("--configs", type=_str_list, default=None, help="lqer presets for the table (default W4A8,W3A8)")
    r.add_argument("--methods", type=_str_list, default=None,
                   help=f"table methods (default {table}; {required} are required)")
    r.add_argument("--spectrum-layer", default=None, help="linear layer for the spectrum figure (a module name)")
    r.add_argument("--svd", default=None, choices=["full", "randomized"],
                   help="lqer SVD for the quantized models (default randomized; full with --full)")
    r.add_argument("--max-blocks", type=int_at_least(1), default=None,
                   help="quantize only the first N decoder blocks (smoke tests; the rest stays full precision)")
    r.add_argument("--quick", action="store_true", help="tiny settings (a couple of minutes), for smoke tests")

    s = sub.add_parser("sweep", help="design-space sweep on Dask (Pareto front of perplexity vs area)")
    s.add_argument("--grid", default=None, help="grid TOML file (default: experiments/grids/default.toml)")
    s.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786)")
    s.add_argument("--out", default="reports/sweep", help="output directory (per-point cache in <out>/points)")
    s.add_argument("--workers", type=int_at_least(1), default=1, help="LocalCluster worker processes (ignored with --scheduler)")
    s.add_argument("--threads", action="store_true", help="LocalCluster with threads in this process (processes=False)")
    s.add_argument("--retry-failed", action="store_true", help="re-run points whose cached record is a failure")
    s.add_argument("--model", default=None, help="override the grid's settings.model")
    s.add_argument("--device", default=None, help="override the grid's device (auto/cpu/cuda; default auto)")
    s.add_argument("--gpus", default=None, metavar="N|auto",
                   help="one local worker process per GPU (the first N, or all), each pinned to its GPU with "
                        "CUDA_VISIBLE_DEVICES; implies --device cuda, replaces --workers")
    s.add_argument("--no-progress", action="store_true")

    t = sub.add_parser("table", help="the perplexity / bits-per-weight table (e.g. full split on a GPU)")
    _add_eval_args(t)
    t.add_argument("--configs", type=_str_list, default=["W4A8", "W3A8"], help="lqer presets")
    t.add_argument("--methods", type=_str_list, default=None, help=f"methods (default {table})")
    t.add_argument("--out", default="reports/table", help="output directory (table.csv, table.md)")

    rp = sub.add_parser("reproduce", help="regenerate a published result (docs/results/NAME.csv + meta JSON)")
    rp.add_argument("names", nargs="*", help="results to regenerate (see --list); default: every quick one")
    rp.add_argument("--list", action="store_true", help="list the results, the tables they feed and their commands")
    rp.add_argument("--rerun", action="store_true",
                    help="re-measure (minutes to hours; CUDA for the GPU tables) instead of only the quick results")
    rp.add_argument("--out", default=None, help="output directory (default: docs/results in the checkout)")
    return ap


def _threads(args) -> None:
    from .util import set_threads

    n = set_threads(args.torch_threads)
    print(f"mxlab: torch uses {n} thread(s)", file=sys.stderr)


def _report(args) -> int:
    from .report import ReportSettings, run_report

    settings = ReportSettings.from_args(args)  # every check first: a mistake prints one line
    _threads(args)
    path = run_report(settings)
    print(f"report written to {path}")
    return 0


def _sweep(args) -> int:
    from .sweep import run_sweep

    override = {"model": args.model, "device": args.device}
    df = run_sweep(args.grid, args.out, scheduler=args.scheduler, workers=args.workers,
                   processes=not args.threads, retry_failed=args.retry_failed,
                   progress=not args.no_progress, settings_override=override, gpus=args.gpus)
    print(df.drop(columns=["key"]).to_string(index=False))
    print(f"sweep written to {os.path.join(args.out, 'sweep.md')}")
    failed = int((df["status"] != "ok").sum())
    if failed == len(df):
        print(f"mxlab sweep: every one of the {failed} point(s) failed; see the error column", file=sys.stderr)
        return 1
    if failed:
        print(f"{failed} point(s) failed; see the error column (rerun with --retry-failed)", file=sys.stderr)
    return 0


def _table(args) -> int:
    from .report import check_table_args, run_table

    check_table_args(args)
    _threads(args)
    path = run_table(args)
    print(f"table written to {path}")
    return 0


def _reproduce(args) -> int:
    from .results import RESULTS, RESULTS_DIR, listing, reproduce

    if args.list:
        print(listing())
        return 0
    names = args.names or [n for n, r in RESULTS.items() if r.quick or args.rerun]
    reproduce(names, Path(args.out) if args.out else RESULTS_DIR, rerun=args.rerun)
    return 0


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.cmd is None:
        ap.print_help()
        return 2

    def body():
        return {"report": _report, "sweep": _sweep, "table": _table, "reproduce": _reproduce}[args.cmd](args)

    hint = None
    if args.cmd == "sweep":
        hint = f"finished points are kept in {os.path.join(args.out, 'points')}; run the same command to resume"
    return run_cli(f"mxlab {args.cmd}", body, interrupted_hint=hint)


if __name__ == "__main__":
    sys.exit(main())
