"""RTL simulation (Icarus Verilog) of hwmodel/rtl against independent references:
the FP16 units against numpy float16, the MX dot-product unit and the cross-block
accumulators against mxsim.matmul (vectors from mxsim.vectors). Never skipped: a missing
iverilog is a failure with the install command in the message."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hwmodel import sim

N_FP = 12_000


def test_iverilog_present():
    assert shutil.which("iverilog") and shutil.which("vvp"), (
        "Icarus Verilog missing: apt-get install -y --no-install-recommends iverilog")


def _fp16_operands(rng, n):
    """Random bit patterns plus adversarial ones: zeros, subnormals, max, Inf, NaN, ties."""
    special = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00,
                        0xFC00, 0x7E00, 0x3C00, 0xBC00, 0x3BFF, 0x3C01, 0x1000, 0x0200], dtype=np.uint16)
    a = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    b = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    # near-equal magnitudes (cancellation) and nearby exponents (rounding ties)
    k = n // 4
    b[:k] = (a[:k] ^ 0x8000) + rng.integers(-3, 4, k).astype(np.int64).astype(np.uint16)
    ss = np.array(np.meshgrid(special, special)).reshape(2, -1)
    a[k:k + ss.shape[1]] = ss[0]
    b[k:k + ss.shape[1]] = ss[1]
    # small exponents: subnormal products/quotients
    m = n // 8
    a[-m:] = rng.integers(0, 0x2000, m) | (rng.integers(0, 2, m) << 15)
    return a, b


def _same_fp16(got, exp):
    got = np.asarray(got, dtype=np.uint16)
    exp = np.asarray(exp, dtype=np.uint16)
    gn = np.isnan(got.view(np.float16))
    en = np.isnan(exp.view(np.float16))
    ok = (got == exp) | (gn & en)
    return ok


@pytest.mark.parametrize("op", ["add", "mul", "div"])
def test_fp16_binary_ops_match_numpy(op):
    rng = np.random.default_rng({"add": 1, "mul": 2, "div": 3}[op])
    a, b = _fp16_operands(rng, N_FP)
    words = [(int(x) << 16) | int(y) for x, y in zip(a, b)]
    dut = f"    fp16_{op} dut (.a(vin[31:16]), .b(vin[15:0]), .y(vout));"
    got = sim.run_comb(dut, words, 32, 16, files=("int_units.v", "fp_units.v"))
    fa, fb = a.view(np.float16), b.view(np.float16)
    with np.errstate(all="ignore"):
        exp = {"add": fa + fb, "mul": fa * fb, "div": fa / fb}[op].astype(np.float16).view(np.uint16)
    ok = _same_fp16(got, exp)
    bad = np.flatnonzero(~ok)
    assert bad.size == 0, (f"{bad.size} mismatches, e.g. a={a[bad[0]]:04x} b={b[bad[0]]:04x} "
                           f"rtl={got[bad[0]]:04x} numpy={exp[bad[0]]:04x}")


@pytest.mark.parametrize("width", [4, 8, 16, 24])
def test_int_to_fp16_matches_numpy(width):
    rng = np.random.default_rng(width)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1))
    x = rng.integers(lo, hi, N_FP)
    x[:4] = [lo, hi - 1, 0, -1]
    if width > 12:   # values around 2048..4096: ties at the fp16 step
        x[4:2004] = rng.integers(2040, 4100, 2000) * rng.choice([-1, 1], 2000)
    got = sim.run_comb(f"    int_to_fp16 #(.A({width})) dut (.x(vin), .y(vout));",
                       [int(v) & ((1 << width) - 1) for v in x], width, 16, files=("int_units.v", "fp_units.v"))
    exp = x.astype(np.float64).astype(np.float16).view(np.uint16)
    bad = np.flatnonzero(~_same_fp16(got, exp))
    assert bad.size == 0, f"{bad.size} mismatches, e.g. x={x[bad[0]]} rtl={got[bad[0]]:04x} numpy={exp[bad[0]]:04x}"


@pytest.mark.parametrize("width", [4, 8, 16])
def test_fp16_to_int_matches_numpy(width):
    rng = np.random.default_rng(100 + width)
    bits = rng.integers(0, 1 << 16, N_FP, dtype=np.uint32).astype(np.uint16)
    # many values in the interesting range, including .5 ties
    k = N_FP // 2
    bits[:k] = (rng.integers(-(1 << width), 1 << width, k) / 2.0).astype(np.float16).view(np.uint16)
    got = np.array(sim.run_comb(f"    fp16_to_int #(.A({width})) dut (.x(vin), .y(vout));",
                                [int(v) for v in bits], 16, width, files=("int_units.v", "fp_units.v")))
    got = np.where(got >= 1 << (width - 1), got - (1 << width), got)
    f = bits.view(np.float16).astype(np.float64)
    m = (1 << (width - 1)) - 1
    with np.errstate(invalid="ignore"):
        exp = np.where(np.isnan(f), 0, np.clip(np.rint(np.nan_to_num(f, posinf=1e9, neginf=-1e9)), -m, m))
    bad = np.flatnonzero(got != exp)
    assert bad.size == 0, f"{bad.size} mismatches, e.g. x={f[bad[0]]} rtl={got[bad[0]]} numpy={exp[bad[0]]}"
