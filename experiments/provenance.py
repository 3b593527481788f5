"""Where a measured number comes from: the machine, the threads, the commit and the command,
written beside the number as a CSV + meta JSON (``docs/results/NAME.csv`` + ``NAME.meta.json``).

The benchmarks (``benchmarks/bench_*.py --out DIR``) write their rows with ``write_table``; the
README/doc tests read them back with ``read_table``. The CSV holds the values as the benchmark
prints them (same rounding), so a table quoting the printed output can be checked against the
file, and re-running the script overwrites the file in the same format.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commit() -> str:
    """The checkout's short commit, '+dirty' when tracked files differ from it; 'unknown' without git.
    docs/results (the outputs) does not count: a re-run of several results rewrites them one after
    the other, and the code that measured is what the commit names."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)docs/results"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(device: str = "cpu") -> dict:
    """The machine and the thread counts in effect now (call it after setting the threads)."""
    import numba
    import torch

    info = {"host": platform.node(), "cpu": cpu_model(), "logical_cpus": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "torch": torch.__version__, "numba": numba.__version__,
            "torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
            "device": device}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def run_meta(result: str, script: str, argv=None, device: str = "cpu", **extra) -> dict:
    """The meta JSON of one benchmark run: what was run, where, when, at which commit."""
    args = list(sys.argv[1:] if argv is None else argv)
    return {"result": result, "command": " ".join(["python", script] + args), "commit": commit(),
            "machine": machine_info(device), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra}


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """The CSV of ``rows`` with exactly ``columns`` (a missing or None value is an empty cell)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r[c]) for c in columns})
    return buf.getvalue()


def write_table(out_dir, name: str, rows: list[dict], columns: list[str], meta: dict) -> tuple[Path, Path]:
    """Write ``out_dir/NAME.csv`` and ``NAME.meta.json``, each atomically (mode from the umask)."""
    from mxsim.files import write_json, write_text

    out_dir = Path(out_dir)
    csv_path = write_text(out_dir / f"{name}.csv", csv_text(rows, columns))
    meta_path = write_json(out_dir / f"{name}.meta.json", {**meta, "columns": list(columns)})
    return csv_path, meta_path


def read_table(path) -> tuple[list[dict], dict]:
    """(rows as dicts of strings, meta) of a CSV written by ``write_table``."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    meta_path = path.with_name(path.name[:-len(".csv")] + ".meta.json")
    return rows, json.loads(meta_path.read_text())


def check_out_dir(parser, out) -> Path | None:
    """A benchmark's ``--out`` checked before any timing: ``parser.error`` (exit 2) if unusable."""
    if out is None:
        return None
    from mxsim.errors import UserError
    from mxsim.files import check_output

    try:
        return check_output(out, "--out", "dir")
    except UserError as e:
        parser.error(str(e))


# ----------------------------------------------------------------------------- the documents' side
def markdown_table(text: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, body rows' cells) of the one markdown table in ``text`` whose header line
    starts with ``header_start`` (ValueError if none or several)."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith(header_start)]
    if len(starts) != 1:
        raise ValueError(f"header_start {header_start!r}: {len(starts)} tables match, expected one")

    def cells(ln):
        return [c.strip() for c in ln.strip().strip("|").split("|")]

    body = []
    for ln in lines[starts[0] + 2:]:
        if not ln.startswith("|"):
            break
        body.append(cells(ln))
    return cells(lines[starts[0]]), body


def agrees(printed: str, value) -> bool:
    """``printed`` is ``value`` rounded to the digits it shows ("20,628", "−2.4 %", "+0.0", "**26.79**";
    "–" or "" for a missing value)."""
    import math

    s = printed.replace("−", "-").replace(",", "").replace("%", "").replace("+", "").replace("*", "").strip()
    if s in ("–", "-", ""):
        return value is None or (isinstance(value, float) and math.isnan(value))
    decimals = len(s.split(".")[1]) if "." in s else 0
    return abs(float(s) - float(value)) <= 0.5 * 10 ** -decimals + 1e-9
