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


def test_fp32_add_matches_numpy():
    rng = np.random.default_rng(7)
    n = N_FP
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    k = n // 3
    b[:k] = (a[:k] ^ 0x80000000) + rng.integers(-5, 6, k).astype(np.int64).astype(np.uint32)   # cancellation
    b[k:2 * k] = a[k:2 * k] + (rng.integers(-30, 31, k) << 23).astype(np.int64).astype(np.uint32)  # near exponents
    a[-200:] = rng.integers(0, 1 << 24, 200)        # subnormals
    b[-100:] = rng.integers(0, 1 << 24, 100) | 0x80000000
    got = np.array(sim.run_comb("    fp32_add dut (.a(vin[63:32]), .b(vin[31:0]), .y(vout));",
                                [(int(x) << 32) | int(y) for x, y in zip(a, b)], 64, 32,
                                files=("int_units.v", "fp_units.v")), dtype=np.uint32)
    with np.errstate(all="ignore"):
        exp = (a.view(np.float32) + b.view(np.float32)).view(np.uint32)
    same = (got == exp) | (np.isnan(got.view(np.float32)) & np.isnan(exp.view(np.float32)))
    bad = np.flatnonzero(~same)
    assert bad.size == 0, f"{bad.size} mismatches, e.g. {a[bad[0]]:08x}+{b[bad[0]]:08x}: rtl {got[bad[0]]:08x} numpy {exp[bad[0]]:08x}"


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
    with np.errstate(over="ignore"):   # overflow to Inf is the expected result
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


# ------------------------------------------------------------------ MX units vs mxsim.matmul

import math  # noqa: E402

import mxsim  # noqa: E402
from mxsim import vectors  # noqa: E402

M = N = 100          # 10,000 (row, column) vectors per configuration
NBLK = 2             # blocks per vector: 20,000 block dot products, 2 accumulation steps each

# (a bits, b bits, block) and the accumulators checked on each
MX_CONFIGS = {
    "mxint4x8_k16": (4, 8, 16, [("fixed", 32, 16, "saturate"), ("fixed", 12, 2, "wrap"), ("fp32",)]),
    "mxint8x8_k32": (8, 8, 32, [("fixed", 16, 8, "saturate"), ("fixed", 16, 8, "wrap"), ("fp32",)]),
    "mxint6x8_k32": (6, 8, 32, [("fixed", 24, 4, "wrap"), ("fixed", 20, 10, "saturate"), ("fp32",)]),
}


def _acc_obj(spec):
    return "fp32" if spec[0] == "fp32" else mxsim.FixedPoint(spec[1], spec[2], overflow=spec[3])


@pytest.fixture(scope="module", params=sorted(MX_CONFIGS))
def mx_run(request, tmp_path_factory):
    """Export vectors with mxsim, then ONE Icarus compile + run of the dot unit and all accumulators."""
    assert hasattr(mxsim, "matmul"), "mxsim.matmul missing: the MX simulation tests need mxsim's matmul API"
    a_bits, b_bits, k, accs = MX_CONFIGS[request.param]
    rng = np.random.default_rng(sum(map(ord, request.param)))
    a, b = vectors.adversarial_pair(M, NBLK * k, N, k, rng, scale_span=90)
    out = tmp_path_factory.mktemp(request.param)
    vectors.export(out, a, b, f"MXINT{a_bits}/{k}", f"MXINT{b_bits}/{k}", accumulators=[_acc_obj(s) for s in accs])
    ac = vectors.read_hex(out / "a_codes.hex")
    bc = vectors.read_hex(out / "b_codes.hex")
    sa = vectors.read_hex(out / "a_scales.hex")
    sb = vectors.read_hex(out / "b_scales.hex")
    words = []
    for m in range(M):
        for n in range(N):
            for j in range(NBLK):
                w = (ac[m * NBLK + j] << (k * b_bits + 16)) | (bc[n * NBLK + j] << 16)
                words.append(w | (sa[m * NBLK + j] << 8) | sb[n * NBLK + j])
    dots, finals = sim.run_mx(a_bits, b_bits, k, words, NBLK, accs)
    return dict(name=request.param, accs=accs, out=out, dots=dots, finals=finals)


