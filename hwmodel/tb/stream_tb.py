"""Clocked testbench of a whole design that accumulates over a stream (the LQER paper's
designs): per vector one reset cycle, then T cycles of per-lane inputs, then the outputs are
read (in the next vector's reset cycle, before its clock edge) and compared with the Python
model's values computed before the run.

meta: {"T": cycles per vector, "stream": {port: lane_bits}, "constants": {port: value},
"outputs": {port: "exact" | "fp16"}}; data: one (V, T, lanes) array per stream port,
"exp_<port>" (V,) per output port (unsigned words)."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from hwmodel.tb.common import load, pack, read, score, write_summary


@cocotb.test()
async def stream_scoreboard(dut):
    data, meta = load()
    T = meta["T"]
    streams = {p: pack(data[p], bits) for p, bits in meta["stream"].items()}
    V = len(next(iter(streams.values()))) // T
    for p, v in meta["constants"].items():
        getattr(dut, p).value = v
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    got = {p: np.zeros(V, dtype=np.int64) for p in meta["outputs"]}
    for vec in range(V + 1):
        await FallingEdge(dut.clk)           # reset cycle of vector `vec`
        dut.rst.value = 1
        await ReadOnly()
        if vec > 0:                           # the previous vector's result, before this clock edge
            for p in meta["outputs"]:
                got[p][vec - 1] = read(getattr(dut, p))
        if vec == V:
            break
        for t in range(T):
            await FallingEdge(dut.clk)
            dut.rst.value = 0
            for p, words in streams.items():
                getattr(dut, p).value = words[vec * T + t]
    bad, first = score(got, data, meta["outputs"])
    write_summary({"vectors": V, "cycles": V * (T + 1), "mismatches": bad, "first_mismatch": first})
    assert bad == 0, f"{bad} mismatches, first {first}"
