"""What every testbench shares: its inputs, its summary, the reference comparisons."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def load():
    d = Path(os.environ["HWMODEL_TB_DIR"])
    data = np.load(d / "vectors.npz")
    return {k: data[k] for k in data.files}, json.loads((d / "meta.json").read_text())


def pack(lanes: np.ndarray, bits: int) -> list[int]:
    """(..., L) lane values -> one int per row of L lanes, lane 0 in the least significant bits
    (each value masked to ``bits``): how the RTL's packed lane ports are laid out."""
    flat = np.asarray(lanes).reshape(-1, np.asarray(lanes).shape[-1]).astype(object)
    mask = (1 << bits) - 1
    out = []
    for row in flat:
        w = 0
        for v in row[::-1]:
            w = (w << bits) | (int(v) & mask)
        out.append(w)
    return out


def write_summary(summary: dict) -> None:
    (Path(os.environ["HWMODEL_TB_DIR"]) / "summary.json").write_text(json.dumps(summary))


def same(got: np.ndarray, exp: np.ndarray, mode: str) -> np.ndarray:
    """Bitwise equality; for 'fp16'/'fp32' any NaN equals any NaN (payloads are not kept)."""
    got = np.asarray(got, dtype=np.uint64)
    exp = np.asarray(exp, dtype=np.uint64)
    ok = got == exp
    if mode in ("fp16", "fp32"):
        ut, ft = (np.uint16, np.float16) if mode == "fp16" else (np.uint32, np.float32)
        gn = np.isnan(got.astype(ut).view(ft))
        en = np.isnan(exp.astype(ut).view(ft))
        ok |= gn & en
    return ok


def matches(got: np.ndarray, exp: np.ndarray, mode: str) -> np.ndarray:
    """Per vector: the RTL drove a value (no x/z, see ``read``) and it equals the reference."""
    got = np.asarray(got)
    return (got >= 0) & same(np.where(got < 0, 0, got), exp, mode)


def score(got: dict, data: dict, outputs: dict, inputs=()):
    """(mismatch count, first mismatch) over every output port ``outputs`` {port: mode}; the
    first mismatch names its vector, port, both values and the vector's ``inputs`` ports."""
    bad, first = 0, None
    for p, mode in outputs.items():
        g, e = got[p], data[f"exp_{p}"]
        ok = matches(g, e, mode)
        bad += int((~ok).sum())
        if first is None and not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            first = {"vector": i, "port": p, "rtl": hex(int(g[i])) if g[i] >= 0 else "x/z",
                     "reference": hex(int(e[i]))}
            if inputs:
                first["inputs"] = {q: hex(int(data[q][i])) for q in inputs}
    return bad, first


def read(handle) -> int:
    """The port's value as an unsigned int; -1 for x/z bits (never equal to a reference)."""
    v = handle.value
    try:
        return int(v.to_unsigned()) if hasattr(v, "to_unsigned") else int(v)   # LogicArray / Logic
    except ValueError:
        return -1
