"""The LRC comparison table (docs/lrc.md, README): its QuantConfigs, its model runs, its hwmodel
area columns and its CSV (docs/results/lrc_table.csv).

A row is (setting, task, rank fraction, rotation). ``setting`` "W4A4"/"W4A8": MXINT4/32 weights,
MXINT4/32 or MXINT8/32 activations; "-MXFP4" / "-NVFP4" variants swap the 4-bit format (MXFP4_E2M1/32
or NVFP4 weights, and activations at A4; issue 16); LQER-family factors MXINT8/32 blocked along their last
dimension, xA re-quantized like x. ``task``: an lqer method name, or ``lrc<i>`` = method lrc
with ``iterations = i`` (the table's row key, kept in the CSV's ``method`` column). Rank
fractions are mxsim.Rank(f, "of_min_dim").
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

# setting -> (weight format, activation format)
SETTINGS = {
    "W4A4": ("MXINT4/32", "MXINT4/32"),
    "W4A8": ("MXINT4/32", "MXINT8/32"),
    "W4A4-MXFP4": ("MXFP4_E2M1/32", "MXFP4_E2M1/32"),
    "W4A8-MXFP4": ("MXFP4_E2M1/32", "MXINT8/32"),
    "W4A4-NVFP4": ("NVFP4", "NVFP4"),
    "W4A8-NVFP4": ("NVFP4", "MXINT8/32"),
}
TABLE_CSV_COLUMNS = ["setting", "method", "label", "rank", "rotation", "ppl", "bits_per_weight", "quantize_s",
                     "hw_design", "hw_rank", "hw_input_rotation", "area", "unit", "area_ratio_to_fp16", "tech", "shape"]


def _task(task: str) -> tuple[str, dict]:
    """(lqer method, options) of a table task: "lrc5" -> ("lrc", {"iterations": 5})."""
    from lqer.methods import method_names

    t = str(task).lower()
    if t.startswith("lrc") and t[3:].isdigit():
        return "lrc", {"iterations": int(t[3:]), "lowrank_format": "fp16"}
    if t not in method_names():
        raise ValueError(f"unknown table task {task!r}: an lqer method ({', '.join(method_names())}) or lrc<i>")
    return t, {}


def task_method(task: str):
    """The lqer.methods.Method a table task runs ("lrc5" -> lrc's)."""
    from lqer.methods import get_method

    return get_method(_task(task)[0])


def row_config(setting: str, task: str, rank=None, rotation: str = "none"):
    """The QuantConfig of one table row (see the module doc)."""
    from lqer.config import QuantConfig
    from lqer.methods import get_method
    from lqer.options import RotationOptions
    from mxsim.rank import Rank

    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    method, options = _task(task)
    w_format, x_format = SETTINGS[setting]
    common = dict(w_format=w_format, x_format=x_format, a_format="MXINT8/32", b_format="MXINT8/32",
                  factor_axis="last", quantize_lowrank_output=True)
    m = get_method(method)
    if m.full_precision:  # no rotation, no rank: the unquantized model
        return QuantConfig(method=method, **common)
    if issubclass(m.options, RotationOptions):
        options = {**options, "rotation": rotation}
    if m.low_rank:
        if rank is None:
            raise ValueError(f"table task {task!r} needs a rank fraction (e.g. {task}@0.1)")
        return QuantConfig(method=method, rank=Rank(float(rank), "of_min_dim"), options=options, **common)
    return QuantConfig(method=method, options=options, **common)


def parse_tasks(spec: str):
    """"W4A4:fp,rtn,lrc1@0.1;W4A8:..." -> [(setting, task, rank fraction or None)]."""
    out = []
    for part in spec.split(";"):
        setting, _, ms = part.partition(":")
        for m in ms.split(","):
            meth, _, r = m.partition("@")
            out.append((setting.strip(), meth.strip(), float(r) if r else None))
    return out


def run_tasks(model_name: str, tasks, *, rotation="none", windows=8, seq=512, calib=16, device="cpu", log=print):
    """Perplexity and bits per weight of every task on one model (one shared calibration pass,
    statistics from the full-precision model); yields one row dict per task."""
    import copy

    import torch
    from lqer.data import calibration_batches, load_wikitext, token_windows
    from lqer.evaluate import perplexity
    from lqer.model import load_model
    from lqer.quantize import collect_shared_stats, quantize_model

    dev = torch.device(device)
    cfgs = [(s, t, r, row_config(s, t, r, rotation)) for s, t, r in tasks]
    t0 = time.perf_counter()
    model, tok = load_model(model_name, device=dev)
    win = token_windows(tok, load_wikitext("test"), seq, windows)
    batches = calibration_batches(tok, calib, seq, seed=0)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    stats = collect_shared_stats(model, [c for *_, c in cfgs], batches, progress=False)
    log(json.dumps({"event": "calibrated", "load_s": round(t_load, 1), "calibration_s": round(time.perf_counter() - t1, 1),
                    "tokens": int(batches.numel()), "eval_tokens": int(win.numel())}))
    for setting, task, rank, cfg in cfgs:
        q = copy.deepcopy(model)
        t2 = time.perf_counter()
        _, info = quantize_model(q, cfg, stats=stats.for_config(cfg), progress=False)
        t_q = time.perf_counter() - t2
        ppl = perplexity(q, win, progress=False)
        row = {"setting": setting, "method": task, "rank": rank, "rotation": rotation,
               "ppl": round(ppl, 3), "bits_per_weight": round(info["avg_bits_per_weight"], 3),
               "quantize_s": round(t_q, 1)}
        layers = info["layers"].values()
        if any("lrc_losses" in v for v in layers):  # LRC's per-layer loss history (lqer.methods._lrc's metrics)
            row["sum_final_layer_loss"] = sum(v["lrc_losses"][-1][1] for v in layers)
        log(json.dumps(row))
        yield row
        del q


def row_label(row: dict) -> str:
    from lqer.methods import get_method

    cfg = row_config(str(row.get("setting") or "W4A4"), row["method"], row.get("rank"), row.get("rotation") or "none")
    return get_method(cfg.method).table_label(cfg)


def row_design(row: dict, shape: str = "smollm2-135m") -> tuple[str, dict, int | None]:
    """(hwmodel design, params, rank) of one table row (experiments.hardware.method_design)."""
    from lqer.methods import get_method

    from .hardware import _shape_layers, design_rank, method_design

    cfg = row_config(str(row.get("setting") or "W4A4"), row["method"], row.get("rank"), row.get("rotation") or "none")
    design, params = method_design(cfg, shape)
    rank = design_rank(cfg, _shape_layers(shape)) if get_method(cfg.method).low_rank else None
    return design, params, rank


def table_records(rows, shape: str = "smollm2-135m", tech: str = "fpga") -> list[dict]:
    """The table's records: the measured columns of ``rows`` (file order kept) with hwmodel's area
    of each row's design (one time-shared unit sized for the shape's largest linear) and its ratio
    to the FP16 design's."""
    from .hardware import model_area

    fp_tot, _ = model_area(shape, "fp16", {}, tech)
    fp_area, unit = float(fp_tot["area"]), str(fp_tot["unit"])
    memo: dict = {}
    records = []
    for r in rows:
        design, params, hw_rank = row_design(r, shape)
        key = (design, json.dumps(params, sort_keys=True, default=str))
        if key not in memo:
            tot, _ = model_area(shape, design, params, tech)
            memo[key] = float(tot["area"])
        area = memo[key]
        records.append({"setting": r.get("setting"), "method": r["method"], "label": row_label(r),
                        "rank": r.get("rank"), "rotation": r.get("rotation"), "ppl": r["ppl"],
                        "bits_per_weight": r.get("bits_per_weight"), "quantize_s": r.get("quantize_s"),
                        "hw_design": design, "hw_rank": hw_rank,
                        "hw_input_rotation": None if task_method(r["method"]).full_precision
                        else params.get("input_rotation", "none"),
                        "area": area, "unit": unit, "area_ratio_to_fp16": area / fp_area, "tech": tech,
                        "shape": shape})
    return records


def _fmt_area(area: float) -> str:
    return f"{area:.0f}" if float(area).is_integer() else f"{area:.1f}"


def markdown(records) -> str:
    unit = records[0]["unit"] if records else "LUT"
    lines = [f"| setting | method | rank | rotation | ppl | bits/weight | quantize s | area ({unit}) | area / FP16 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        fp = task_method(r["method"]).full_precision
        rk = "" if r["rank"] is None else f"{r['rank']:.0%}"
        bits = "" if r["bits_per_weight"] is None else f"{r['bits_per_weight']:.2f}"
        qs = "" if r["quantize_s"] is None else r["quantize_s"]
        lines.append(f"| {'–' if fp else r['setting']} | {r['label']} | {rk} | {'' if fp else r['rotation']} | "
                     f"{r['ppl']:.2f} | {bits} | {qs} | {_fmt_area(r['area'])} | {r['area_ratio_to_fp16']:.2f} |")
    return "\n".join(lines)


def read_jsonl_rows(files) -> list[dict]:
    """The row lines (JSON objects with "ppl") of ``run_tasks`` logs."""
    rows = []
    for f in files:
        for line in Path(f).read_text().splitlines():
            if line.startswith("{") and '"ppl"' in line:
                rows.append(json.loads(line))
    return rows


def read_csv_rows(path) -> list[dict]:
    """The measured columns of a committed table CSV, typed as ``run_tasks`` writes them."""
    def num(v, cast=float):
        return None if v in ("", None) else cast(v)

    with open(path, newline="") as f:
        return [{"setting": r["setting"], "method": r["method"], "rank": num(r["rank"]), "rotation": r["rotation"],
                 "ppl": float(r["ppl"]), "bits_per_weight": num(r["bits_per_weight"]),
                 "quantize_s": num(r["quantize_s"])} for r in csv.DictReader(f)]


def write_csv(path, records) -> None:
    """The table as CSV, replacing ``path`` atomically (mxsim.files.atomic_write)."""
    from mxsim.files import atomic_write

    with atomic_write(Path(path)) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=TABLE_CSV_COLUMNS)
            w.writeheader()
            for r in records:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in TABLE_CSV_COLUMNS})