def test_mx_dot_unit_matches_mxsim(mx_run):
    v = mx_run
    exp = np.array(vectors.read_hex(v["out"] / "block_exact.hex"), dtype=np.uint64).view(np.float64)
    assert len(v["dots"]) == exp.size == M * N * NBLK
    bad, first = 0, None
    for i, (s, e, nan) in enumerate(v["dots"]):
        if nan or math.ldexp(s, e) != exp[i]:
            bad += 1
            first = first or (i, s, e, exp[i])
    assert bad == 0, f"{v['name']}: {bad} block dot products differ from mxsim, first (idx, S, E, mxsim) {first}"
    # the vectors reach the corners: zero blocks, far-apart exponents, large sums
    es = [e for s, e, _ in v["dots"] if s]
    assert sum(1 for s, _, _ in v["dots"] if s == 0) > 100 and max(es) - min(es) > 200


@pytest.mark.parametrize("which", [0, 1, 2])
def test_mx_accumulators_match_mxsim(mx_run, which):
    v = mx_run
    spec = v["accs"][which]
    name = vectors.acc_name(_acc_obj(spec))
    got = np.array(v["finals"][which], dtype=np.uint64)
    exp = np.array(vectors.read_hex(v["out"] / f"expected_{name}.hex"), dtype=np.uint64)
    assert got.size == exp.size == M * N
    if spec[0] == "fp32":
        g32, e32 = got.astype(np.uint32), exp.astype(np.uint32)
        same = (g32 == e32) | (np.isnan(g32.view(np.float32)) & np.isnan(e32.view(np.float32)))
        f = e32.view(np.float32)
        assert np.sum((f != 0) & (np.abs(f) < np.finfo(np.float32).tiny)) > 0, "no subnormal fp32 results"
    else:
        same = got == exp
        width = spec[1]
        if spec[3] == "saturate":   # the adversarial vectors must actually saturate
            lim = np.array([(1 << (width - 1)) - 1, 1 << (width - 1)], dtype=np.uint64)
            assert np.isin(exp, lim).sum() > 10, "no saturated outputs: vectors not adversarial enough"
    bad = np.flatnonzero(~same)
    assert bad.size == 0, (f"{v['name']} {name}: {bad.size} of {exp.size} outputs differ from mxsim, "
                           f"first at {bad[0]}: rtl {int(got[bad[0]]):x} mxsim {int(exp[bad[0]]):x}")


def test_fp32_accumulator_steps_of_lanes_match_mxsim(tmp_path):
    """mxsim fp32 accumulator with lanes=16 < block 32: one fused rounding per 16-lane step,
    simulated as a 16-lane mx_dot stepping twice per block (cvfpu MXDOTP style),
    2 blocks per vector with exponents far apart, so steps of the second block round."""
    k, lanes, nb = 32, 16, 2
    spb = k // lanes
    rng = np.random.default_rng(8)
    a, b = vectors.adversarial_pair(M, nb * k, N, k, rng, scale_span=20)
    vectors.export(tmp_path, a, b, "MXINT8/32", accumulators=["fp32"], lanes=lanes, per_block=False)
    ac = vectors.read_hex(tmp_path / "a_codes.hex")
    bc = vectors.read_hex(tmp_path / "b_codes.hex")
    sa = vectors.read_hex(tmp_path / "a_scales.hex")
    sb = vectors.read_hex(tmp_path / "b_scales.hex")
    mask = (1 << (8 * lanes)) - 1
    words = []
    for m in range(M):
        for n in range(N):
            for j in range(nb):
                for st in range(spb):
                    ca = (ac[m * nb + j] >> (st * 8 * lanes)) & mask
                    cb = (bc[n * nb + j] >> (st * 8 * lanes)) & mask
                    words.append((ca << (8 * lanes + 16)) | (cb << 16) | (sa[m * nb + j] << 8) | sb[n * nb + j])
    _, (fin,) = sim.run_mx(8, 8, lanes, words, nb * spb, [("fp32",)])
    got = np.array(fin, dtype=np.uint32)
    exp = np.array(vectors.read_hex(tmp_path / "expected_fp32.hex"), dtype=np.uint32)
    # the step size matters for these vectors: lanes = 32 gives different bits somewhere
    qa = mxsim.quantize(a, "MXINT8/32", axis=-1)
    qb = mxsim.quantize(b, "MXINT8/32", axis=0)
    whole = np.asarray(mxsim.matmul(qa, qb, accumulator="fp32")).view(np.uint32).reshape(-1)
    assert np.sum(whole != exp) > 50
    same = (got == exp) | (np.isnan(got.view(np.float32)) & np.isnan(exp.view(np.float32)))
    bad = np.flatnonzero(~same)
    assert got.size == M * N and bad.size == 0, (
        f"{bad.size} of {got.size} differ, first at {bad[0]}: rtl {got[bad[0]]:08x} mxsim {exp[bad[0]]:08x}")
