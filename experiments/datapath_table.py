"""Accuracy under the real MX datapath (issue 15): perplexity of a model whose every quantized
GEMM runs on mxsim.matmul with a given accumulator, and which layer overflows first.

Rows: setting x block x accumulator.
* settings: "W4A8-L2QER" (MXINT4 weights, MXINT8 activations, L2QER rank 32 with MXINT8 factors
  blocked along the reduction dimension so that both low-rank GEMMs are MX dot products, x·A
  re-quantized like x) and "W8A8-MXINT8" (plain MXINT8 x MXINT8); blocks of 16 and 32.
* accumulators: float (fake-quantize + float32 matmul, the emulation), exact, fp32 fused with
  lanes = block and lanes = 4, and fixed point of 32/24/20/16/12 total bits, saturate and wrap,
  with each GEMM's fraction bits from lqer.datapath's rule on its partial-sum range calibrated on
  ``calib`` windows of the validation split (F = W - 1 - (floor(log2 max|S|) + 1)).
  A width narrower than one block's integer sum (mxsim.datapath_widths' sum_bits; the low-rank
  GEMMs are MXINT8 x MXINT8) is refused by mxsim.check_accumulator_fits (the issue's bad-input rule,
  shared with hwmodel's buildability): the row says so (status "not representable", the reason
  in ``note``) instead of a perplexity.
* float emulation vs datapath: every row's logits are compared with the float row's of the same
  setting and block on the first ``DIFF_WINDOWS`` windows (max and mean |logit difference|, and
  the fraction of next-token argmaxes that changed), so "fp32 = float" is checked beyond the
  perplexity's printed digits.
Per-layer records (fixed point rows): each GEMM's calibrated range, fraction bits, and the
outputs whose value overflow changed during the evaluation (lqer.datapath.count_overflow).
"""

from __future__ import annotations

import json
import time

SETTINGS = ("W4A8-L2QER", "W8A8-MXINT8")
BLOCKS = (16, 32)
FIXED_TOTALS = (32, 24, 20, 16, 12)
FULL_ACCUMULATORS = ("float", "exact", "fp32", "fp32:4") + tuple(
    f"fixed:{t}:{ov}" for t in FIXED_TOTALS for ov in ("saturate", "wrap"))
# the report's default sub-grid: what separates float emulation, fp32 and where fixed point breaks
SHORT_ACCUMULATORS = ("float", "fp32", "fp32:4", "fixed:24:saturate", "fixed:20:saturate", "fixed:20:wrap")
TABLE_COLUMNS = ["setting", "block", "accumulator", "status", "ppl", "max_logit_diff", "mean_logit_diff",
                 "argmax_changed", "overflow_rate", "first_overflow_layer", "worst_layer", "worst_rate", "note",
                 "seconds"]
LAYER_COLUMNS = ["setting", "block", "accumulator", "layer", "order", "gemm", "layer_accumulator",
                 "max_abs_partial_sum", "frac_bits", "outputs", "overflowed", "overflow_rate"]
DIFF_WINDOWS = 4  # windows whose logits are kept for the comparison with the float row (memory: n x seq x vocab)
NOT_REPRESENTABLE = "not representable"


def row_config(setting: str, block: int):
    from lqer.config import QuantConfig

    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
    i8 = f"MXINT8/{block}"
    if setting == "W4A8-L2QER":
        return QuantConfig(method="l2qer", w_format=f"MXINT4/{block}", x_format=i8, a_format=i8, b_format=i8,
                           rank=32, factor_axis="reduction", quantize_lowrank_output=True, svd="full")
    return QuantConfig(method="plain", w_format=i8, x_format=i8)


