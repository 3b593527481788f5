"""Combinational scoreboard: apply every input vector, read every output 1 ns later, compare
with the reference values computed before the run (numpy for the FP units).

meta: {"inputs": [port, ...], "outputs": {port: "exact" | "fp16" | "fp32"}};
data: one array per input port, "exp_<port>" per output port (unsigned)."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import Timer

from hwmodel.tb.common import load, read, score, write_summary


@cocotb.test()
async def comb_scoreboard(dut):
    data, meta = load()
    ins = [(getattr(dut, p), data[p].tolist()) for p in meta["inputs"]]
    outs = [(p, getattr(dut, p)) for p in meta["outputs"]]
    n = len(ins[0][1])
    got = {p: np.zeros(n, dtype=np.int64) for p, _ in outs}
    for i in range(n):
        for h, col in ins:
            h.value = col[i]
        await Timer(1, "ns")
        for p, h in outs:
            got[p][i] = read(h)
    bad, first = score(got, data, meta["outputs"], meta["inputs"])
    write_summary({"vectors": n, "mismatches": bad, "first_mismatch": first})
    assert bad == 0, f"{bad} mismatches, first {first}"
