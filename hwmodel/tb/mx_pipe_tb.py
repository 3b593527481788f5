"""Clocked testbench of ``mx_dot_accs_pipe``: the MX dot-product unit and its three cross-block
accumulators (two fixed-point, one fused FP32), scored against mxsim.

Driver: a clock, reset held for 3 cycles with junk valid inputs (nothing may come out of
them), then the vectors' blocks back to back with random bubbles (in_valid low, junk data),
``first``/``last`` marking each vector's blocks. Monitor: every cycle, after the inputs are set
and the design has settled (ReadOnly), the dot outputs (when dot_valid) and the accumulators
(when out_valid) are compared with the reference, in order, and their latency with the
parameters: a block presented in cycle i must leave the dot unit in cycle i + DOT_STAGES, a
vector whose last block was presented in cycle i must leave in cycle i + DOT_STAGES +
ACC_STAGES + 1.

data: a_codes (V, NB, K), b_codes (V, NB, K) element codes (two's complement, masked),
a_scales, b_scales (V, NB), block_exact (V, NB) float64 or empty, exp_acc0/exp_acc1/exp_fp32 (V)
unsigned words; meta: A, B, K, DOT_STAGES, ACC_STAGES, check (names of the outputs to score),
bubble (probability), seed.
"""

from __future__ import annotations

import math
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from hwmodel.tb.common import load, matches, pack, read, write_summary

RESET_CYCLES = 3


@cocotb.test()
async def mx_pipe_scoreboard(dut):
    data, meta = load()
    A, B, K = meta["A"], meta["B"], meta["K"]
    ds, acs = meta["DOT_STAGES"], meta["ACC_STAGES"]
    check = set(meta["check"])
    rng = random.Random(meta["seed"])
    V, NB = data["a_scales"].shape
    xa, xb = pack(data["a_codes"], A), pack(data["b_codes"], B)
    sa, sb = data["a_scales"].reshape(-1).tolist(), data["b_scales"].reshape(-1).tolist()
    exact = data["block_exact"].reshape(-1) if "dot" in check else None
    sw = A + B - 1 + (K - 1).bit_length()

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    # the beat sequence: (kind, block index) with kind 'junk' (reset or bubble) or 'blk'
    beats = [("reset", None)] * RESET_CYCLES
    for i in range(V * NB):
        while rng.random() < meta["bubble"]:
            beats.append(("bubble", None))
        beats.append(("blk", i))
    beats += [("drain", None)] * (ds + acs + 4)

    dot_cycle, vec_cycle = [], []          # input cycle of each block / each vector's last block
    got_dot, got_acc = [], []              # (cycle, values) as they come out
    for cyc, (kind, i) in enumerate(beats):
        await FallingEdge(dut.clk)
        dut.rst.value = int(kind == "reset")
        if kind == "blk":
            dut.in_valid.value = 1
            dut.in_first.value = int(i % NB == 0)
            dut.in_last.value = int(i % NB == NB - 1)
            dut.xa.value, dut.xb.value, dut.sa.value, dut.sb.value = xa[i], xb[i], sa[i], sb[i]
            dot_cycle.append(cyc)
            if i % NB == NB - 1:
                vec_cycle.append(cyc)
        else:
            dut.in_valid.value = int(kind == "reset")   # junk during reset must not come out
            dut.in_first.value = rng.getrandbits(1)
            dut.in_last.value = rng.getrandbits(1)
            dut.xa.value, dut.xb.value = rng.getrandbits(K * A), rng.getrandbits(K * B)
            dut.sa.value, dut.sb.value = rng.getrandbits(8), rng.getrandbits(8)
        await ReadOnly()
        if kind == "reset":
            # synchronous reset: from the first clock edge in reset on, nothing is valid
            if cyc > 0 and (read(dut.out_valid) != 0 or (ds > 0 and read(dut.dot_valid) != 0)):
                got_acc.append((cyc, None))
            continue
        if read(dut.dot_valid) == 1:
            s = read(dut.dot_s)
            e = read(dut.dot_e)
            s = s - (1 << sw) if s >= 1 << (sw - 1) else s
            e = e - 1024 if e >= 512 else e
            got_dot.append((cyc, s, e, read(dut.dot_nan)))
        if read(dut.out_valid) == 1:
            got_acc.append((cyc, (read(dut.acc0), read(dut.acc1), read(dut.acc_fp32))))

    mismatches, first = 0, None

    def bad(what, **info):
        nonlocal mismatches, first
        mismatches += 1
        if first is None:
            first = {"what": what, **info}

    # dot unit: one output per block, in order, DOT_STAGES cycles after its input
    if len(got_dot) != V * NB:
        bad("dot output count", got=len(got_dot), expected=V * NB)
    dot_lat = sorted({c - dot_cycle[j] for j, (c, *_) in enumerate(got_dot[:len(dot_cycle)])})
    if dot_lat != [ds]:
        bad("dot latency", seen=dot_lat, expected=ds)
    if exact is not None:
        for j, (c, s, e, nan) in enumerate(got_dot[:V * NB]):
            if nan or math.ldexp(s, e) != exact[j]:
                bad("dot value", block=j, rtl=(s, e, nan), mxsim=float(exact[j]))
    # accumulators: one output per vector, in order, DOT_STAGES + ACC_STAGES + 1 after its last block
    if any(v is None for _, v in got_acc):
        bad("out_valid during reset")
    got_acc = [x for x in got_acc if x[1] is not None]
    if len(got_acc) != V:
        bad("accumulator output count", got=len(got_acc), expected=V)
    acc_lat = sorted({c - vec_cycle[j] for j, (c, _) in enumerate(got_acc[:V])})
    if acc_lat != [ds + acs + 1]:
        bad("accumulator latency", seen=acc_lat, expected=ds + acs + 1)
    for idx, (name, mode) in enumerate((("acc0", "exact"), ("acc1", "exact"), ("fp32", "fp32"))):
        if name not in check:
            continue
        g = np.array([v[idx] for _, v in got_acc[:V]], dtype=np.int64)
        e = data[f"exp_{name}"][:len(g)]
        ok = matches(g, e, mode)
        for j in np.flatnonzero(~ok):
            bad(f"{name} value", vector=int(j), rtl=hex(int(g[j])), mxsim=hex(int(e[j])))
    write_summary({"vectors": V, "blocks": V * NB, "cycles": len(beats), "mismatches": mismatches,
                   "first_mismatch": first, "dot_latency": dot_lat, "acc_latency": acc_lat,
                   "checked": sorted(check)})
    assert mismatches == 0, f"{mismatches} mismatches, first {first}"
