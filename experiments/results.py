"""Every number the README and the docs publish comes from a committed CSV + meta JSON in
docs/results/, written by ``mxlab reproduce NAME`` (``mxlab reproduce --list`` lists them).

Each ``Result`` names its files, the README/doc table it feeds, the command that measures it
and what it overrides with respect to the presets. Without ``--rerun``, ``quick`` results are
regenerated in seconds from the committed measurements: the LRC table's hwmodel area columns,
and for the GPU tables the meta JSON's resolved configs and hardware designs (their
perplexities stay as measured). ``--rerun`` re-measures (minutes to hours; CUDA for the GPU
tables). The meta JSON holds the resolved QuantConfig of every row, the commit, the machine
and the hardware design. The hwmodel tables (``results_hw``) are quick too (the synthesis cache
is committed); the benchmarks (``results_bench``) only re-measure.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mxsim.files import write_json

from .results_bench import bench_command, benchmark
from .results_hw import hw_accumulators, hw_composite, hw_paper
from .results_validation import validation

RESULTS_DIR = Path(__file__).resolve().parent.parent / "docs" / "results"

# The LRC table's runs (docs/lrc.md "Command"): (rotation, tasks) per worker.
LRC_TABLE_TASKS = (
    ("none", "W4A4:fp,rtn,gptq,lqer@0.1,l2qer@0.1,qera@0.1,lrc1@0.1,lrc5@0.1,lqer@0.3,l2qer@0.3,qera@0.3,lrc1@0.3,"
             "lrc5@0.3"),
    ("auto", "W4A4:rtn,gptq,lqer@0.1,l2qer@0.1,qera@0.1,lrc1@0.1,lqer@0.3,l2qer@0.3,qera@0.3"),
    ("none", "W4A8:rtn,gptq,lqer@0.1,l2qer@0.1,qera@0.1,lrc1@0.1,lrc5@0.1,lqer@0.3,l2qer@0.3,qera@0.3,lrc1@0.3,"
             "lrc5@0.3"),
)


@dataclass(frozen=True)
class Result:
    name: str
    files: tuple                 # file names under docs/results/
    feeds: str                   # the README / doc table it backs
    command: str                 # how it is measured
    overrides: str               # settings it changes with respect to the presets
    quick: bool                  # regenerated from committed measurements in seconds
    regenerate: Callable         # (out_dir: Path, rerun: bool) -> None


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    import torch

    return (f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, python {platform.python_version()}")


# ----------------------------------------------------------------------------- the LRC table
def _lrc_table(out: Path, rerun: bool) -> None:
    from . import lrc_table
    from .hardware import jsonable_params, method_design

    csv_path = out / "lrc_table.csv"
    old_meta = {}
    if (RESULTS_DIR / "lrc_table.meta.json").is_file():  # the committed measurement's provenance
        old_meta = json.loads((RESULTS_DIR / "lrc_table.meta.json").read_text())
    if rerun:
        rows = []
        for rotation, tasks in LRC_TABLE_TASKS:
            rows += list(lrc_table.run_tasks("smollm2-135m", lrc_table.parse_tasks(tasks), rotation=rotation))
        measured_on, measured_commit = machine(), _git_commit()
    else:
        rows = lrc_table.read_csv_rows(RESULTS_DIR / "lrc_table.csv")
        measured_on = old_meta.get("measured_on", "GPU box CPUs, each worker pinned to 2 cores (taskset), torch 2.11, "
                                                  "transformers 5.17 (docs/lrc.md)")
        measured_commit = old_meta.get("measured_commit", "d70a6de and earlier (docs/lrc.md)")
    records = lrc_table.table_records(rows)
    lrc_table.write_csv(csv_path, records)
    meta_rows = []
    for r in rows:
        cfg = lrc_table.row_config(r["setting"] or "W4A4", r["method"], r["rank"], r["rotation"] or "none")
        design, params = method_design(cfg, "smollm2-135m")
        meta_rows.append({"setting": r["setting"], "task": r["method"], "rank": r["rank"], "rotation": r["rotation"],
                          "config": cfg.to_dict(), "hw_design": design, "hw_params": jsonable_params(params)})
    write_json(out / "lrc_table.meta.json", {
        "result": "lrc_table", "command": "mxlab reproduce lrc_table" + (" --rerun" if rerun else ""),
        "measured_by": "experiments.lrc_table.run_tasks (benchmarks/bench_lrc.py model), tasks "
                       + "; ".join(f"rotation {r}: {t}" for r, t in LRC_TABLE_TASKS),
        "measured_on": measured_on, "measured_commit": measured_commit,
        "evaluation": "WikiText-2 test, first 8 windows x 512 tokens; calibration 16 x 512 tokens of valid (seed 0)",
        "areas_from": "hwmodel fpga table, shape smollm2-135m, one 16-lane unit sized for the largest linear",
        "areas_commit": _git_commit(), "areas_on": machine(), "rows": meta_rows})


# ----------------------------------------------------------------------------- the W4 formats table
# docs/formats.md (issue 16): NVFP4 vs MXFP4 vs MXINT4 at W4A4 and W4A8 (lrc_table.SETTINGS keys),
# each with plain, L2QER, QERA and LRC(1) at 10% rank; CSV row order: FP, then these in order.
FORMATS_W4_SETTINGS = ("W4A4", "W4A4-MXFP4", "W4A4-NVFP4", "W4A8", "W4A8-MXFP4", "W4A8-NVFP4")
FORMATS_W4_METHODS = (("plain", None), ("l2qer", 0.1), ("qera", 0.1), ("lrc1", 0.1))
FORMATS_W4_COLUMNS = ["setting", "w_format", "x_format", "method", "rank", "ppl", "bits_per_weight", "quantize_s",
                      "device", "hw_design", "area_lut", "area_ratio_to_fp16"]


def formats_w4_tasks() -> list[tuple]:
    """[(lrc_table setting, task, rank)] of the table, in CSV order."""
    return [("W4A4", "fp", None)] + [(s, m, r) for s in FORMATS_W4_SETTINGS for m, r in FORMATS_W4_METHODS]


def formats_w4_spec() -> str:
    """The table's tasks as benchmarks/bench_lrc.py model --tasks takes them."""
    return ";".join(f"{s}:{t}" + (f"@{r}" if r else "") for s, t, r in formats_w4_tasks())


