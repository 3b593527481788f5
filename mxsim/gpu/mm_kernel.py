"""Triton MX matmul kernel: block dot products on int8 tensor cores, accumulators fused.

Semantics: docs/mxsim_semantics.md (matmul). Element integers that fit int8 (MXINT, MXFP4,
MXFP6_E2M3, BlockFP) go to ``tl.dot`` as they are; wider ones (MXFP6_E3M2, MXFP8_E4M3) are
split on the device into int8 limbs of 7-bit magnitude, a = sum_l a_l 2^(7l), and every
limb pair is one int8 dot with int32 sums (exact: |sum| <= 127*127*block < 2^31); the block
sum P = sum_lm D_lm 2^(7(l+m)) is then exact in int64 (|P| < 2^53 for every format but
MXFP8_E5M2, whose matmul on CUDA runs the CPU limb path). Per block, in order along K:

* exact: acc += P * 2^E in float64 with an error-free TwoSum; outputs where a sum was
  inexact are flagged and recomputed (those rows) by the CPU path, as the CPU path does.
* fp32 (lanes = block): acc <- fl32(acc + P * 2^E) fused: float64 sum, round-to-odd from the
  TwoSum error, then RNE to float32 (53 >= 24 + 2 bits: one correct rounding).
* FixedPoint: floor(P * 2^(E + frac)) by int64 shifts, saturating or wrapping at W bits.
"""

import triton
import triton.language as tl

from .quant import pow2


@triton.jit
def mx_matmul_kernel(a_ptr, b_ptr, ea_ptr, eb_ptr, out_ptr, flag_ptr, M, N, K, NB, SHIFT,
                     BLK: tl.constexpr, KP: tl.constexpr, LA: tl.constexpr, LB: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, ACC: tl.constexpr, W: tl.constexpr,
                     SATURATE: tl.constexpr, HI: tl.constexpr, LO: tl.constexpr):
    """a: (LA, M, K) int8 limbs, b: (LB, K, N) int8 limbs, ea (M, NB), eb (NB, N) int32
    scale exponents; SHIFT = qa + qb (+ frac_bits for fixed point). ACC: 0 exact, 1 fp32,
    2 fixed (W bits, range [LO, HI]). out: float64 / float32 / int64 (M, N); flag: int8
    (M, N), exact only."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    mm = rm < M
    mn = rn < N
    i = tl.arange(0, KP)
    if ACC == 0:
        acc = tl.zeros((BM, BN), tl.float64)
        inexact = tl.zeros((BM, BN), tl.int32)
    elif ACC == 1:
        acc = tl.zeros((BM, BN), tl.float32)
    else:
        acc = tl.zeros((BM, BN), tl.int64)
    for j in range(0, NB):
        kk = j * BLK + i
        mk = (i < BLK) & (kk < K)
        P = tl.zeros((BM, BN), tl.int64)
        for la in tl.static_range(LA):
            a = tl.load(a_ptr + la * M * K + rm[:, None].to(tl.int64) * K + kk[None, :],
                        mask=mm[:, None] & mk[None, :], other=0)
            for lb in tl.static_range(LB):
                b = tl.load(b_ptr + lb * K * N + kk[:, None].to(tl.int64) * N + rn[None, :],
                            mask=mk[:, None] & mn[None, :], other=0)
                d = tl.dot(a, b, out_dtype=tl.int32)
                P += d.to(tl.int64) << (7 * (la + lb))
        E = (tl.load(ea_ptr + rm.to(tl.int64) * NB + j, mask=mm, other=0)[:, None]
             + tl.load(eb_ptr + j * N + rn, mask=mn, other=0)[None, :] + SHIFT).to(tl.int64)
        if ACC == 2:
            if SATURATE:
                up_ok = (E < 63) & (tl.abs(P) <= (HI >> tl.minimum(tl.maximum(E, 0), 62)))
                up = tl.where(up_ok, P << tl.minimum(tl.maximum(E, 0), 62), tl.where(P > 0, HI, LO))
                up = tl.where(P == 0, 0, up)
                down = tl.minimum(tl.maximum(P >> tl.minimum(tl.maximum(-E, 0), 63), LO), HI)
                al = tl.where(E >= 0, up, down)
                s = (acc.to(tl.uint64, bitcast=True) + al.to(tl.uint64, bitcast=True)).to(tl.int64, bitcast=True)
                ovf = ((acc ^ s) & (al ^ s)) < 0
                s = tl.where(ovf, tl.where(al > 0, HI, LO), s)
                acc = tl.minimum(tl.maximum(s, LO), HI)
            else:
                SX: tl.constexpr = 64 - W
                up = P.to(tl.uint64, bitcast=True) << tl.minimum(tl.maximum(E, 0), 63).to(tl.uint64)
                up = tl.where(E < 64, up, 0)
                down = (P >> tl.minimum(tl.maximum(-E, 0), 63)).to(tl.uint64, bitcast=True)
                al = tl.where(E >= 0, up, down)
                u = acc.to(tl.uint64, bitcast=True) + al
                acc = (u << SX).to(tl.int64, bitcast=True) >> SX  # sign-extend the low W bits
        else:
            t = P.to(tl.float64) * pow2(E) + 0.0  # exact: |P| < 2^53, |E| < 600
            x = acc.to(tl.float64)
            s = x + t
            bb = s - x
            e = (x - (s - bb)) + (t - bb)
            if ACC == 0:
                acc = s
                inexact = inexact | (e != 0.0).to(tl.int32)
            else:
                # round to odd: s even and the exact value beyond it -> step one ulp toward e
                sb = s.to(tl.int64, bitcast=True)
                fix = (e != 0.0) & (e == e) & (tl.abs(s) < float("inf")) & ((sb & 1) == 0)
                toward = tl.where((e > 0.0) == (s > 0.0), 1, -1)
                s = tl.where(fix, (sb + toward).to(tl.float64, bitcast=True), s)
                acc = s.to(tl.float32)
    mo = mm[:, None] & mn[None, :]
    off = rm[:, None].to(tl.int64) * N + rn[None, :]
    tl.store(out_ptr + off, acc, mask=mo)
    if ACC == 0:
        tl.store(flag_ptr + off, inexact.to(tl.int8), mask=mo)
