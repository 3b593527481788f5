"""Clocked testbench of ``paper_lqer_lowrank`` (LQER-MXINT's main and low-rank paths, each stage
fed by the previous one's RTL outputs), every stage scored against mxsim.

Driver: a clock, 3 reset cycles, then each vector's T blocks back to back with random bubbles
(in_valid low, junk data), ``first``/``last`` flags, B's column with the last block. Monitor:
after each falling edge's inputs have settled (ReadOnly), the outputs when out_valid: one per
vector, in order, 2 cycles after its last block; every stage's value (x.W, x.A, the quantized
block's codes and scale, its product with B, the sum) compared with mxsim's.

data: x (V, T, 16), sx (V, T), w (V, T, 16), sw (V, T), a (T, 16, 16) (block, column, lane),
sa (T, 16), b (V, 16), sb (V,) codes and scale codes; exp_y1, exp_y3, exp_y, exp_se (V,),
exp_xa, exp_q (V, 16) unsigned words. meta: XB, WB, LB, T, bubble, seed.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from hwmodel.tb.common import load, pack, read, score, write_summary

RESET_CYCLES = 3
LATENCY = 2   # from the cycle of a vector's last block to its out_valid


def _lanes(word: int, n: int, bits: int) -> list[int]:
    return [(word >> (i * bits)) & ((1 << bits) - 1) if word >= 0 else -1 for i in range(n)]


@cocotb.test()
async def lowrank_scoreboard(dut):
    data, meta = load()
    XB, WB, LB, T = meta["XB"], meta["WB"], meta["LB"], meta["T"]
    rng = random.Random(meta["seed"])
    V = data["sx"].shape[0]
    x, w = pack(data["x"], XB), pack(data["w"], WB)
    a = pack(data["a"].reshape(T, 256), LB)            # column j in bits [j*16*LB, (j+1)*16*LB)
    sa = pack(data["sa"], 8)
    b = pack(data["b"], LB)
    sx, sw, sb = data["sx"].reshape(-1).tolist(), data["sw"].reshape(-1).tolist(), data["sb"].tolist()

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    beats = [("reset", None)] * RESET_CYCLES
    for i in range(V * T):
        while rng.random() < meta["bubble"]:
            beats.append(("bubble", None))
        beats.append(("blk", i))
    beats += [("drain", None)] * (LATENCY + 3)

    last_cycle, outs, early = [], [], 0
    for cyc, (kind, i) in enumerate(beats):
        await FallingEdge(dut.clk)
        dut.rst.value = int(kind == "reset")
        if kind == "blk":
            v, t = divmod(i, T)
            dut.in_valid.value, dut.in_first.value, dut.in_last.value = 1, int(t == 0), int(t == T - 1)
            dut.x.value, dut.sx.value, dut.w.value, dut.sw.value = x[i], sx[i], w[i], sw[i]
            dut.a.value, dut.sa.value, dut.b.value, dut.sb.value = a[t], sa[t], b[v], sb[v]
            if t == T - 1:
                last_cycle.append(cyc)
        else:   # junk, valid only during reset (nothing may come out of it)
            dut.in_valid.value = int(kind == "reset")
            dut.in_first.value, dut.in_last.value = rng.getrandbits(1), rng.getrandbits(1)
            dut.x.value, dut.w.value = rng.getrandbits(16 * XB), rng.getrandbits(16 * WB)
            dut.a.value, dut.b.value = rng.getrandbits(256 * LB), rng.getrandbits(16 * LB)
            dut.sx.value, dut.sw.value, dut.sa.value, dut.sb.value = (rng.getrandbits(8), rng.getrandbits(8),
                                                                      rng.getrandbits(128), rng.getrandbits(8))
        await ReadOnly()
        if read(dut.out_valid) == 1:
            if kind == "reset" and cyc > 0:
                early += 1
                continue
            outs.append((cyc, read(dut.y1), read(dut.xa), read(dut.q), read(dut.se), read(dut.y3), read(dut.y)))

    n = min(len(outs), V)
    got = {"y1": np.array([o[1] for o in outs[:n]], dtype=np.int64),
           "xa": np.array([_lanes(o[2], 16, 32) for o in outs[:n]], dtype=np.int64).reshape(-1),
           "q": np.array([_lanes(o[3], 16, LB) for o in outs[:n]], dtype=np.int64).reshape(-1),
           "se": np.array([o[4] for o in outs[:n]], dtype=np.int64),
           "y3": np.array([o[5] for o in outs[:n]], dtype=np.int64),
           "y": np.array([o[6] for o in outs[:n]], dtype=np.int64)}
    exp = {f"exp_{p}": data[f"exp_{p}"].reshape(-1)[:len(g)] for p, g in got.items()}
    bad, first = score(got, exp, {p: "exact" for p in got})
    latency = sorted({c - last_cycle[j] for j, (c, *_) in enumerate(outs[:n])})
    for problem, info in (("out_valid during reset", early),
                          ("output count", None if len(outs) == V else {"got": len(outs), "expected": V}),
                          ("latency", None if latency == [LATENCY] else {"seen": latency, "expected": LATENCY})):
        if info:
            bad += 1
            first = first or {"what": problem, "info": info}
    write_summary({"vectors": V, "blocks": V * T, "cycles": len(beats), "mismatches": bad,
                   "first_mismatch": first, "latency": latency})
    assert bad == 0, f"{bad} mismatches, first {first}"
