"""Triton MX matmul kernel: block dot products on int8 tensor cores, accumulators fused.

Semantics: docs/mxsim_semantics.md (matmul). Element integers that fit int8 (MXINT, MXFP4,
MXFP6_E2M3, BlockFP) go to ``tl.dot`` as they are; wider ones (MXFP6_E3M2, MXFP8_E4M3,
MXFP8_E5M2) are split on the host into int8 limbs of 7-bit magnitude, a = sum_l a_l 2^(7l),
and every limb pair is one int8 dot with int32 sums (exact: |sum| <= 127*127*block < 2^31).
The block sum P is then exact in int64 (|P| < 2^53: every pair without MXFP8_E5M2) or, WIDE
(E5M2 x E5M2 / x E4M3: |P| up to 2^68.6), as two int64 words P = hi * 2^28 + lo with
0 <= lo < 2^28 and |hi| < 2^53, both exact float64 values. Per block, in order along K:

* exact: acc += P * 2^E in float64 with an error-free TwoSum; outputs where a sum was
  inexact are flagged and recomputed (those rows) by the CPU path, as the CPU path does.
* fp32 (lanes = block): acc <- fl32(acc + P * 2^E) fused. FAST tiles (below): one float32
  FMA of exact operands, which is that one rounding. Else float64: the exact sum by TwoSum
  (WIDE: the three-term sum acc + hi 2^(E+28) + lo 2^E by Boldo and Melquiond's Adder3),
  rounded to odd in float64, then RNE to float32 (53 >= 24 + 2 bits: one correct rounding).
* FixedPoint: FAST tiles: floor(P * 2^(E+frac)) in float32 (exact) and an int32 accumulator
  with saturation (or wrap) in int32; else floor by int64 shifts of the two words,
  saturating or wrapping at W bits.

FAST: one limb pair and |P| < 2^PBITS <= 2^24 (P exact in float32), and, per output tile
and block, the scale exponents (the host's per-tile minima/maxima amin..bmax) prove that
P * 2^ea and P * 2^(ea + eb) are exact float32 values (and, for wrap, below 2^31): then the
step is a handful of float32/int32 operations per output instead of float64/int64 ones.
The proof is a scalar branch per tile and block; tiles that fail it (NaN or zero blocks,
extreme scales) take the general code, with the same result.

SHADOW (FixedPoint, mxsim.matmul's return_overflow): beside the W-bit accumulator, the
unclamped block terms floor(P * 2^E) are summed in float64 (``sh``). While every partial sum
stays below 2^53 in magnitude, each of those sums is exact (integers), every term is below
2^54, so FixedPoint(64)'s sum never saturates and equals ``sh``: the output overflowed exactly
when the accumulator's value differs from ``sh``. An output with a partial sum at or beyond
2^53 (or, in the general code, a term whose float64 estimate reaches 2^52, where ``al`` may
not be the exact floor in float64) turns ``sh`` into NaN, which every later sum keeps (no
flag register beside it), and is flagged 2, "unsure": the host decides it from the
FixedPoint(64) GEMM of its row. flag: 1 overflowed, 0 not (NaN outputs: 0), 2 unsure.
"""

import triton
import triton.language as tl

from .quant import pow2

TWO52 = tl.constexpr(4503599627370496.0)  # 2^52
TWO53 = tl.constexpr(9007199254740992.0)  # 2^53


@triton.jit
def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@triton.jit
def _round_odd(s, e):
    """s = RN(x), e = x - s exact: the float64 round-to-odd of x (s stepped one ulp toward e
    when x is inexact and s's last bit is even; Inf/NaN kept)."""
    sb = s.to(tl.int64, bitcast=True)
    fix = (e != 0.0) & (e == e) & (tl.abs(s) < float("inf")) & ((sb & 1) == 0)
    toward = tl.where((e > 0.0) == (s > 0.0), 1, -1)
    return tl.where(fix, (sb + toward).to(tl.float64, bitcast=True), s)