def evaluate(model, windows, reference=None, keep: int = DIFF_WINDOWS, batch: int = 1) -> dict:
    """Perplexity of ``model`` on ``windows`` (as lqer.evaluate.perplexity: the summed next-token
    cross-entropy over every window, ``batch`` windows per forward: the GEMMs then see
    batch x seq rows, which is what keeps a GPU busy; the sum is the same sum, the float path's
    kernels may round differently per batch size) and the first ``keep`` windows'
    logits (float32, on the host); with ``reference`` (an earlier call's logits) also the max
    and mean |logit difference| and the fraction of positions whose argmax changed."""
    import math

    import torch
    import torch.nn.functional as F

    dev = next(model.parameters()).device
    nll, n_tok, kept = 0.0, 0, []
    with torch.no_grad():
        for i in range(0, windows.shape[0], batch):
            ids = windows[i:i + batch].to(dev)
            logits = model(input_ids=ids).logits.float()
            nll += float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                         reduction="sum"))
            n_tok += ids.shape[0] * (ids.shape[1] - 1)
            kept.extend(logits[:max(0, keep - i)].cpu().unbind(0))
            del logits
    out = {"ppl": math.exp(nll / n_tok), "logits": torch.stack(kept)}
    if reference is not None:
        d = (out["logits"] - reference).abs()
        out.update(max_logit_diff=float(d.max()), mean_logit_diff=float(d.mean()),
                   argmax_changed=float((out["logits"].argmax(-1) != reference.argmax(-1)).float().mean()))
    return out


def run(model_name="smollm2-135m", settings=SETTINGS, blocks=BLOCKS, accumulators=SHORT_ACCUMULATORS, *,
        windows=2, seq=512, calib=8, range_windows=1, device="cpu", batch=1, log=print):
    """Yield (row, layer_records) per (setting, block, accumulator); one model load, one
    quantization and one partial-sum calibration per (setting, block)."""
    import copy

    import torch
    from lqer.data import calibration_batches, load_wikitext, token_windows
    from lqer.datapath import (calibrate_partial_sums, calibrated_fixed_point, count_overflow, overflow_table,
                               set_accumulator)
    from lqer.model import load_model
    from lqer.quantize import collect_shared_stats, quantize_model
    from mxsim.accumulators import CalibratedFixedPoint, parse_accumulator

    # fixed:TOTAL[:saturate|wrap] is a CalibratedFixedPoint: its fraction bits come from the ranges below;
    # the row's name is the parsed value's spelling (the committed rows' fixed:24:saturate, fp32:4, ...)
    specs = [parse_accumulator(a, what="accumulator", allow_calibrated=True) for a in accumulators]
    cfgs = [(s, b, row_config(s, b)) for s in settings for b in blocks]
    dev = torch.device(device)
    base, tok = load_model(model_name, device=dev)
    win = token_windows(tok, load_wikitext("test"), seq, windows)
    batches = calibration_batches(tok, calib, seq, seed=0)
    stats = collect_shared_stats(base, [c for *_, c in cfgs], batches, progress=False)
    for setting, block, cfg in cfgs:
        model = copy.deepcopy(base)
        t0 = time.perf_counter()
        quantize_model(model, cfg, stats=stats.for_config(cfg), progress=False)
        ranges = calibrate_partial_sums(model, batches[:range_windows])
        log(json.dumps({"event": "quantized", "setting": setting, "block": block,
                        "seconds": round(time.perf_counter() - t0, 1)}))
        ref = None  # the float row's logits (the first row when float is not in the list)
        for spec in specs:
            name = str(spec)
            fixed = spec if isinstance(spec, CalibratedFixedPoint) else None
            acc = None if fixed is not None else spec
            t1 = time.perf_counter()
            row = {"setting": setting, "block": block, "accumulator": name, "status": "ok", "note": ""}
            try:
                per = None
                if fixed is not None:
                    per = calibrated_fixed_point(ranges, fixed.total_bits, fixed.overflow)
                    acc = next(iter(next(iter(per.values())).values()))  # layer-wide; every MX GEMM overridden
                set_accumulator(model, acc, per)
            except ValueError as e:
                row.update(status=NOT_REPRESENTABLE, note=str(e).split(": ", 1)[-1])
                log(json.dumps(row))
                yield row, []
                continue
            with count_overflow(model):
                ev = evaluate(model, win, ref, batch=batch)
            row["ppl"] = round(ev["ppl"], 3)
            if ref is None:
                ref = ev["logits"]
                ref_name = name
            else:
                row.update({k: ev[k] for k in ("max_logit_diff", "mean_logit_diff", "argmax_changed")})
            row["note"] = f"logit differences vs {ref_name}" if name != ref_name and ref_name != "float" else ""
            layers = []
            if fixed is not None:
                tab = overflow_table(model, ranges)
                tab["frac_bits"] = [per[r.layer][r.gemm].frac_bits for r in tab.itertuples()]
                n_all, n_bad = int(tab["outputs"].sum()), int(tab["overflowed"].sum())
                row["overflow_rate"] = n_bad / n_all if n_all else 0.0
                hit = tab[tab["overflowed"] > 0]
                row["first_overflow_layer"] = "" if hit.empty else f"{hit.iloc[0]['layer']}:{hit.iloc[0]['gemm']}"
                if not hit.empty:
                    w = hit.sort_values("overflow_rate", ascending=False).iloc[0]
                    row["worst_layer"], row["worst_rate"] = f"{w['layer']}:{w['gemm']}", float(w["overflow_rate"])
                tab = tab.rename(columns={"accumulator": "layer_accumulator"})
                layers = [{"setting": setting, "block": block, "accumulator": name, **r}
                          for r in tab.to_dict("records")]
            row["seconds"] = round(time.perf_counter() - t1, 1)
            log(json.dumps(row))
            yield row, layers
        set_accumulator(model, "float")
        del model


