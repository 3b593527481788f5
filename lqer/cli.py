"""lqer command line: ``lqer eval`` (one config/method) and ``lqer table`` (the README table)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from mxsim.errors import ArgumentParser, UserError, int_at_least, rank_arg, run_cli, user_input
from mxsim.files import atomic_write, check_output


def _accumulator(text: str):
    from mxsim.accumulators import parse_accumulator

    try:
        return parse_accumulator(text, what="accumulator")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_accumulator.__name__ = "accumulator"


def _common(p):
    p.add_argument("--model", default="smollm2-135m", help="model name, .gguf file or HF model directory")
    p.add_argument("--seq-len", type=int_at_least(2), default=1024, help="evaluation window length in tokens")
    p.add_argument("--windows", type=int_at_least(1), default=8, help="number of WikiText-2 test windows")
    p.add_argument("--full", action="store_true", help="evaluate on the whole test split")
    p.add_argument("--calib-samples", type=int_at_least(1), default=16, help="calibration windows from valid.txt")
    p.add_argument("--calib-seq-len", type=int_at_least(2), default=512, help="calibration window length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rank", type=rank_arg, default=None,
                   help="override the config's rank: 32, a fraction of min(d_in, d_out) such as 0.1, or 0.1:of_params")
    p.add_argument("--svd", choices=["full", "randomized"], default=None)
    p.add_argument("--factor-axis", choices=["last", "reduction"], default=None)
    p.add_argument("--accumulator", type=_accumulator, default=None, metavar="float|exact|fp32[:lanes]|fixed:TOTAL:FRAC[:wrap]",
                   help="the MX dot-product accumulator every quantized GEMM runs on (mxsim.matmul); "
                        "default: the config's (float = fake-quantize + float matmul)")
    p.add_argument("--no-progress", action="store_true")


def _overrides(args, method):
    o = {"method": method}
    if args.rank is not None:
        o["rank"] = args.rank
    if args.svd is not None:
        o["svd"] = args.svd
    if args.factor_axis is not None:
        o["factor_axis"] = args.factor_axis
    if getattr(args, "accumulator", None) is not None:
        o["accumulator"] = args.accumulator
    return o


def _setup(args):
    from .data import calibration_batches, load_wikitext, token_windows
    from .model import load_model

    model, tok = load_model(args.model)
    windows = token_windows(tok, load_wikitext("test"), args.seq_len, None if args.full else args.windows)
    calib = calibration_batches(tok, args.calib_samples, args.calib_seq_len, args.seed)
    return tok, windows, calib


def run_rows(args, configs, methods):
    """Yield one result dict per (config, method); one calibration pass (lqer.quantize.
    collect_shared_stats) feeds every method that needs statistics, each observer built from
    the config it serves (activation format, rotation, threshold)."""
    from .config import load_config
    from .evaluate import perplexity
    from .methods import get_method
    from .model import load_model
    from .quantize import collect_shared_stats, quantize_model

    progress = not args.no_progress
    tok, windows, calib = _setup(args)
    cfgs = [(cname, load_config(cname, **_overrides(args, m))) for cname in configs for m in methods]
    stats = None
    fp_ppl = None
    for cname, cfg in cfgs:
        model, _ = load_model(args.model)
        if stats is None and any(get_method(c.method).calibrates for _, c in cfgs):
            t = time.perf_counter()
            stats = collect_shared_stats(model, [c for _, c in cfgs], calib, progress=progress)
            print(f"# calibration: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        t = time.perf_counter()
        full_precision = get_method(cfg.method).full_precision  # the same float model for every config
        if full_precision and fp_ppl is not None:
            ppl, bits, tq = fp_ppl
        else:
            model, info = quantize_model(model, cfg, stats=None if stats is None else stats.for_config(cfg),
                                         progress=progress)
            tq = time.perf_counter() - t
            ppl = perplexity(model, windows, progress=progress)
            bits = info["avg_bits_per_weight"]
            if full_precision:
                fp_ppl = (ppl, bits, tq)
        row = {"config": cname, "method": cfg.method, "accumulator": str(cfg.accumulator), "perplexity": ppl, "avg_bits_per_weight": bits,
               "quantize_s": tq}
        print(json.dumps(row), file=sys.stderr, flush=True)
        yield row
        del model


def cmd_eval(args):
    rows = list(run_rows(args, [args.config], [args.method]))
    r = rows[0]
    print(f"{r['config']} {r['method']} (accumulator {r['accumulator']}): perplexity {r['perplexity']:.3f}, "
          f"avg bits/weight {r['avg_bits_per_weight']:.3f}")


def cmd_table(args):
    import pandas as pd

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows = list(run_rows(args, configs, methods))
    df = pd.DataFrame(rows)
    table = df.pivot_table(index="method", columns="config", values=["perplexity", "avg_bits_per_weight"],
                           sort=False)
    out = pd.DataFrame(index=methods)
    out.index.name = "method"
    for c in configs:
        out[f"{c} ppl"] = [table.loc[m, ("perplexity", c)] for m in methods]
        out[f"{c} bits/w"] = [table.loc[m, ("avg_bits_per_weight", c)] for m in methods]
    from .methods import get_method

    out.index = [get_method(m).description for m in methods]
    print(out.to_markdown(floatfmt=".3f"))
    if args.csv:
        with atomic_write(args.csv) as tmp:
            df.to_csv(tmp, index=False)


def cmd_stream(args):
    """Layer-by-layer quantization (lqer.streaming) into --out, then streamed perplexity."""
    from .checkpoint import open_checkpoint
    from .config import load_config
    from .data import calibration_batches, load_wikitext, token_windows
    from .streaming import perplexity_streaming, quantize_streaming

    progress = not args.no_progress
    ck = open_checkpoint(args.model)
    tok = ck.tokenizer()
    cfg = load_config(args.config, **_overrides(args, args.method))
    calib = calibration_batches(tok, args.calib_samples, args.calib_seq_len, args.seed)
    try:
        man = quantize_streaming(ck, cfg, calib, args.out, calibration_input=args.calibration_input,
                                 dtype=args.dtype, device=args.device, progress=progress,
                                 log=lambda s: print(s, file=sys.stderr))
    except OSError as e:  # disk full, quota: the message says what was kept and how to resume
        raise UserError(str(e)) from e
    print(f"{args.config} {args.method} ({args.calibration_input}): {len(man['layers'])} layers in {args.out}, "
          f"avg bits/weight {man['avg_bits_per_weight']:.3f}")
    if args.no_ppl:
        return
    windows = token_windows(tok, load_wikitext("test"), args.seq_len, None if args.full else args.windows)
    ppl = perplexity_streaming(ck, windows, args.out, dtype=args.dtype, device=args.device, progress=progress)
    print(f"perplexity (streamed, {windows.shape[0]} x {windows.shape[1]} tokens): {ppl:.3f}")


def _split(text: str, what: str) -> list[str]:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    if not vals:
        raise UserError(f"{what}: expected a comma-separated list, got {text!r}")
    return vals


def check_args(args, configs, methods) -> None:
    """Everything the command line names, before the model is loaded or calibrated."""
    from .config import load_config
    from .methods import get_method
    from .model import resolve_model_path

    for m in methods:
        with user_input("--method" if args.cmd == "eval" else "--methods"):
            get_method(m)
    for c in configs:
        for m in methods:
            with user_input("--config" if args.cmd == "eval" else "--configs"):
                load_config(c, **_overrides(args, m))
    with user_input("--model"):
        resolve_model_path(args.model)
    if args.cmd in ("eval", "table", "stream"):
        from .data import check_data

        with user_input("$MXLAB_DATA"):
            check_data()
    if getattr(args, "csv", None):
        check_output(args.csv, "--csv", "file")
    if args.cmd == "stream":
        check_output(args.out, "--out", "dir")
        if args.device != "cpu":
            import torch

            with user_input("--device"):
                if not str(args.device).startswith("cuda"):
                    raise ValueError(f"must be cpu, cuda or cuda:N, got {args.device!r}")
                if not torch.cuda.is_available():
                    raise ValueError(f"{args.device} was asked for but torch sees no CUDA device")


def build_parser():
    from .methods import table_methods

    p = ArgumentParser(prog="lqer", description="LQER / L2QER / QERA on real causal LMs (mxsim formats)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pe = sub.add_parser("eval", help="quantize with one config + method and report WikiText-2 perplexity")
    pe.add_argument("--config", default="W4A8", help="preset (W4A8, W4A6, W3A8, W2A8, *-BFP, W4A4) or TOML path")
    pe.add_argument("--method", default="l2qer", help="a registered lqer method (lqer.methods)")
    _common(pe)
    pt = sub.add_parser("table", help="perplexity and bits/weight table for several configs and methods")
    pt.add_argument("--configs", default="W4A8,W3A8")
    pt.add_argument("--methods", default=",".join(table_methods()))  # the registry's in_default_table
    pt.add_argument("--csv", default=None, help="also write the raw rows as CSV")
    _common(pt)
    ps = sub.add_parser("stream", help="quantize a model larger than memory one decoder layer at a time "
                                       "(resumable), then streamed perplexity")
    ps.add_argument("--config", default="W4A8", help="preset (W4A8, W4A6, W3A8, W2A8, *-BFP, W4A4) or TOML path")
    ps.add_argument("--method", default="l2qer")
    ps.add_argument("--out", required=True, help="output directory: one safetensors file per layer + manifest.json; "
                                                 "re-running the same command resumes there")
    ps.add_argument("--calibration-input", choices=["fp_prefix", "quantized_prefix"], default="fp_prefix",
                    help="layer l calibrates on the full-precision model's activations (LQER/L2QER/QERA) or on "
                         "those of the model quantized so far (GPTQ-style sequential)")
    ps.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                    help="compute dtype of the layer forwards (auto: the checkpoint's)")
    ps.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where each layer is computed")
    ps.add_argument("--no-ppl", action="store_true", help="quantize only")
    _common(ps)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)

    def body():
        if args.cmd == "eval":
            check_args(args, [args.config], [args.method])
            cmd_eval(args)
        elif args.cmd == "stream":
            check_args(args, [args.config], [args.method])
            cmd_stream(args)
        else:
            args.configs = ",".join(_split(args.configs, "--configs"))
            args.methods = ",".join(_split(args.methods, "--methods"))
            check_args(args, args.configs.split(","), args.methods.split(","))
            cmd_table(args)

    hint = None
    if args.cmd == "stream":
        hint = f"finished layers are kept in {args.out}; run the same command to resume"
    return run_cli(f"lqer {args.cmd}", body, interrupted_hint=hint)


if __name__ == "__main__":
    sys.exit(main())