@triton.jit
def _pow2_f32(e):
    """2^e as float32 for e clamped to the normal range [-126, 127] (bit pattern, exact)."""
    return ((tl.minimum(tl.maximum(e, -126), 127) + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _shift(x, s):
    """floor(x * 2^s) modulo 2^64 (int64 bits) for int64 x, s: left shifts wrap, right
    shifts are arithmetic (floor), shifts of 64 or more give 0 (left) or the sign (right)."""
    left = x.to(tl.uint64, bitcast=True) << tl.minimum(tl.maximum(s, 0), 63).to(tl.uint64)
    left = tl.where(s < 64, left, 0).to(tl.int64, bitcast=True)
    right = x >> tl.minimum(tl.maximum(-s, 0), 63)
    return tl.where(s >= 0, left, right)


@triton.jit
def mx_matmul_kernel(a_ptr, b_ptr, ea_ptr, eb_ptr, tra_ptr, trb_ptr, nanr_ptr, nanc_ptr, out_ptr, flag_ptr,
                     M, N, K, NB, NTM, NTN,
                     BLK: tl.constexpr, KP: tl.constexpr, LA: tl.constexpr, LB: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, GROUP: tl.constexpr, ACC: tl.constexpr,
                     W: tl.constexpr, SATURATE: tl.constexpr, HI: tl.constexpr, LO: tl.constexpr,
                     FRAC: tl.constexpr, WIDE: tl.constexpr, FAST: tl.constexpr, PBITS: tl.constexpr,
                     SHADOW: tl.constexpr = False):
    """a: (LA, M, K) int8 limbs, b: (LB, K, N) int8 limbs; ea (NB, M), eb (NB, N) int32 scale
    exponents, a's including the quanta (and frac_bits for fixed point); tra (NB, 2, NTM),
    trb (NB, 2, NTN): per-tile minima and maxima of ea, eb; nanr (M,), nanc (N,) int8: NaN
    scales. ACC: 0 exact, 1 fp32, 2 fixed (W bits, range [LO, HI], 2^-FRAC output scale).
    out: float64 / float32 (M, N); flag: int8 (M, N), exact (inexact sums) and SHADOW only."""
    pid = tl.program_id(0)
    in_group = GROUP * NTN
    first_m = (pid // in_group) * GROUP  # GROUP row tiles sweep the columns together (L2 reuse)
    gsize = tl.minimum(NTM - first_m, GROUP)
    pid_m = first_m + (pid % in_group) % gsize
    pid_n = (pid % in_group) // gsize
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
    elif W <= 32:
        acc = tl.zeros((BM, BN), tl.int32)
    else:
        acc = tl.zeros((BM, BN), tl.int64)
    if SHADOW:
        sh = tl.zeros((BM, BN), tl.float64)  # the 64-bit accumulator's twin (module doc); NaN: unsure
    for j in range(0, NB):
        kk = j * BLK + i
        mk = (i < BLK) & (kk < K)
        P32 = tl.zeros((BM, BN), tl.int32)
        P = tl.zeros((BM, BN), tl.int64)
        hi = tl.zeros((BM, BN), tl.int64)
        for la in tl.static_range(LA):
            a = tl.load(a_ptr + (la * M + rm[:, None]).to(tl.int64) * K + kk[None, :],
                        mask=mm[:, None] & mk[None, :], other=0)
            for lb in tl.static_range(LB):
                b = tl.load(b_ptr + (lb * K + kk[:, None]).to(tl.int64) * N + rn[None, :],
                            mask=mk[:, None] & mn[None, :], other=0)
                d = tl.dot(a, b, out_dtype=tl.int32)
                if LA * LB == 1:
                    P32 = d
                elif WIDE and la + lb >= 4:
                    hi += d.to(tl.int64) << (7 * (la + lb - 4))
                else:
                    P += d.to(tl.int64) << (7 * (la + lb))
        if WIDE:  # P = hi * 2^28 + lo, 0 <= lo < 2^28 (|hi| < 2^53: both exact float64)
            hi += P >> 28
            P = P & ((1 << 28) - 1)
        ea = tl.load(ea_ptr + j * M + rm, mask=mm, other=0)
        eb = tl.load(eb_ptr + j * N + rn, mask=mn, other=0)
        fast: tl.constexpr = False  # constexpr: a plain False would become an i1 tensor, the `if fast:`
        # below a runtime branch, and the int32 fast code would be compiled for W > 32 too (HI out of int32)
        if FAST:
            amin = tl.load(tra_ptr + (j * 2) * NTM + pid_m)
            amax = tl.load(tra_ptr + (j * 2 + 1) * NTM + pid_m)
            bmin = tl.load(trb_ptr + (j * 2) * NTN + pid_n)
            bmax = tl.load(trb_ptr + (j * 2 + 1) * NTN + pid_n)
            # P * 2^ea and P * 2^(ea + eb) exact float32 (|P| < 2^PBITS) for the whole tile
            fast = ((amin >= -126) & (amax + PBITS <= 128) & (bmin >= -126) & (bmax <= 127)
                    & (amin + bmin >= -149) & (amax + bmax + PBITS <= 128))
            if ACC == 2 and not SATURATE:
                fast = fast & (amax + bmax + PBITS <= 31)  # |floor| fits int32: wrap in int32
        if ACC == 1:
            if fast:
                # exact product: the FMA (or add) is the fused step's one RNE, signs of zero
                # and overflow to Inf included
                acc += (P32.to(tl.float32) * _pow2_f32(ea)[:, None]) * _pow2_f32(eb)[None, :]
            else:
                if LA * LB == 1:
                    P = P32.to(tl.int64)  # only here: the fast branch keeps int32 registers
                E = (ea[:, None] + eb[None, :]).to(tl.int64)
                x = acc.to(tl.float64)
                if WIDE:
                    uh, ul = _two_sum(hi.to(tl.float64) * pow2(E + 28), P.to(tl.float64) * pow2(E))
                    th, tl_ = _two_sum(x, uh)
                    v, ve = _two_sum(tl_, ul)
                    z, ze = _two_sum(th, _round_odd(v, ve))
                    s = _round_odd(z, ze)
                    s = tl.where(tl.abs(x) == float("inf"), x, s)  # Inf stays (finite terms)
                else:
                    t = P.to(tl.float64) * pow2(E) + 0.0  # exact: |P| < 2^53, |E| < 900
                    s, e = _two_sum(x, t)
                    s = _round_odd(s, e)
                acc = s.to(tl.float32)
        elif ACC == 0:
            if LA * LB == 1:
                P = P32.to(tl.int64)
            E = (ea[:, None] + eb[None, :]).to(tl.int64)
            t = P.to(tl.float64) * pow2(E) + 0.0  # exact (WIDE: the low word)
            if WIDE:
                t, r = _two_sum(hi.to(tl.float64) * pow2(E + 28), t)
                inexact = inexact | (r != 0.0).to(tl.int32)
            s, e = _two_sum(acc, t)
            acc = s
            inexact = inexact | (e != 0.0).to(tl.int32)
        else:
            if fast:
                # names of their own: Triton merges the names both branches of a runtime `if`
                # assign, and the general branch's are int64/float64 (compile error otherwise)
                v32 = tl.floor((P32.to(tl.float32) * _pow2_f32(ea)[:, None]) * _pow2_f32(eb)[None, :])
                if SHADOW:  # v32: the exact floor (an integer float32, finite by the proof)
                    sh = sh + v32.to(tl.float64)
                    sh = tl.where(tl.abs(sh) >= TWO53, float("nan"), sh)  # unsure from here on (NaN stays)
                if SATURATE:
                    top: tl.constexpr = 2.0 ** (W - 1)
                    al32 = tl.where(v32 >= top, HI, tl.maximum(v32, -top).to(tl.int32))
                    s32 = acc + al32  # int32; W = 32 may wrap: detected below
                    if W == 32:
                        ovf32 = ((acc ^ s32) & (al32 ^ s32)) < 0
                        s32 = tl.where(ovf32, tl.where(al32 > 0, HI, LO), s32)
                    acc = tl.minimum(tl.maximum(s32, LO), HI)
                else:
                    s32 = acc + v32.to(tl.int32)  # modulo 2^32, then the low W bits sign-extended
                    if W < 32:
                        s32 = (s32 << (32 - W)) >> (32 - W)
                    acc = s32
            else:
                if LA * LB == 1:
                    P = P32.to(tl.int64)
                E = (ea[:, None] + eb[None, :]).to(tl.int64)
                if WIDE:  # floor(P 2^E) mod 2^64; |hi| 2^28 + lo keeps floor exact per word
                    al = (_shift(hi, E + 28).to(tl.uint64, bitcast=True)
                          + _shift(P, E).to(tl.uint64, bitcast=True)).to(tl.int64, bitcast=True)
                    pf = hi.to(tl.float64) * 268435456.0 + P.to(tl.float64)  # RN(P): sign, size
                else:
                    al = _shift(P, E)
                    pf = P.to(tl.float64)
                v = pf * pow2(tl.minimum(tl.maximum(E, -1000), 1000))  # RN(P) 2^E: sign and size
                if SHADOW:  # |RN(P) 2^E| < 2^52 implies |P 2^E| < 2^52: al is then the exact floor
                    ok = tl.abs(v) < TWO52
                    sh = sh + tl.where(ok, al.to(tl.float64), float("nan"))
                    sh = tl.where(tl.abs(sh) >= TWO53, float("nan"), sh)
                a64 = acc.to(tl.int64)
                if SATURATE:
                    big = ((tl.abs(v) >= 18446744073709551616.0)
                           | ((tl.abs(v) >= 2305843009213693952.0) & ((al < 0) != (v < 0.0))))
                    al = tl.where(big, tl.where(v > 0.0, HI, LO), tl.minimum(tl.maximum(al, LO), HI))
                    s = (a64.to(tl.uint64, bitcast=True) + al.to(tl.uint64, bitcast=True)).to(tl.int64, bitcast=True)
                    ovf = ((a64 ^ s) & (al ^ s)) < 0  # int64 overflow (W = 64 only)
                    s = tl.where(ovf, tl.where(al > 0, HI, LO), s)
                    s = tl.minimum(tl.maximum(s, LO), HI)
                else:
                    SX: tl.constexpr = 64 - W
                    u = a64.to(tl.uint64, bitcast=True) + al.to(tl.uint64, bitcast=True)
                    s = (u << SX).to(tl.int64, bitcast=True) >> SX  # sign-extend the low W bits
                acc = s.to(acc.dtype)
    mo = mm[:, None] & mn[None, :]
    off = rm[:, None].to(tl.int64) * N + rn[None, :]
    if ACC == 0:
        tl.store(flag_ptr + off, inexact.to(tl.int8), mask=mo)
    if ACC == 2:
        res = acc.to(tl.float64) * pow2(tl.full((BM, BN), -FRAC, tl.int64))  # RNE, then exact
    else:
        res = acc
    nan = (tl.load(nanr_ptr + rm, mask=mm, other=0)[:, None] | tl.load(nanc_ptr + rn, mask=mn, other=0)[None, :]) != 0
    tl.store(out_ptr + off, tl.where(nan, float("nan"), res), mask=mo)
    if SHADOW:  # acc's integer against the twin: exact in float64 where sure (|sh| < 2^53)
        ovf = tl.where(sh != sh, 2, (acc.to(tl.float64) != sh).to(tl.int32))
        tl.store(flag_ptr + off, tl.where(nan, 0, ovf).to(tl.int8), mask=mo)