def read_rows(path) -> list[dict]:
    """The rows of a written datapath_table.csv, empty cells as None (what :func:`run` yields)."""
    import math

    import pandas as pd

    df = pd.read_csv(path)
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]


def _columns(rows):
    cols, accs = [], []
    for r in rows:
        if (r["setting"], r["block"]) not in cols:
            cols.append((r["setting"], r["block"]))
        if r["accumulator"] not in accs:
            accs.append(r["accumulator"])
    order = {a: i for i, a in enumerate(FULL_ACCUMULATORS)}
    accs.sort(key=lambda a: order.get(a, len(order)))
    return cols, accs, {(r["setting"], r["block"], r["accumulator"]): r for r in rows}


def _grid(rows, fmt, corner="accumulator") -> str:
    """accumulator (rows) x setting/block (columns); ``fmt(row)`` gives an ok row's cell."""
    cols, accs, cell = _columns(rows)
    lines = [f"| {corner} | " + " | ".join(f"{s} b{b}" for s, b in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for a in accs:
        vals = []
        for s, b in cols:
            r = cell.get((s, b, a))
            vals.append("" if r is None else fmt(r) if r["status"] == "ok" else str(r["status"]))
        lines.append(f"| {a} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def markdown(rows, corner: str = "accumulator") -> str:
    """Perplexity per accumulator (rows) x setting/block (columns), with the fraction of outputs
    that overflow changed ("ovf"); a width that cannot be built reads "not representable"."""
    def ppl(r):
        ov = r.get("overflow_rate")
        return f"{r['ppl']:.3f}" + (f" (ovf {ov:.1e})" if isinstance(ov, float) and ov > 0 else "")

    return _grid(rows, ppl, corner)


def diff_markdown(rows) -> str:
    """Per accumulator and setting/block: max |logit - float row's logit| and the share of
    positions whose argmax changed ("–" for the float row itself)."""
    def diff(r):
        if r.get("max_logit_diff") is None:
            return "–"
        return f"{r['max_logit_diff']:.2g} / {100 * r['argmax_changed']:.1f}%"

    return _grid(rows, diff, corner="accumulator: vs float")


def overflow_markdown(rows) -> str:
    """The fixed-point rows that overflowed: rate, the first layer (in model order) and the
    worst layer with its rate."""
    lines = ["| setting | block | accumulator | overflowed outputs | first layer | worst layer (rate) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok" or not r.get("first_overflow_layer"):
            continue
        short = lambda name: str(name).removeprefix("model.")  # noqa: E731
        lines.append(f"| {r['setting']} | {r['block']} | {r['accumulator']} | {r['overflow_rate']:.1e} | "
                     f"{short(r['first_overflow_layer'])} | {short(r['worst_layer'])} ({r['worst_rate']:.1e}) |")
    return "\n".join(lines)


def write(out_dir, rows, layers, meta, extra_columns=()) -> dict:
    """docs/results-style files: datapath_table.csv, datapath_layers.csv, datapath_table.meta.json
    (atomic, mxsim.files.atomic_write)."""
    from pathlib import Path

    import pandas as pd
    from mxsim.files import atomic_write

    out = Path(out_dir)
    paths = {"table": out / "datapath_table.csv", "layers": out / "datapath_layers.csv",
             "meta": out / "datapath_table.meta.json"}
    with atomic_write(paths["table"]) as tmp:
        pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS + list(extra_columns)).to_csv(tmp, index=False)
    with atomic_write(paths["layers"]) as tmp:
        pd.DataFrame(layers).reindex(columns=LAYER_COLUMNS + list(extra_columns)).to_csv(tmp, index=False)
    with atomic_write(paths["meta"]) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1) + "\n")
    return paths


def combine(run_dirs, out_dir) -> dict:
    """One table from several runs' folders (each written by :func:`write`, e.g. processes that
    shared a GPU, one accumulator group each): rows in the order given, the first row of each
    (setting, block, accumulator) kept (every process measures its own float reference row;
    with the same windows and configuration its perplexity is the same, which is checked), a
    ``run`` column naming the folder; the meta's ``runs`` holds each run's meta with every row's
    seconds (repeated rows too: they are how a warm time is read). A folder written by an earlier
    ``combine`` may be one of the runs: its rows keep their run names and its runs are carried."""
    from pathlib import Path

    import pandas as pd

    from mxsim.errors import UserError

    dirs = [Path(d) for d in run_dirs]
    for d in dirs:  # every folder checked before any is read
        if not (d / "datapath_table.csv").is_file():
            raise UserError(f"--combine: {d} has no datapath_table.csv")
    rows, layers, runs, seen = [], [], [], {}
    for d in dirs:
        meta = json.loads((d / "datapath_table.meta.json").read_text())
        table = read_rows(d / "datapath_table.csv")
        run_layers = pd.read_csv(d / "datapath_layers.csv")
        if "combined_from" in meta:  # an earlier combination: its runs and row names carry over
            runs.extend(meta["runs"])
        else:
            meta["run"] = d.name
            meta["row_seconds"] = [[r["accumulator"], r["seconds"]] for r in table]
            runs.append(meta)
        for r in table:
            key = (r["setting"], r["block"], r["accumulator"])
            if key in seen:
                if seen[key] != r["ppl"] and r["status"] == "ok":
                    raise UserError(f"--combine: {key} has perplexity {seen[key]} in one run and {r['ppl']} in {d}")
                continue
            seen[key] = r["ppl"]
            run = r.get("run") or d.name
            rows.append({**r, "run": run})
            lay = run_layers[(run_layers.setting == r["setting"]) & (run_layers.block == r["block"])
                             & (run_layers.accumulator == r["accumulator"])]
            if "run" in lay.columns:
                lay = lay[lay.run == run]
            layers.extend({**x, "run": run} for x in lay.to_dict("records"))
    meta = {"combined_from": [m["run"] for m in runs], "runs": runs,
            "complete": all(m.get("complete") for m in runs)}
    return write(out_dir, rows, layers, meta, extra_columns=["run"])


def main(argv=None) -> int:
    import argparse
    import sys

    from mxsim.errors import ArgumentParser, UserError, run_cli, user_input
    from mxsim.files import check_output

    p = ArgumentParser(prog="python -m experiments.datapath_table", description=__doc__.split("\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--blocks", default=",".join(map(str, BLOCKS)))
    p.add_argument("--accumulators", default=None, help=f"comma list (default: the short sub-grid "
                   f"{','.join(SHORT_ACCUMULATORS)}; --full: every accumulator)")
    p.add_argument("--full", action="store_true", help="the full accumulator list (fixed 32..12, saturate and wrap)")
    p.add_argument("--windows", type=int, default=2, help="WikiText-2 test windows (0: the whole split)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--calib", type=int, default=8, help="validation windows for L2QER's statistics")
    p.add_argument("--range-windows", type=int, default=1, help="of those, windows for the partial-sum ranges")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1,
                   help="test windows per forward (memory: batch x seq x vocab float32 logits; 16 on a GPU)")
    p.add_argument("--out", default="docs/results", help="folder for the CSVs and the meta JSON")
    p.add_argument("--tables", metavar="DIR", default=None,
                   help="only print the README's three tables (perplexity, logit differences vs float, first "
                        "overflowing layer) from DIR/datapath_table.csv, written earlier; runs nothing")
    p.add_argument("--combine", metavar="DIR", nargs="+", default=None,
                   help="only join earlier runs' folders (e.g. parallel processes, one accumulator group each) into "
                        "one table in --out; runs nothing")
    args = p.parse_args(argv)

    def tables():
        from pathlib import Path

        path = Path(args.tables) / "datapath_table.csv"
        if not path.is_file():
            raise UserError(f"--tables: {path} does not exist (write it with --out {args.tables})")
        rows = read_rows(path)
        print(markdown(rows) + "\n\n" + diff_markdown(rows) + "\n\n" + overflow_markdown(rows))

    def body():
        if args.tables is not None:
            return tables()
        if args.combine is not None:
            check_output(args.out, "--out", "dir")
            paths = combine(args.combine, args.out)
            print(f"# wrote {', '.join(str(v) for v in paths.values())}", file=sys.stderr)
            return None
        with user_input("--settings"):
            settings = [s.strip() for s in args.settings.split(",") if s.strip()]
            for s in settings:
                if s not in SETTINGS:
                    raise ValueError(f"unknown setting {s!r} (allowed: {', '.join(SETTINGS)})")
        with user_input("--blocks"):
            blocks = [int(b) for b in args.blocks.split(",")]
            for b in blocks:
                row_config(settings[0], b)
        accs = (args.accumulators.split(",") if args.accumulators else
                list(FULL_ACCUMULATORS if args.full else SHORT_ACCUMULATORS))
        with user_input("--accumulators"):
            from mxsim.accumulators import parse_accumulator

            accs = [parse_accumulator(a, what="accumulator", allow_calibrated=True) for a in accs]
        for name, v, lo in (("--windows", args.windows, 0), ("--seq-len", args.seq_len, 2), ("--calib", args.calib, 1),
                            ("--range-windows", args.range_windows, 1), ("--batch", args.batch, 1)):
            if v < lo:
                raise UserError(f"{name} must be >= {lo}, got {v}")
        check_output(args.out, "--out", "dir")
        t0 = time.perf_counter()
        rows, layers = [], []
        from experiments.provenance import commit, machine_info

        meta = {"command": "python -m experiments.datapath_table " + " ".join(argv if argv is not None else sys.argv[1:]),
                "commit": commit(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine_info": machine_info(args.device),
                "model": args.model, "windows": args.windows or "full", "seq_len": args.seq_len, "calib": args.calib,
                "range_windows": args.range_windows, "batch": args.batch, "device": args.device,
                "fraction_bit_rule": "F = W - 1 - (floor(log2 max|partial sum|) + 1), per layer and GEMM, "
                                     "calibrated on range_windows validation windows",
                "overflow_count": "outputs whose value differs from a 64-bit accumulator with the same F"}
        for r, ls in run(args.model, settings, blocks, accs, windows=args.windows or None, seq=args.seq_len,
                         calib=args.calib, range_windows=args.range_windows, device=args.device, batch=args.batch,
                         log=lambda m: print(m, file=sys.stderr, flush=True)):
            rows.append(r)
            layers.extend(ls)
            # rewritten after every row: an interrupted run keeps what it measured
            meta.update(seconds=round(time.perf_counter() - t0, 1), rows=len(rows))
            paths = write(args.out, rows, layers, meta)
        meta["complete"] = True
        paths = write(args.out, rows, layers, meta)
        print(markdown(rows))
        print(f"# wrote {', '.join(str(v) for v in paths.values())}", file=sys.stderr)

    return run_cli("experiments.datapath_table", body)


if __name__ == "__main__":
    raise SystemExit(main())
