"""LRC benchmarks.

  python benchmarks/bench_lrc.py layer [--d 4096] [--tokens 8192] [--rank 0.1] [--device cpu|cuda] [--threads 2]
      LRC(1) of one d x d layer (random weights, synthetic correlated activations with outlier
      channels), W4A4 MXINT4/32: time of the statistics and of LRC(1), peak RSS; vs targets.
  python benchmarks/bench_lrc.py model --tasks W4A4:fp,rtn,gptq,... [--windows 8 --seq 512 --calib 16]
      SmolLM2 perplexity and bits per weight for the listed (setting:method@rank) tasks; JSON lines.
  python benchmarks/bench_lrc.py table results.jsonl [--csv table.csv] [--tech fpga] [--shape smollm2-135m]
      markdown table (+ CSV) with hwmodel's area of each row's design and its ratio to FP16
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import mxsim  # noqa: E402

TARGET_LAYER_S = 60.0
TARGET_LAYER_GB = 2.0
TARGET_MODEL_S = 600.0


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cmd_layer(a):
    from lqer.covariance import CovarianceObserver
    from lqer.lrc import lrc

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    fmt = mxsim.MXINT4
    g = torch.Generator().manual_seed(0)
    d, n = a.d, a.tokens
    rss0 = _rss_gb()
    t0 = time.perf_counter()
    obs = CovarianceObserver(fmt, device=dev)
    # synthetic activations: low-rank correlated part + noise, a few outlier channels
    mix = torch.randn(64, d, generator=g) / 8
    scale = torch.ones(d)
    scale[torch.randperm(d, generator=g)[: d // 100]] = 20.0
    for s in range(0, n, 1024):
        m = min(1024, n - s)
        x = (torch.randn(m, 64, generator=g) @ mix + torch.randn(m, d, generator=g)) * scale
        obs.update(x.to(dev))
    st = obs.result()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_stats = time.perf_counter() - t0
    W = (torch.randn(d, d, generator=g) / d**0.5).to(dev)
    t1 = time.perf_counter()
    res = lrc(W, st, w_format=fmt, a_format=fmt, rank=a.rank, iterations=1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_lrc = time.perf_counter() - t1
    peak = _rss_gb()
    out = {"d": d, "tokens": n, "rank": res.rank, "device": str(dev), "threads": a.threads,
           "stats_s": round(t_stats, 2), "lrc1_s": round(t_lrc, 2), "peak_rss_gb": round(peak, 3),
           "rss_before_gb": round(rss0, 3), "losses": res.losses,
           "gpu_peak_gb": round(torch.cuda.max_memory_allocated() / 1024**3, 3) if dev.type == "cuda" else None}
    print(json.dumps(out))
    print(f"LRC(1) {d}x{d}, {n} tokens, rank {res.rank} on {dev} ({a.threads} threads): "
          f"{t_lrc:.1f} s (target <= {TARGET_LAYER_S:.0f} s on the 2-core CPU), statistics {t_stats:.1f} s; "
          f"peak RSS {peak:.2f} GB (target <= {TARGET_LAYER_GB} GB)")


def _configs(setting: str, method: str, rank, rotation: str):
    from lqer.config import QuantConfig

    x = {"W4A4": "MXINT4/32", "W4A8": "MXINT8/32"}[setting]
    common = dict(w_format="MXINT4/32", x_format=x, a_format="MXINT8/32", b_format="MXINT8/32",
                  factor_axis="last", quantize_lowrank_output=True)
    extra = {"rotation": rotation}
    if method in ("fp",):
        return QuantConfig(method="fp", **common)
    if method in ("rtn", "gptq"):
        return QuantConfig(method=method, rank=1, extra=extra, **common)
    if method in ("lqer", "l2qer", "qera"):
        return QuantConfig(method=f"{method}_frac", rank=rank, extra=extra, **common)
    if method.startswith("lrc"):
        it = int(method[3:] or 1)
        return QuantConfig(method="lrc", rank=rank, extra={**extra, "iterations": it, "lowrank_format": "fp16"},
                           **common)
    raise ValueError(f"unknown method {method}")


def _parse_tasks(spec: str):
    """"W4A4:fp,rtn,lrc1@0.1;W4A8:..." -> [(setting, method, rank)]."""
    out = []
    for part in spec.split(";"):
        setting, _, ms = part.partition(":")
        for m in ms.split(","):
            meth, _, r = m.partition("@")
            out.append((setting.strip(), meth.strip(), float(r) if r else None))
    return out


def cmd_model(a):
    from lqer.calibrate import AbsMeanMax, MultiObserver, SecondMoment, run_calibration
    from lqer.covariance import CovarianceObserver
    from lqer.data import calibration_batches, load_wikitext, token_windows
    from lqer.evaluate import perplexity
    from lqer.model import load_model
    from lqer.quantize import quantize_model
    from lqer.rotation import rotation_matrix

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    tasks = _parse_tasks(a.tasks)
    t0 = time.perf_counter()
    model, tok = load_model(a.model, device=dev)
    windows = token_windows(tok, load_wikitext("test"), a.seq, a.windows)
    calib = calibration_batches(tok, a.calib, a.seq, seed=0)
    settings = sorted({s for s, _, _ in tasks})
    t_load = time.perf_counter() - t0

    def factory(name, module):
        R = rotation_matrix(module.in_features, a.rotation, 0)
        obs = {"abs": AbsMeanMax(transform=R)}
        for s in settings:
            xf = _configs(s, "rtn", None, a.rotation).x_format
            obs[f"cov_{s}"] = CovarianceObserver(xf, transform=R, device=dev)
        return MultiObserver(**obs)

    t1 = time.perf_counter()
    stats = run_calibration(model, calib, factory, progress=False)
    t_cal = time.perf_counter() - t1
    print(json.dumps({"event": "calibrated", "load_s": round(t_load, 1), "calibration_s": round(t_cal, 1),
                      "tokens": int(calib.numel()), "eval_tokens": int(windows.numel())}), flush=True)
    for setting, method, rank in tasks:
        cfg = _configs(setting, method, rank, a.rotation)
        if method == "l2qer":
            st = {k: v["abs"] for k, v in stats.items()}
        elif method == "qera":
            st = {}
            for k, v in stats.items():
                c = v[f"cov_{setting}"]
                sm = SecondMoment(transform=c.transform)  # Σx of the (rotated) input is QERA's statistic
                sm.xtx, sm.n = c.sx, c.n
                st[k] = sm
        elif method in ("gptq",) or method.startswith("lrc"):
            st = {k: v[f"cov_{setting}"] for k, v in stats.items()}
        else:
            st = None
        q = copy.deepcopy(model)
        t2 = time.perf_counter()
        if method != "fp" and st is None:
            st = {}
        _, info = quantize_model(q, cfg, stats=st if st else None, progress=False)
        t_q = time.perf_counter() - t2
        ppl = perplexity(q, windows, progress=False)
        row = {"setting": setting, "method": method, "rank": rank, "rotation": a.rotation,
               "ppl": round(ppl, 3), "bits_per_weight": round(info["avg_bits_per_weight"], 3),
               "quantize_s": round(t_q, 1)}
        if method.startswith("lrc"):
            tot = sum(v["lrc_losses"][-1][1] for v in info["layers"].values())
            row["sum_final_layer_loss"] = tot
        print(json.dumps(row), flush=True)
        del q


METHOD_LABELS = {"fp": "FP", "rtn": "RTN", "gptq": "GPTQ (Σx)", "lqer": "LQER", "l2qer": "L2QER",
                 "qera": "QERA-exact", "lrc1": "LRC(1)", "lrc5": "LRC(5)"}
TABLE_CSV_COLUMNS = ["setting", "method", "label", "rank", "rotation", "ppl", "bits_per_weight", "quantize_s",
                     "hw_design", "hw_rank", "hw_input_rotation", "area", "unit", "area_ratio_to_fp16", "tech", "shape"]


def _method_label(method: str) -> str:
    m = str(method).lower()
    if m in METHOD_LABELS:
        return METHOD_LABELS[m]
    if m.startswith("lrc") and m[3:].isdigit():
        return f"LRC({int(m[3:])})"
    return str(method)


def _fmt_area(area: float) -> str:
    return f"{area:.0f}" if float(area).is_integer() else f"{area:.1f}"


def _write_csv_atomic(path, records: list[dict], columns: list[str]) -> None:
    """Write ``records`` as CSV to ``path`` atomically (mxsim.files.atomic_write)."""
    import csv

    from mxsim.files import atomic_write

    with atomic_write(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for r in records:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})


def cmd_table(a):
    """Markdown table of ``model`` rows (file order kept) with hwmodel's area of each row's design
    (experiments.backend.lrc_row_design: one time-shared unit sized for the shape's largest linear)
    and its ratio to the FP16 design's area; ``--csv PATH`` also writes the table as CSV (atomically)."""
    from experiments.backend import lrc_row_design, model_area

    rows = []
    for f in a.files:
        for line in Path(f).read_text().splitlines():
            if line.startswith("{") and '"ppl"' in line:
                rows.append(json.loads(line))
    fp_tot, _ = model_area(a.shape, "fp16", {}, a.tech)
    fp_area, unit = float(fp_tot["area"]), str(fp_tot["unit"])
    memo: dict = {}
    records = []
    for r in rows:
        design, params, hw_rank = lrc_row_design(r, a.shape)
        key = (design, json.dumps(params, sort_keys=True))
        if key not in memo:
            tot, _ = model_area(a.shape, design, params, a.tech)
            memo[key] = float(tot["area"])
        area = memo[key]
        records.append({"setting": r.get("setting"), "method": r["method"], "label": _method_label(r["method"]),
                        "rank": r.get("rank"), "rotation": r.get("rotation"), "ppl": r["ppl"],
                        "bits_per_weight": r.get("bits_per_weight"), "quantize_s": r.get("quantize_s"),
                        "hw_design": design, "hw_rank": hw_rank,
                        "hw_input_rotation": params.get("input_rotation", "none") if design != "fp16" else None,
                        "area": area, "unit": unit, "area_ratio_to_fp16": area / fp_area, "tech": a.tech,
                        "shape": a.shape})
    print(f"| setting | method | rank | rotation | ppl | bits/weight | quantize s | area ({unit}) | area / FP16 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in records:
        fp = str(r["method"]).lower() == "fp"
        rk = "" if r["rank"] is None else f"{r['rank']:.0%}"
        bits = "" if r["bits_per_weight"] is None else f"{r['bits_per_weight']:.2f}"
        qs = "" if r["quantize_s"] is None else r["quantize_s"]
        print(f"| {'–' if fp else r['setting']} | {r['label']} | {rk} | {'' if fp else r['rotation']} | "
              f"{r['ppl']:.2f} | {bits} | {qs} | {_fmt_area(r['area'])} | {r['area_ratio_to_fp16']:.2f} |")
    if a.csv:
        _write_csv_atomic(a.csv, records, TABLE_CSV_COLUMNS)
    return records


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("layer")
    pl.add_argument("--d", type=int, default=4096)
    pl.add_argument("--tokens", type=int, default=8192)
    pl.add_argument("--rank", type=float, default=0.1)
    pl.add_argument("--device", default="cpu")
    pl.add_argument("--threads", type=int, default=2)
    pm = sub.add_parser("model")
    pm.add_argument("--model", default="smollm2-135m")
    pm.add_argument("--tasks", required=True)
    pm.add_argument("--windows", type=int, default=8)
    pm.add_argument("--seq", type=int, default=512)
    pm.add_argument("--calib", type=int, default=16)
    pm.add_argument("--rotation", default="none")
    pm.add_argument("--device", default="cpu")
    pm.add_argument("--threads", type=int, default=2)
    pt = sub.add_parser("table", help="markdown table of model rows with hwmodel area columns")
    pt.add_argument("files", nargs="+")
    pt.add_argument("--csv", default=None, metavar="PATH", help="also write the table as CSV (atomically)")
    pt.add_argument("--tech", default="fpga", help="hwmodel unit-cost table (fpga, asic, ... or a CSV path)")
    pt.add_argument("--shape", default="smollm2-135m", help="hwmodel model shape the area is computed for")
    a = p.parse_args(argv)
    {"layer": cmd_layer, "model": cmd_model, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