def _formats_w4_area(cfg):
    """(hw_design, area, ratio to FP16) of a row that is one datapath (FP, plain), else blanks: the
    LQER family and LRC add a second datapath (a low-rank one), and units mixing block sizes have
    no design."""
    from lqer.methods import get_method

    from .hardware import method_design, model_area

    if get_method(cfg.method).low_rank:
        return "", "", ""
    try:
        design, params = method_design(cfg, "smollm2-135m")
        area = float(model_area("smollm2-135m", design, params, "fpga")[0]["area"])
    except ValueError:  # e.g. NVFP4/16 weights with MXINT8/32 activations: blocks must match
        return "", "", ""
    fp16 = float(model_area("smollm2-135m", "fp16", {}, "fpga")[0]["area"])
    return design, area, round(area / fp16, 4)


def _formats_w4(out: Path, rerun: bool) -> None:
    _formats_w4_from(RESULTS_DIR / "formats_w4.csv", out, rerun)


def _formats_w4_from(src: Path, out: Path, rerun: bool = False) -> None:
    """Without --rerun: the committed measurements (ppl, bits, quantize time, device) with their
    area columns and resolved configs recomputed; rows not measured yet stay out (the meta's
    "missing" says why). With --rerun: every row re-measured on this machine's CPU
    (experiments.lrc_table.run_tasks, one shared calibration; hours on 2 cores)."""
    import csv

    from mxsim.files import atomic_write

    from . import lrc_table
    from .hardware import jsonable_params, method_design

    def formats(setting, task):
        return ("fp32", "fp32") if lrc_table.task_method(task).full_precision else lrc_table.SETTINGS[setting]

    tasks = formats_w4_tasks()
    meta = json.loads((src.parent / "formats_w4.meta.json").read_text())
    if rerun:
        runs = lrc_table.run_tasks("smollm2-135m", lrc_table.parse_tasks(formats_w4_spec()))
        measured = {(r["setting"], r["method"]): dict(r, device="cpu") for r in runs}
        meta = {**meta, "machine": machine(), "commit": _git_commit(), "missing": "none"}
    else:
        with open(src, newline="") as f:
            keys = {(s[:4], *formats(s, t), t): (s, t) for s, t, _ in tasks}
            measured = {keys[(r["setting"], r["w_format"], r["x_format"], r["method"])]: r for r in csv.DictReader(f)}
    rows, meta_rows = [], []
    for setting, task, rank in tasks:
        m = measured.get((setting, task))
        if m is None:
            continue
        cfg = lrc_table.row_config(setting, task, rank)
        design, area, ratio = _formats_w4_area(cfg)
        w, x = formats(setting, task)
        rows.append({"setting": setting[:4], "w_format": w, "x_format": x, "method": task,
                     "rank": "" if rank is None else rank, "ppl": m["ppl"], "bits_per_weight": m["bits_per_weight"],
                     "quantize_s": m["quantize_s"], "device": m["device"], "hw_design": design, "area_lut": area,
                     "area_ratio_to_fp16": ratio})
        params = method_design(cfg, "smollm2-135m")[1] if design else {}
        meta_rows.append({"setting": setting, "task": task, "rank": rank, "device": m["device"],
                          "config": cfg.to_dict(), "hw_design": design, "hw_params": jsonable_params(params)})
    with atomic_write(out / "formats_w4.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=FORMATS_W4_COLUMNS, lineterminator="\n")
            wr.writeheader()
            wr.writerows(rows)
    write_json(out / "formats_w4.meta.json", {**meta, "result": "formats_w4", "rows": meta_rows})


def add_formats_w4_rows(jsonl_files, device: str, out: Path = RESULTS_DIR) -> list[dict]:
    """Put the table rows measured by ``benchmarks/bench_lrc.py model`` (its JSON lines, e.g. the
    LRC rows run on another machine) into formats_w4.csv with their ``device`` (a row already
    there is replaced), then regenerate the CSV and meta; returns the rows that are not table
    rows (left out). The meta's provenance text (source, machine, missing) is the caller's."""
    import csv

    from . import lrc_table

    tasks = {(s, t): r for s, t, r in formats_w4_tasks()}
    with open(out / "formats_w4.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    left_out = []
    for r in lrc_table.read_jsonl_rows(jsonl_files):
        if (r["setting"], r["method"]) not in tasks or r.get("rotation", "none") != "none" \
                or r.get("rank") != tasks[(r["setting"], r["method"])]:
            left_out.append(r)
            continue
        fp = lrc_table.task_method(r["method"]).full_precision
        w, x = ("fp32", "fp32") if fp else lrc_table.SETTINGS[r["setting"]]
        new = {"setting": r["setting"][:4], "w_format": w, "x_format": x, "method": r["method"],
               "ppl": r["ppl"], "bits_per_weight": r["bits_per_weight"], "quantize_s": r["quantize_s"],
               "device": device}
        key = lambda q: (q["setting"], q["w_format"], q["x_format"], q["method"])  # noqa: E731
        rows = [q for q in rows if key(q) != key(new)] + [new]
    from mxsim.files import atomic_write

    with atomic_write(out / "formats_w4.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=FORMATS_W4_COLUMNS, lineterminator="\n", extrasaction="ignore",
                                restval="")
            wr.writeheader()
            wr.writerows(rows)
    _formats_w4_from(out / "formats_w4.csv", out)
    return left_out


# ----------------------------------------------------------------------------- mxlab tables
def _copy(src: Path, dst: Path) -> None:
    from mxsim.files import atomic_write

    with atomic_write(dst) as tmp:
        shutil.copyfile(src, tmp)


def _table_configs_meta(presets, methods) -> list[dict]:
    from .configs import make_config
    from .hardware import jsonable_params, method_design

    rows = []
    for p in presets:
        for m in methods:
            cfg = make_config(p, m)
            design, params = method_design(cfg, "smollm2-135m")
            rows.append({"preset": p, "method": m, "config": cfg.to_dict(), "hw_design": design,
                         "hw_params": jsonable_params(params)})
    return rows


def _gpu_fullsplit(preset: str):
    """Without --rerun: the committed measurement's meta gets the resolved configs and hardware
    designs (the CSV is left as measured); with --rerun: re-measured on a CUDA GPU (~250 s)."""
    def regen(out: Path, rerun: bool) -> None:
        from lqer.methods import table_methods

        name = f"gpu_fullsplit_{preset}"
        if rerun:
            from .cli import main

            with tempfile.TemporaryDirectory() as d:
                rc = main(["table", "--configs", preset, "--full", "--device", "cuda", "--out", f"{d}/t",
                           "--no-progress"])
                if rc:
                    raise RuntimeError(f"mxlab table exited {rc}")
                _copy(Path(d) / "t" / "table.csv", out / f"{name}.csv")
                meta = json.loads((Path(d) / "t" / "meta.json").read_text())
            meta["machine"] = machine()
        else:
            meta = json.loads((RESULTS_DIR / f"{name}.meta.json").read_text())
            if Path(out) != RESULTS_DIR:
                _copy(RESULTS_DIR / f"{name}.csv", out / f"{name}.csv")
        meta.update(result=name, configs=_table_configs_meta([preset], table_methods()),
                    overrides="none: the preset as written (full SVD); calibration 32 x 2048 tokens of valid")
        write_json(out / f"{name}.meta.json", meta)

    return regen


def _cpu_report(out: Path, rerun: bool) -> None:
    from lqer.methods import table_methods

    from .cli import main

    if not rerun:
        raise RuntimeError("needs --rerun (the main job's default report: ~5 min on an idle 2-core CPU)")
    load_before = os.getloadavg()  # the step times mean little without how busy the machine was
    with tempfile.TemporaryDirectory() as d:
        rc = main(["report", "--name", "r", "--reports-dir", d, "--no-progress", "--torch-threads", "2"])
        if rc:
            raise RuntimeError(f"mxlab report exited {rc}")
        _copy(Path(d) / "r" / "ppl_table.csv", out / "smollm2_cpu_table.csv")
        _copy(Path(d) / "r" / "fig3_rank_sweep.csv", out / "smollm2_cpu_rank_sweep.csv")
        # each report step's seconds (report.md's Timings): the README quotes the main job's time from here
        _copy(Path(d) / "r" / "timings.csv", out / "smollm2_cpu_timings.csv")
        settings = json.loads((Path(d) / "r" / "settings.json").read_text())
    write_json(out / "smollm2_cpu_table.meta.json", {
        "result": "smollm2_cpu_table", "command": "mxlab reproduce smollm2_cpu_table --rerun "
                                                  "(= bash scripts/main: mxlab report, default profile)",
        "commit": _git_commit(), "machine": machine(), "settings": settings,
        "load_average_1_5_15min": {"before": [round(v, 2) for v in load_before],
                                   "after": [round(v, 2) for v in os.getloadavg()]},
        "overrides": "svd: the presets' 'full' -> 'randomized' (the report's CPU default)",
        "configs": _table_configs_meta(settings["configs"], table_methods())})


# the datapath study's short CPU run (README 'Accuracy under the real MX datapath'); the lead's GPU
# full-split command is in docs/results/datapath_table.meta.json
DATAPATH_ARGS = ["--full", "--windows", "1", "--seq-len", "128", "--calib", "2", "--range-windows", "1"]


def _datapath(out: Path, rerun: bool) -> None:
    from . import datapath_table

    if not rerun:
        raise RuntimeError("needs --rerun (every GEMM of SmolLM2 on mxsim.matmul, 2 settings x 2 blocks x 14 "
                           "accumulators, 40 of them evaluated: hours on a loaded 2-core CPU)")
    rc = datapath_table.main(DATAPATH_ARGS + ["--out", str(out)])
    if rc:
        raise RuntimeError(f"experiments.datapath_table exited {rc}")


RESULTS = {r.name: r for r in (
    Result("lrc_table", ("lrc_table.csv", "lrc_table.meta.json"),
           "README 'LRC vs the LQER family' and docs/lrc.md results table",
           "benchmarks/bench_lrc.py model (experiments.lrc_table.run_tasks) per docs/lrc.md; areas from hwmodel",
           "rank as fractions of min(d_in, d_out) instead of the presets' k = 32; blocks of 32; "
           "LQER-family factors MXINT8/32; LRC factors fp16", True, _lrc_table),
    Result("formats_w4", ("formats_w4.csv", "formats_w4.meta.json"),
           "docs/formats.md 'NVFP4 vs MXFP4 vs MXINT4 on SmolLM2' table",
           "experiments.lrc_table.run_tasks (benchmarks/bench_lrc.py model) on the tasks of results.formats_w4_tasks",
           "rank 10% of min(d_in, d_out); each format at its native block (MX 32, NVFP4 16); LQER-family factors "
           "MXINT8/32; LRC factors fp16", True, _formats_w4),
    Result("gpu_fullsplit_W4A8", ("gpu_fullsplit_W4A8.csv", "gpu_fullsplit_W4A8.meta.json"),
           "README 'Whole WikiText-2 test split on a CUDA GPU', W4A8 column",
           "mxlab table --configs W4A8 --full --device cuda", "none (the W4A8 preset as written, full SVD)",
           True, _gpu_fullsplit("W4A8")),
    Result("gpu_fullsplit_W3A8", ("gpu_fullsplit_W3A8.csv", "gpu_fullsplit_W3A8.meta.json"),
           "README 'Whole WikiText-2 test split on a CUDA GPU', W3A8 column",
           "mxlab table --configs W3A8 --full --device cuda", "none (the W3A8 preset as written, full SVD)",
           True, _gpu_fullsplit("W3A8")),
    Result("smollm2_cpu_table", ("smollm2_cpu_table.csv", "smollm2_cpu_rank_sweep.csv", "smollm2_cpu_timings.csv",
                                 "smollm2_cpu_table.meta.json"),
           "README 'Results on a real model' W4A8/W3A8 table, the W3A8 rank sweep and the main job's step times",
           "bash scripts/main (mxlab report, default profile), sections 2 and 4",
           "svd: the presets' 'full' -> 'randomized'", False, _cpu_report),
    Result("datapath_table", ("datapath_table.csv", "datapath_layers.csv", "datapath_table.meta.json"),
           "README 'Accuracy under the real MX datapath' table and per-layer overflow counts",
           "python -m experiments.datapath_table " + " ".join(DATAPATH_ARGS),
           "W4A8-L2QER: factors blocked along the reduction (both low-rank GEMMs on the datapath), full SVD; "
           "1 window of 128 tokens", False, _datapath),
    Result("hw_paper", ("hw_paper.csv", "hw_paper_yosys.csv", "hw_paper.meta.json"),
           "README 'Hardware cost' table, docs/hwmodel.md 'Model vs paper', docs/hwmodel_rtl.md paper tables",
           "hwmodel paper; python -m hwmodel.rtl_designs paper --tech xilinx|sky130 (Yosys, cached)",
           "none: the paper's layer (LLaMA-7B MLP, k = 32, 16 lanes), hwmodel's 'fpga' table", True, hw_paper),
    Result("hw_composite", ("hw_composite.csv", "hw_composite.meta.json"),
           "README composite check table and docs/hwmodel_rtl.md composite table",
           "python -m hwmodel.rtl_designs composite --tech sky130|xilinx|ecp5|cmos (Yosys, cached)",
           "none", True, hw_composite),
    Result("hw_accumulators", ("hw_accumulators.csv", "hw_accumulators.meta.json"),
           "README 'hwmodel prices the choice for the MX units' accumulator table",
           "experiments.hardware.config_area per (design, accumulator)", "factors blocked along the reduction; "
           "MXINT8 activations and factors at the row's block size", True, hw_accumulators),
    Result("validation", ("validation.csv", "validation.meta.json"),
           "README 'values compared, 0 mismatches' and the report's emulator-check count",
           "mxsim.validate.run_validation() and experiments.analysis.validation() (seconds, deterministic)",
           "none", True, validation),
    Result("bench_matmul_cpu", ("bench_matmul_cpu.csv", "bench_matmul_cpu.meta.json"),
           "README speed table (matmul rows) and docs/mxsim_speed.md idle-machine paragraph",
           bench_command("bench_matmul_cpu"), "none", False, benchmark("bench_matmul_cpu")),
    Result("bench_quantize_cpu", ("bench_quantize_cpu.csv", "bench_quantize_cpu.meta.json"),
           "README speed table (fake_quantize rows) and docs/mxsim_speed.md idle-machine paragraph",
           bench_command("bench_quantize_cpu"), "2 threads (the README quotes them)", False,
           benchmark("bench_quantize_cpu")),
    Result("bench_datapath_cpu", ("bench_datapath_cpu.csv", "bench_datapath_cpu.meta.json"),
           "README speed table (datapath row) and docs/mxsim_speed.md idle-machine paragraph", bench_command("bench_datapath_cpu"),
           "W4A8 plain, 4 x 512 tokens", False, benchmark("bench_datapath_cpu")),
    Result("bench_lqer_cpu", ("bench_lqer_cpu.csv", "bench_lqer_cpu.meta.json"),
           "README 'lqer speed' sentence and docs/lqer.md 'Speed and memory' table (one 11008x4096 layer)",
           bench_command("bench_lqer_cpu"), "none", False, benchmark("bench_lqer_cpu")),
    Result("bench_quantize_model_cpu", ("bench_quantize_model_cpu.csv", "bench_quantize_model_cpu.meta.json"),
           "README 'lqer speed' sentence and docs/lqer.md 'Speed and memory' table (whole-model L2QER)",
           bench_command("bench_quantize_model_cpu"), "none", False, benchmark("bench_quantize_model_cpu")),
    Result("bench_lrc_layer_cpu", ("bench_lrc_layer_cpu.csv", "bench_lrc_layer_cpu.meta.json"),
           "README 'LRC(1) on one 4096x4096 layer' sentence (CPU)", bench_command("bench_lrc_layer_cpu"), "none",
           False, benchmark("bench_lrc_layer_cpu")),
    Result("bench_lrc_layer_cuda", ("bench_lrc_layer_cuda.csv", "bench_lrc_layer_cuda.meta.json"),
           "README LRC layer sentence (H200) and docs/lrc.md 'Speed and memory' H200 row",
           bench_command("bench_lrc_layer_cuda"), "none (needs CUDA)", False, benchmark("bench_lrc_layer_cuda")),
    Result("streaming_7b_l2qer_cpu", ("streaming_7b_l2qer_cpu.csv", "streaming_7b_l2qer_cpu.meta.json"),
           "docs/streaming.md benchmark table and the README 'Models larger than memory' paragraph",
           bench_command("streaming_7b_l2qer_cpu"), "randomized SVD, calibration 4 x 128 random tokens", False,
           benchmark("streaming_7b_l2qer_cpu")),
    Result("streaming_7b_lrc_cpu", ("streaming_7b_lrc_cpu.csv", "streaming_7b_lrc_cpu.meta.json"),
           "docs/streaming.md benchmark table (LRC rows) and the README 'Models larger than memory' paragraph",
           bench_command("streaming_7b_lrc_cpu"), "LRC(1) W4A8 rank 32, float32 statistics, calibration 172 x 128 "
           "random tokens", False, benchmark("streaming_7b_lrc_cpu")),
    Result("streaming_7b_lrc4_cpu", ("streaming_7b_lrc4_cpu.csv", "streaming_7b_lrc4_cpu.meta.json"),
           "docs/streaming.md benchmark table (LRC, all layers of a 4-layer model) and the README 'Models larger "
           "than memory' paragraph", bench_command("streaming_7b_lrc4_cpu"), "LRC(1) W4A8 rank 32, float32 "
           "statistics, calibration 172 x 128 random tokens", False, benchmark("streaming_7b_lrc4_cpu")),
)}


def reproduce(names, out: Path = RESULTS_DIR, rerun: bool = False, log=print) -> list[str]:
    """Regenerate the named results into ``out``; returns the names written."""
    from mxsim.errors import UserError

    unknown = [n for n in names if n not in RESULTS]
    if unknown:
        raise UserError(f"unknown result(s) {unknown}; known: {', '.join(RESULTS)}")
    from mxsim.files import check_output

    check_output(Path(out), "--out", "dir")  # before re-measuring anything
    done = []
    for n in names:
        r = RESULTS[n]
        if not (r.quick or rerun):
            log(f"{n}: skipped: re-measuring it takes long ({r.command}); pass --rerun")
            continue
        r.regenerate(Path(out), rerun)
        log(f"{n}: wrote {', '.join(str(Path(out) / f) for f in r.files)}")
        done.append(n)
    return done


def listing() -> str:
    lines = []
    for r in RESULTS.values():
        lines.append(f"{r.name}{' (quick)' if r.quick else ' (--rerun)'}: {', '.join(r.files)}\n"
                     f"    feeds: {r.feeds}\n    measured by: {r.command}\n    overrides: {r.overrides}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(print(listing()))
