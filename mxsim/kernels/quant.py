"""numba quantization kernels (CPU). Semantics: docs/mxsim_semantics.md.

Every kernel takes a C-contiguous 2-D array ``x`` of shape (R, L) whose last axis is the
blocked one, so each block is a contiguous run of a row. ``inner`` is the product of the
original dimensions after the blocked axis; it recovers an element's flat C-order index in
the original tensor, which seeds stochastic rounding.

The block scale's encoding comes from the format (``fmt.scale``): ``smin``/``smax`` are the
finite scale exponents, ``sbias`` the code offset and ``snan`` the NaN code.

Outputs are written in place: ``scales`` (R, n_blocks) uint8 always, ``codes`` (R, L)
only when ``want_codes`` and ``deq`` (R, L) only when ``want_deq`` (pass (1, 1) dummies
otherwise), so fake quantization never touches a codes array.
"""

import functools
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..formats import ScaleRule
from ..rounding import Rounding

# the kernels branch on ints (numba freezes these globals as constants); the modes are mxsim.Rounding
RN_EVEN = Rounding.NEAREST_EVEN.kernel_id
RN_AWAY = Rounding.NEAREST_AWAY.kernel_id
RN_FLOOR = Rounding.FLOOR.kernel_id
RN_STOCH = Rounding.STOCHASTIC.kernel_id
SR_FLOOR = ScaleRule.FLOOR.kernel_id
SR_CEIL = ScaleRule.CEIL.kernel_id
SR_EVEN = ScaleRule.EVEN.kernel_id
SR_RCEIL = ScaleRule.RCEIL.kernel_id
F32_EXP_BIAS = 127  # IEEE binary32 exponent bias (reading float32 bit patterns; not a scale bias)

# uint64 constants: numba would promote a uint64 mixed with a Python int to float64.
_M32 = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0x7FEB352D)
_C2 = np.uint64(0x846CA68B)
_S8, _S15, _S16 = np.uint64(8), np.uint64(15), np.uint64(16)
_GOLDEN = np.uint64(0x9E3779B9)


@njit(cache=True, inline="always")
def lowbias32(h):
    h = h ^ (h >> _S16)
    h = (h * _C1) & _M32
    h = h ^ (h >> _S15)
    h = (h * _C2) & _M32
    h = h ^ (h >> _S16)
    return h


@njit(cache=True)
def seed_hash(seed):
    """lowbias32(seed ^ 0x9E3779B9), hoisted out of the per-element hash."""
    return lowbias32((np.uint64(seed) & _M32) ^ _GOLDEN)


@njit(cache=True, inline="always")
def stoch_u(hseed, idx):
    h = lowbias32(hseed ^ (np.uint64(idx) & _M32))
    return float(h >> _S8) * 2.0**-24


@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose IEEE bit pattern is the int64 ``bits`` (an LLVM bitcast, which
    vectorizes; math.ldexp is a libm call per element)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _f64_bits(typingctx, value):
    """The int64 IEEE bit pattern of the float64 ``value`` (an LLVM bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def f32_from_bits(typingctx, bits):
    """The float32 whose IEEE bit pattern is the int32 ``bits`` (an LLVM bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def f32_bits(typingctx, value):
    """The int32 IEEE bit pattern of the float32 ``value`` (an LLVM bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


MAX_LANES = 16  # int32 lanes of _abs_max_bits_16: one AVX-512 register, two AVX2 ones


@intrinsic
def _abs_max_bits_16(typingctx, row, start):
    """The largest |x| bit pattern of row[start:start + 16] (``row`` a 1-D C int32 array, the
    caller keeps start + 16 <= row.size: no bounds check): one vector load, a mask and
    llvm.vector.reduce.smax. block_max_bits's loop is 16 iterations for a block of 16, shorter
    than the loop vectorizer's step, so it ran scalar there (20 ns a block on the Xeon VM)."""
    if not (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C" and row.dtype == types.int32
            and isinstance(start, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i32 = ir.IntType(32)
        vt = ir.VectorType(i32, MAX_LANES)
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), vt.as_pointer())
        v = builder.and_(builder.load(ptr, align=4), ir.Constant(vt, [0x7FFFFFFF] * MAX_LANES))
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [vt]),
                                            f"llvm.vector.reduce.smax.v{MAX_LANES}i32")
        return builder.call(fn, [v])
    return types.int32(row, start), codegen


@njit(cache=True, inline="always")
def pow2(e):
    """2.0**e, exact, for an integer -1022 <= e <= 1023 (a normal float64)."""
    return _f64_from_bits(np.int64(e + 1023) << 52)


F32_ABS = np.int32(0x7FFFFFFF)
F32_INF_BITS = 0x7F800000  # |x| bits >= this: NaN or +-Inf
F32_MIN_NORMAL_BITS = 0x00800000


@njit(cache=True, inline="always")
def chunk_blocks(k):
    """Blocks per parallel work item (about 1024 elements): the prange index is split into
    (row, first block) by one integer division per item instead of one per block, which
    cost about as much as the block's arithmetic for blocks of 16.

    The kernels then index each block through its own slices (``x[r, j0:j1]``, indices from
    0): numba wraps negative indices, and for ``x[r, j0 + j]`` LLVM cannot prove j0 + j >= 0,
    so the select made every vector load and store a gather/scatter (4-5x slower on Zen 4)."""
    return max(1, 1024 // k)


@njit(cache=True, inline="always")
def block_max_bits(xbs):
    """The largest |x| bit pattern (int32) of the float32 bits ``xbs`` (one block's slice):
    |x| orders like its bits, so this is amax's pattern, and >= F32_INF_BITS flags a NaN/Inf
    in the block. int32 (explicitly narrowed; numba would widen to int64) because AVX2 has a
    packed int32 max only. The per-block prologue of every float32 kernel (MX, NVFP4, BlockFP)."""
    m = np.int32(0)
    for j in range(xbs.size):
        m = np.int32(max(np.int32(xbs[j] & F32_ABS), m))
    return m


@njit(cache=True, inline="always")
def row_block_max_bits(xr, j0, j1):
    """block_max_bits(xr[j0:j1]) of the int32 row ``xr``, 16 lanes at a time (_abs_max_bits_16),
    the rest (a block that is not a multiple of 16) by block_max_bits."""
    if j1 - j0 == MAX_LANES:  # NVFP4's and BlockFP4/16's blocks: one load, no loop
        return _abs_max_bits_16(xr, j0)
    m = np.int32(0)
    j = j0
    while j + MAX_LANES <= j1:
        m = np.int32(max(m, _abs_max_bits_16(xr, j)))
        j += MAX_LANES
    if j < j1:
        m = np.int32(max(m, block_max_bits(xr[j:j1])))
    return m


@njit(cache=True, inline="always")
def f32_value_of_bits(m):
    """The (non-negative, finite) float32 value of |x| bits m, as an exact float64."""
    if m >= F32_MIN_NORMAL_BITS:
        return pow2(int(m >> 23) - F32_EXP_BIAS) * (1.0 + (m & 0x7FFFFF) * 2.0**-23)
    return m * 2.0**-149


@njit(cache=True, inline="always")
def block_rule_exponent(m, srule, emax, mbits, max_pos, smin, smax):
    """rule_exponent for a float32 block whose amax has bits m (0 < m < F32_INF_BITS), from
    bit patterns instead of frexp (a libm call per block, as costly as the block's elements):
    floor straight from the exponent field (a subnormal amax has floor(log2) <= -127); the
    other rules from the float64 bit pattern 2^E (1 + F 2^-52) of amax (every float32 is a
    normal float64), or of rceil's d: ceil(log2) = E + (F != 0) (frexp's mantissa is 0.5
    exactly when F = 0), and even's "significand >= 2 - 2^-(mbits+1)" is F >= 2^52 -
    2^(51-mbits), the same comparison on the exact integer field."""
    if srule == SR_FLOOR:
        fl = int(m >> 23) - F32_EXP_BIAS if m >= F32_MIN_NORMAL_BITS else floor_log2(float(m)) - 149
        return min(max(fl - emax, smin), smax)
    if m >= F32_MIN_NORMAL_BITS and srule != SR_RCEIL and mbits <= 22:
        # a normal amax: the same fields in its float32 pattern (F = mant 2^29)
        e = int(m >> 23) - F32_EXP_BIAS
        mant = m & 0x7FFFFF
        if srule == SR_EVEN:
            s = e - emax + int(mant >= (1 << 23) - (1 << (22 - mbits)))
        else:
            s = e - emax + int(mant != 0)
        return min(max(s, smin), smax)
    a = f32_value_of_bits(m)
    if srule == SR_RCEIL and m >= F32_MIN_NORMAL_BITS:
        # without the division: for k >= -126, d = fl32(amax / max_pos) <= 2^k iff amax / max_pos
        # <= 2^k (1 + 2^-24) (the float32 above 2^k is 2^k (1 + 2^-23); the tie rounds to 2^k,
        # whose significand is even), i.e. amax <= T 2^k with T = max_pos (1 + 2^-24), exact in
        # float64 (max_pos has at most 8 significant bits). With amax = 2^ea (1 + fa) and T =
        # 2^et (1 + ft), amax / T lies in (2^(k0 - 1), 2^(k0 + 1)), k0 = ea - et, so the smallest
        # such k is k0 or k0 + 1; where that k (or k - 1) leaves [-126, 126], the division below.
        tt = max_pos + max_pos * 2.0**-24
        k0 = int(m >> 23) - F32_EXP_BIAS - (int(_f64_bits(tt) >> 52) - 1023)
        if -1000 < k0 < 1000:
            kk = k0 + int(a > tt * pow2(k0))
            if -125 <= kk <= 126:
                return min(max(kk, smin), smax)
    if srule == SR_RCEIL:
        a = float(np.float32(a / max_pos))  # the float32 division (double rounding is exact here)
        if a == 0.0:
            return smin
    if not a < np.inf or mbits > 51:  # an overflowing d (max_pos < 1) or an odd format: the plain rule
        return rule_exponent(f32_value_of_bits(m), srule, emax, mbits, max_pos, True, smin, smax)
    bits = _f64_bits(a)
    e = int(bits >> 52) - 1023
    frac = bits & ((np.int64(1) << 52) - 1)
    if srule == SR_EVEN:
        s = e - emax + int(frac >= (np.int64(1) << 52) - (np.int64(1) << (51 - mbits)))
    elif srule == SR_CEIL:
        s = e - emax + int(frac != 0)
    else:  # rceil: s = ceil(log2 d)
        s = e + int(frac != 0)
    return min(max(s, smin), smax)


@njit(cache=True, inline="always")
def round_mag(t, mode, u):
    """Round a non-negative float64 t to an integer-valued float64 (t < 2^52 or integral)."""
    f = np.floor(t)  # np, not math: math.floor returns an int64 in numba and overflows
    d = t - f  # exact: t and f share the binade or f is 0
    if mode == RN_EVEN:
        if d > 0.5 or (d == 0.5 and (f * 0.5) != np.floor(f * 0.5)):
            return f + 1.0
        return f
    if mode == RN_AWAY:
        return f + 1.0 if d >= 0.5 else f
    if mode == RN_FLOOR:
        return f
    return f + 1.0 if (d > 0.0 and d >= 1.0 - u) else f


@njit(cache=True, inline="always")
def flat_index(r, j, L, inner):
    return (r // inner) * L * inner + j * inner + (r % inner)


@njit(cache=True, inline="always")
def block_amax(x, r, j0, j1):
    """(amax, finite) of x[r, j0:j1]; finite is False if any element is NaN or +-Inf."""
    amax = 0.0
    finite = True
    for j in range(j0, j1):
        a = abs(float(x[r, j]))
        if not a < np.inf:
            finite = False
        elif a > amax:
            amax = a
    return amax, finite


@njit(cache=True, inline="always")
def floor_log2(a):
    """floor(log2(a)) for a > 0, exact (from the binary exponent)."""
    return math.frexp(a)[1] - 1


@njit(cache=True, inline="always")
def ceil_log2(a):
    """ceil(log2(a)) for a > 0, exact: frexp's mantissa is 0.5 exactly for powers of two."""
    m, e = math.frexp(a)
    return e - 1 if m == 0.5 else e


@njit(cache=True, inline="always")
def rule_exponent(amax, rule, emax, mbits, max_pos, f32_input, smin, smax):
    """The shared exponent of a block with finite amax > 0 under a scale rule, clamped
    (docs/mxsim_semantics.md, "Scale rules")."""
    if rule == SR_CEIL:
        s = ceil_log2(amax) - emax
    elif rule == SR_EVEN:
        m, e = math.frexp(amax)  # amax = 2m * 2^(e-1), 2m in [1, 2)
        s = e - 1 - emax
        if 2.0 * m >= 2.0 - math.ldexp(1.0, -(mbits + 1)):  # rounds up into the next binade
            s += 1
    elif rule == SR_RCEIL:
        d = amax / max_pos
        if f32_input:
            d = float(np.float32(d))  # the float32 division (double rounding is exact here)
        s = smin if d == 0.0 else ceil_log2(d)
    else:
        s = floor_log2(amax) - emax
    return min(max(s, smin), smax)


@njit(cache=True, inline="always")
def fill_block(codes, deq, r, j0, j1, value, want_codes, want_deq):
    """Write code 0 and the dequantized ``value`` for a whole block (NaN or all-zero blocks)."""
    for j in range(j0, j1):
        if want_codes:
            codes[r, j] = 0
        if want_deq:
            deq[r, j] = value


@njit(cache=True, parallel=True)
def mxint_kernel(x, k, bits, smin, smax, sbias, snan, srule, f32_input, mode, seed, inner, want_codes, want_deq,
                 codes, scales, deq):
    R, L = x.shape
    nb = (L + k - 1) // k
    q = -(bits - 2)
    maxc = float(2 ** (bits - 1) - 1)
    max_pos = math.ldexp(maxc, q)
    hseed = seed_hash(seed)
    for t in prange(R * nb):
        r = t // nb
        b = t - r * nb
        j0 = b * k
        j1 = min(j0 + k, L)
        amax, finite = block_amax(x, r, j0, j1)
        if not finite:
            scales[r, b] = snan
            fill_block(codes, deq, r, j0, j1, np.nan, want_codes, want_deq)
            continue
        if amax == 0.0:
            s = smin
        else:
            s = rule_exponent(amax, srule, 0, bits - 2, max_pos, f32_input, smin, smax)
        scales[r, b] = s + sbias
        down = math.ldexp(1.0, -(s + q))
        up = math.ldexp(1.0, s + q)
        for j in range(j0, j1):
            v = float(x[r, j]) * down
            tmag = min(abs(v), maxc)  # clamping first is equivalent: maxc is an integer
            u = stoch_u(hseed, flat_index(r, j, L, inner)) if mode == RN_STOCH else 0.0
            c = round_mag(tmag, mode, u)
            if c > maxc:
                c = maxc
            if v < 0.0:
                c = -c
            if want_codes:
                codes[r, j] = np.int8(c)
            if want_deq:
                # c == 0 gives +0.0 (contract), hence the explicit 0.0 + for -0 * up
                deq[r, j] = c * up + 0.0


@njit(cache=True, parallel=True)
def mxfp_kernel(x, k, ebits, mbits, bias, max_normal, emax_elem, smin, smax, sbias, snan, srule, f32_input, mode,
                seed, inner, want_codes, want_deq, codes, scales, deq):
    R, L = x.shape
    nb = (L + k - 1) // k
    emin = 1 - bias
    qlog = emin - mbits
    sign_bit = 1 << (ebits + mbits)
    hseed = seed_hash(seed)
    for t in prange(R * nb):
        r = t // nb
        b = t - r * nb
        j0 = b * k
        j1 = min(j0 + k, L)
        amax, finite = block_amax(x, r, j0, j1)
        if not finite:
            scales[r, b] = snan
            fill_block(codes, deq, r, j0, j1, np.nan, want_codes, want_deq)
            continue
        if amax == 0.0:
            scales[r, b] = smin + sbias
            fill_block(codes, deq, r, j0, j1, 0.0, want_codes, want_deq)
            continue
        s = rule_exponent(amax, srule, emax_elem, mbits, max_normal, f32_input, smin, smax)
        scales[r, b] = s + sbias
        down = math.ldexp(1.0, -s)
        up = math.ldexp(1.0, s)
        for j in range(j0, j1):
            xv = float(x[r, j])
            neg = xv < 0.0 or (xv == 0.0 and math.copysign(1.0, xv) < 0.0)
            av = abs(xv) * down
            mag = 0.0
            code = 0
            if av > 0.0:
                e = max(floor_log2(av), emin)
                u = stoch_u(hseed, flat_index(r, j, L, inner)) if mode == RN_STOCH else 0.0
                n = round_mag(math.ldexp(av, mbits - e), mode, u)
                mag = math.ldexp(n, e - mbits)
                if mag > max_normal:
                    mag = max_normal
                if mag > 0.0:
                    nint = int(math.ldexp(mag, -qlog))
                    if nint < (1 << mbits):
                        code = nint  # subnormal: biased exponent 0
                    else:
                        e2 = floor_log2(mag)
                        mant = int(math.ldexp(mag, mbits - e2)) - (1 << mbits)
                        code = ((e2 + bias) << mbits) | mant
            if neg:
                code |= sign_bit
                mag = -mag
            if want_codes:
                codes[r, j] = np.uint8(code)
            if want_deq:
                deq[r, j] = mag * up


@njit(cache=True)
def bfp_exponent(amax):
    """ceil(fl32(log2(amax))) for a positive finite float32 amax.

    log2 in float64 rounded once to float32 agrees with torch.log2's float32 result on the
    ceiling for every float32 near a power of two (checked in tests/mxsim/test_api.py);
    powers of two give exactly k, so only the quirk above 2^k (|k| >= 4) needs the float32
    rounding at all.
    """
    return int(math.ceil(np.float32(math.log2(float(amax)))))


@njit(cache=True, inline="always")
def _bfp_elements(xs, split, down_a, up_a, down_b, up_b, maxm, passthrough, mode, hseed, i0, inner, want_codes,
                  want_deq, cs, ds):
    """One or two BlockFP blocks, the slices xs, cs, ds (i0: the flat index of their first
    element; elements before ``split`` take block a's powers of two, the rest block b's, a
    select); the authors' arithmetic: float32 |x| + 1e-9, the sign of x + 1e-9."""
    eps9 = np.float32(1e-9)
    tiny = np.float32(1e-8)
    for j in range(xs.size):
        xv = xs[j]
        hi = j >= split
        down = down_b if hi else down_a
        up = up_b if hi else up_a
        v = np.float32(abs(xv) + eps9)  # float32 add, as the authors' code
        # clamping first is equivalent (maxm is an integer) and keeps the magic-number RNE exact
        tq = min(float(v) * down, maxm)
        if mode == RN_EVEN:
            m = (tq + _MAGIC) - _MAGIC
        else:
            u = stoch_u(hseed, i0 + j * inner) if mode == RN_STOCH else 0.0
            m = round_mag(tq, mode, u)
        sx = np.float32(xv + eps9)
        sgn = np.float64(sx > 0.0) - np.float64(sx < 0.0)  # selects, not branches: the loop vectorizes
        if want_codes:
            cs[j] = np.int8(sgn * m)
        if want_deq:
            val = 0.0 if sgn == 0.0 else sgn * m * up  # -0.0 when sgn = -1 and m = 0, as torch
            ds[j] = xv if (passthrough & (abs(xv) <= tiny)) else val


_F32_MAGIC = np.float32(1.5 * 2.0**23)  # (t + M) - M rounds float32 |t| < 2^22 to nearest even
_F32_HALF = np.float32(0.5)
_F32_ZERO = np.float32(0.0)
F32_NORMAL_EXP = 126  # 2^e is a normal float32 for |e| <= 126


@njit(cache=True, inline="always")
def round_mag_f32(t, mode):
    """round_mag for a non-negative float32 t < 2^22 and the deterministic modes, in float32:
    the magic number rounds to nearest even; floor(t) and t - floor(t) are exact, so
    nearest_away is floor(t) + (t - floor(t) >= 0.5) (not floor(t + 0.5): that sum can round
    up to the next integer)."""
    if mode == RN_EVEN:
        return (t + _F32_MAGIC) - _F32_MAGIC
    f = np.floor(t)
    return f + np.float32(t - f >= _F32_HALF) if mode == RN_AWAY else f


@njit(cache=True, inline="always")
def _bfp_elements_f32(xs, split, down_a, up_a, down_b, up_b, maxm, passthrough, mode, want_codes, want_deq, cs, ds):
    """_bfp_elements in float32 (twice the lanes of float64) for the deterministic modes,
    where the block's powers of two are normal float32 (down_*, up_*: float32): v * down is
    then exact, or a float32 subnormal far below 0.5 that rounds to 0 in every mode as the
    exact value does; m * up is exact (m <= 127 an integer, the product normal);
    round_mag_f32 rounds |tq| <= maxm < 2^22 exactly."""
    eps9 = np.float32(1e-9)
    tiny = np.float32(1e-8)
    for j in range(xs.size):
        xv = xs[j]
        hi = j >= split
        down = down_b if hi else down_a
        up = up_b if hi else up_a
        m = round_mag_f32(min(np.float32(abs(xv) + eps9) * down, maxm), mode)
        sx = np.float32(xv + eps9)
        sgn = np.float32(sx > _F32_ZERO) - np.float32(sx < _F32_ZERO)
        if want_codes:
            cs[j] = np.int8(sgn * m)
        if want_deq:
            val = _F32_ZERO if sgn == _F32_ZERO else sgn * m * up  # -0.0 when sgn = -1 and m = 0, as torch
            ds[j] = xv if (passthrough & (abs(xv) <= tiny)) else val


@njit(cache=True, inline="always")
def _bfp_block(x, r, b, j0, j1, split, ma, mb, pair, width, exp_min, exp_max, bias, passthrough, mode, hseed, idx0,
               inner, want_codes, want_deq, codes, scales, deq):
    """Block b (x[r, j0:j1], amax bits ma) or, with ``pair``, blocks b (x[r, j0:j0 + split],
    ma) and b + 1 (the rest, mb) in one element loop: blocks of 16 are shorter than the
    vectorized loop's step, which then never runs."""
    e = min(max(bfp_exponent_of_bits(ma), exp_min), exp_max)
    e_a = e
    scales[r, b] = e + bias
    down_a = pow2(width - 1 - e)
    up_a = pow2(e - (width - 1))
    down_b, up_b = down_a, up_a
    if pair:
        e = min(max(bfp_exponent_of_bits(mb), exp_min), exp_max)
        scales[r, b + 1] = e + bias
        down_b = pow2(width - 1 - e)
        up_b = pow2(e - (width - 1))
    maxm = float(2 ** (width - 1) - 1)
    # the block's slices, indexed from 0 (chunk_blocks: no gathers)
    xs = x[r, j0:j1]
    cs = codes[r, j0:j1]
    ds = deq[r, j0:j1]
    i0 = idx0 + j0 * inner
    # one loop per mode, so that each compiles without the mode branch; the deterministic modes in
    # float32 where both blocks' powers of two are normal float32 (all but blocks near 2^-127)
    if (mode != RN_STOCH and abs(e_a - (width - 1)) <= F32_NORMAL_EXP and abs(e - (width - 1)) <= F32_NORMAL_EXP):
        fd_a, fu_a, fd_b, fu_b = np.float32(down_a), np.float32(up_a), np.float32(down_b), np.float32(up_b)
        fm = np.float32(maxm)
        if mode == RN_EVEN:
            _bfp_elements_f32(xs, split, fd_a, fu_a, fd_b, fu_b, fm, passthrough, RN_EVEN, want_codes, want_deq, cs, ds)
        elif mode == RN_AWAY:
            _bfp_elements_f32(xs, split, fd_a, fu_a, fd_b, fu_b, fm, passthrough, RN_AWAY, want_codes, want_deq, cs, ds)
        else:
            _bfp_elements_f32(xs, split, fd_a, fu_a, fd_b, fu_b, fm, passthrough, RN_FLOOR, want_codes, want_deq, cs,
                              ds)
    elif mode == RN_EVEN:
        _bfp_elements(xs, split, down_a, up_a, down_b, up_b, maxm, passthrough, RN_EVEN, hseed, i0, inner,
                      want_codes, want_deq, cs, ds)
    elif mode == RN_AWAY:
        _bfp_elements(xs, split, down_a, up_a, down_b, up_b, maxm, passthrough, RN_AWAY, hseed, i0, inner,
                      want_codes, want_deq, cs, ds)
    elif mode == RN_FLOOR:
        _bfp_elements(xs, split, down_a, up_a, down_b, up_b, maxm, passthrough, RN_FLOOR, hseed, i0, inner,
                      want_codes, want_deq, cs, ds)
    else:
        _bfp_elements(xs, split, down_a, up_a, down_b, up_b, maxm, passthrough, RN_STOCH, hseed, i0, inner,
                      want_codes, want_deq, cs, ds)


BFP_LOG2_FREE = 1 << 13  # mantissa fields from here up give ceil(fl32(log2)) = E + 1 directly


@njit(cache=True, inline="always")
def bfp_exponent_of_bits(m):
    """bfp_exponent of the positive finite float32 with bits m, without log2 where the answer
    is plain: amax = 2^E (1 + f). f = 0 gives E. For f >= 2^-10, log2(1 + f) > 2^-9.6 is far
    above half a float32 ulp of E + log2(1 + f) (at most 2^-17 for |E| <= 255), so the float32
    log2 stays above E and the ceiling is E + 1. Only f < 2^-10 (and subnormal amax) can hit
    torch's float32 quirk (the log2 rounding down to E) and take math.log2."""
    mant = m & 0x7FFFFF
    if m < F32_MIN_NORMAL_BITS or (mant != 0 and mant < BFP_LOG2_FREE):
        return bfp_exponent(np.float32(f32_value_of_bits(m)))
    e = int(m >> 23) - F32_EXP_BIAS
    return e if mant == 0 else e + 1


@njit(cache=True, parallel=True)
def bfp_kernel(x, xbits, k, width, exp_min, exp_max, nan_code, bias, passthrough, mode, seed, inner,
               want_codes, want_deq, codes, scales, deq):
    """BlockFP on float32 x (the api rounds float64 input to float32 first), ``xbits`` its
    int32 view. One pass over x: every block with a nonzero finite amax is quantized at
    once and its amax kept; the tensor-wide replacement for zero block maxima (contract step
    2: the smallest nonzero block amax) is reduced from those, and only the all-zero blocks,
    whose result depends on it, are done afterwards."""
    R, L = x.shape
    nb = (L + k - 1) // k
    hseed = seed_hash(seed)
    tiny = np.float32(1e-8)
    amax_bits = np.empty(R * nb, np.int32)  # |amax| bit patterns (they order like the values)
    G = chunk_blocks(k)
    nc = (nb + G - 1) // G
    for t in prange(R * nc):  # work items of G blocks of one row: one division each
        r = t // nc
        b0 = (t - r * nc) * G
        idx0 = (r // inner) * L * inner + (r % inner)  # flat_index(r, j) = idx0 + j * inner
        xr = xbits[r]
        b = b0
        be = min(b0 + G, nb)
        while b < be:
            j0 = b * k
            j1 = min(j0 + k, L)
            m = row_block_max_bits(xr, j0, j1)
            amax_bits[r * nb + b] = m
            if m >= F32_INF_BITS:
                scales[r, b] = nan_code
                for j in range(j0, j1):
                    if want_codes:
                        codes[r, j] = 0
                    if want_deq:
                        deq[r, j] = x[r, j] if (passthrough and abs(x[r, j]) <= tiny) else np.nan
                b += 1
                continue
            if m == 0:  # done after the loop
                b += 1
                continue
            # pair it with the next block when that one is nonzero and finite too (else the next
            # iteration takes that block on its own)
            pair = False
            m2 = m
            jend = j1
            if b + 1 < be:
                j2 = min(j1 + k, L)
                m2 = row_block_max_bits(xr, j1, j2)
                if 0 < m2 < F32_INF_BITS:
                    amax_bits[r * nb + b + 1] = m2
                    pair = True
                    jend = j2
            _bfp_block(x, r, b, j0, jend, j1 - j0, m, m2, pair, width, exp_min, exp_max, bias, passthrough, mode,
                       hseed, idx0, inner, want_codes, want_deq, codes, scales, deq)
            b += 2 if pair else 1
    # the smallest nonzero finite block amax, 1.0 if there is none (NaN/Inf blocks hold bits
    # >= F32_INF_BITS, which never lower it)
    repl = np.int32(F32_INF_BITS)
    for t in range(R * nb):
        if amax_bits[t] > 0:
            repl = np.int32(min(repl, amax_bits[t]))
    if repl == F32_INF_BITS:
        repl = np.int32(0x3F800000)
    for t in prange(R * nb):
        if amax_bits[t] == 0:
            r = t // nb
            b = t - r * nb
            j0 = b * k
            idx0 = (r // inner) * L * inner + (r % inner)
            j1 = min(j0 + k, L)
            _bfp_block(x, r, b, j0, j1, j1 - j0, repl, repl, False, width, exp_min, exp_max, bias, passthrough, mode,
                       hseed, idx0, inner, want_codes, want_deq, codes, scales, deq)


_MAGIC = 6755399441055744.0  # 1.5 * 2^52: (t + M) - M rounds |t| < 2^51 to nearest even


# The float32 MXINT/MXFP kernels are built per (want_codes, want_deq) by a make function, cached
# (functools.cache), whose kernel takes the two from its closure: numba freezes closure variables
# as constants, so each kernel holds only the stores of the outputs it writes. The rounding mode
# stays a runtime argument, dispatched once per block to element loops compiled with it constant:
# keying on the mode as well compiled 2.4x longer on a fresh cache (16 uses of MXINT8 and MXFP4:
# 104 s vs 43 s on the Intel Xeon VM) for no measurable speed. numba caches each closure apart
# (its index key hashes the closure's values), so cache=True holds.
def _make_mxint_f32(want_codes, want_deq):
    @njit(cache=True, parallel=True)
    def kernel(x, xbits, k, bits, smin, smax, sbias, snan, srule, mode, seed, inner, codes, scales, deq):
        R, L = x.shape
        nb = (L + k - 1) // k
        q = -(bits - 2)
        maxc = float(2 ** (bits - 1) - 1)
        max_pos = math.ldexp(maxc, q)
        hseed = seed_hash(seed)
        G = chunk_blocks(k)
        nc = (nb + G - 1) // G
        for t in prange(R * nc):  # work items of G blocks of one row: one division each
            r = t // nc
            b0 = (t - r * nc) * G
            idx0 = (r // inner) * L * inner + (r % inner)  # flat_index(r, j) = idx0 + j * inner
            for b in range(b0, min(b0 + G, nb)):
                j0 = b * k
                j1 = min(j0 + k, L)
                m = block_max_bits(xbits[r, j0:j1])
                if m >= F32_INF_BITS:
                    scales[r, b] = snan
                    fill_block(codes, deq, r, j0, j1, np.nan, want_codes, want_deq)
                    continue
                # a zero block takes smin (contract); a nonzero one its rule's exponent (emax 0)
                s = smin if m == 0 else block_rule_exponent(m, srule, 0, bits - 2, max_pos, smin, smax)
                scales[r, b] = s + sbias
                # the block's slices, indexed from 0 (chunk_blocks: no gathers)
                xs, cs, ds = x[r, j0:j1], codes[r, j0:j1], deq[r, j0:j1]
                down, up, i0 = pow2(-(s + q)), pow2(s + q), idx0 + j0 * inner
                # one call per rounding, each with its mode a constant: the loops compile without the branch;
                # the deterministic ones in float32 where 2^+-(s + q) are normal float32
                if mode != RN_STOCH and abs(s + q) <= F32_NORMAL_EXP:
                    fd, fu, fm = np.float32(down), np.float32(up), np.float32(maxc)
                    if mode == RN_EVEN:
                        _mxint_f32_elements_f32(xs, fd, fu, fm, RN_EVEN, want_codes, want_deq, cs, ds)
                    elif mode == RN_AWAY:
                        _mxint_f32_elements_f32(xs, fd, fu, fm, RN_AWAY, want_codes, want_deq, cs, ds)
                    else:
                        _mxint_f32_elements_f32(xs, fd, fu, fm, RN_FLOOR, want_codes, want_deq, cs, ds)
                elif mode == RN_EVEN:
                    _mxint_f32_elements(xs, down, up, maxc, RN_EVEN, hseed, i0, inner, want_codes, want_deq, cs, ds)
                elif mode == RN_AWAY:
                    _mxint_f32_elements(xs, down, up, maxc, RN_AWAY, hseed, i0, inner, want_codes, want_deq, cs, ds)
                elif mode == RN_FLOOR:
                    _mxint_f32_elements(xs, down, up, maxc, RN_FLOOR, hseed, i0, inner, want_codes, want_deq, cs, ds)
                else:
                    _mxint_f32_elements(xs, down, up, maxc, RN_STOCH, hseed, i0, inner, want_codes, want_deq, cs, ds)

    return kernel


@njit(cache=True, inline="always")
def _mxint_f32_elements(xs, down, up, maxc, mode, hseed, i0, inner, want_codes, want_deq, cs, ds):
    """One MXINT block (the slices xs, cs, ds; i0: the flat index of its first element),
    rounded by exact float64 arithmetic: v = x 2^-(s+q) is exact and |v| <= maxc after the
    clamp, so the 1.5 2^52 magic number rounds it to nearest even."""
    n = xs.size
    if mode == RN_STOCH:
        for j in range(n):
            v = float(xs[j]) * down
            c = min(round_mag(min(abs(v), maxc), RN_STOCH, stoch_u(hseed, i0 + j * inner)), maxc)
            c = -c if v < 0.0 else c
            if want_codes:
                cs[j] = np.int8(c)
            if want_deq:
                ds[j] = c * up + 0.0  # c == 0 gives +0.0 (contract)
        return
    if want_deq:
        if mode == RN_EVEN:
            for j in range(n):
                v = min(max(float(xs[j]) * down, -maxc), maxc)
                ds[j] = ((v + _MAGIC) - _MAGIC) * up + 0.0
        elif mode == RN_AWAY:
            for j in range(n):
                v = min(max(float(xs[j]) * down, -maxc), maxc)
                ds[j] = math.copysign(np.floor(abs(v) + 0.5), v) * up + 0.0  # |v|+0.5 exact
        else:
            for j in range(n):
                v = min(max(float(xs[j]) * down, -maxc), maxc)
                ds[j] = np.trunc(v) * up + 0.0
    if want_codes:
        for j in range(n):
            v = min(max(float(xs[j]) * down, -maxc), maxc)
            if mode == RN_EVEN:
                c = (v + _MAGIC) - _MAGIC
            elif mode == RN_AWAY:
                c = math.copysign(np.floor(abs(v) + 0.5), v)
            else:
                c = np.trunc(v)
            cs[j] = np.int8(c)


@njit(cache=True, inline="always")
def _mxint_f32_elements_f32(xs, down, up, maxc, mode, want_codes, want_deq, cs, ds):
    """_mxint_f32_elements in float32 (twice the lanes) for the deterministic modes, where
    down = 2^-(s+q) and up = 2^(s+q) are normal float32 (the caller checks): v = x * down is
    then exact, or a float32 subnormal (|v| < 2^-126) that rounds to 0 in every deterministic
    mode as the exact value does, or an overflow to +-Inf that the clamp to +-maxc turns into
    what the exact (clamped) value gives; round_mag_f32 rounds |v| <= maxc < 2^22 exactly;
    c * up is exact or one float32 rounding of the exact product, as the float64 path's cast
    to float32."""
    for j in range(xs.size):
        v = min(max(xs[j] * down, -maxc), maxc)
        c = round_mag_f32(abs(v), mode)
        c = -c if v < _F32_ZERO else c
        if want_codes:
            cs[j] = np.int8(c)
        if want_deq:
            ds[j] = c * up + _F32_ZERO  # c == 0 gives +0.0 (contract)


_mxint_f32_kernel = functools.cache(_make_mxint_f32)


def mxint_f32_fast(x, xbits, k, bits, smin, smax, sbias, snan, srule, mode, seed, inner, want_codes, want_deq, codes,
                   scales, deq):
    """MXINT for float32 input, every scale rule and rounding, written to vectorize: amax and
    NaN/Inf from the bit patterns (block_max_bits), rounding by exact float64 arithmetic; the
    kernel built for this (want_codes, want_deq)."""
    _mxint_f32_kernel(bool(want_codes), bool(want_deq))(x, xbits, k, bits, smin, smax, sbias, snan, srule, mode, seed,
                                                        inner, codes, scales, deq)


@njit(cache=True)
def bfp_exponents(amax, out):
    """bfp_exponent_of_bits over a float32 array (the exhaustive test against torch.log2)."""
    bits = amax.view(np.int32)
    for i in range(amax.size):
        out[i] = bfp_exponent_of_bits(bits[i])


@njit(cache=True, inline="always")
def _mxfp_f32_elements(xs, s, mbits, emin, max_code, max_normal, sign_bit, mode, hseed, i0, inner,
                       want_codes, want_deq, cs, ds):
    """One block (the slices xs, cs, ds; i0: the flat index of its first element) of MXFP elements of float32 x with scale exponent s: the generic kernel's
    arithmetic (av = |x| 2^-s exact, its binade e, round_mag at the element quantum) with the
    binade read from av's float64 bit pattern and powers of two built as bit patterns, so that
    the loop has no libm call and vectorizes. The code is ((te - emin) << mbits) + n: a carry
    out of the mantissa lands in the exponent field, as in IEEE bit patterns, and a subnormal
    that rounds up to 2^mbits is the smallest normal's code; saturation is a min on both."""
    down = pow2(-s)
    up = pow2(s)
    for j in range(xs.size):
        xv = float(xs[j])
        av = abs(xv) * down  # exact; a normal float64 or 0
        e = int(_f64_bits(av) >> 52) - 1023  # floor(log2(av)), -1023 for 0
        te = max(e, emin)
        u = stoch_u(hseed, i0 + j * inner) if mode == RN_STOCH else 0.0
        tq = av * pow2(mbits - te)  # exact scaling; tq < 2^(mbits + 1) (te is av's binade or emin)
        n = (tq + _MAGIC) - _MAGIC if mode == RN_EVEN else round_mag(tq, mode, u)
        code = min(((te - emin) << mbits) + int(n), max_code)
        neg = _f64_bits(xv) < 0  # the sign bit: -0.0 keeps it
        if want_codes:
            cs[j] = np.uint8(code | sign_bit) if neg else np.uint8(code)
        if want_deq:
            mag = min(n * pow2(te - mbits), max_normal) * up
            ds[j] = -mag if neg else mag


@njit(cache=True, inline="always")
def pow2_f32(e):
    """2.0**e as a float32, exact, for an integer |e| <= 126 (a normal float32)."""
    return f32_from_bits(np.int32((e + F32_EXP_BIAS) << 23))


@njit(cache=True, inline="always")
def _mxfp_f32_elements_f32(xs, xbs, s, mbits, emin, max_code, max_normal, sign_bit, mode, want_codes, want_deq, cs,
                           ds):
    """_mxfp_f32_elements in float32 (twice the lanes of float64) for the deterministic modes,
    where 2^s and 2^-s are normal float32 and the block's av stay far inside float32 (the
    caller checks both). av = |x| 2^-s is then exact, or a float32 subnormal (below 2^-126,
    far under half the smallest element step 2^(emin - mbits) >= 2^-120, the caller checks), which
    rounds to code 0 in every deterministic mode as the exact value does, and binade -127 <
    emin changes no te; tq = av 2^(mbits - te) < 2^(mbits + 1) is exact and round_mag_f32
    rounds it exactly; n 2^(te - mbits) is exact and one float32 product by 2^s rounds the
    value as the float64 path's cast to float32 does (its float64 product is exact)."""
    down = pow2_f32(-s)
    up = pow2_f32(s)
    mx = np.float32(max_normal)
    # exponents as int32 exponent fields (e + 127) << 23, so that the loop stays in 32-bit lanes
    # (numba widens int32 arithmetic to int64, which halves the vector width)
    emin_f = np.int32((emin + F32_EXP_BIAS) << 23)
    up_k = np.int32((2 * F32_EXP_BIAS + mbits) << 23)  # up_k - te_f: the field of 2^(mbits - te)
    m_f = np.int32(mbits << 23)
    exp_mask = np.int32(0x7F800000)
    mc = np.int32(max_code)
    for j in range(xs.size):
        b = xbs[j]
        av = abs(xs[j]) * down
        te_f = np.int32(max(np.int32(f32_bits(av) & exp_mask), emin_f))  # max(floor(log2 av), emin)'s field
        n = round_mag_f32(av * f32_from_bits(np.int32(up_k - te_f)), mode)  # tq = av 2^(mbits - te)
        if want_codes:
            code = np.int32(min(np.int32(np.int32(np.int32(te_f - emin_f) >> 23) << mbits) + np.int32(n), mc))
            cs[j] = np.uint8(code | sign_bit) if b < 0 else np.uint8(code)  # the sign bit: -0.0 keeps it
        if want_deq:
            mag = min(n * f32_from_bits(np.int32(te_f - m_f)), mx) * up
            ds[j] = -mag if b < 0 else mag


def _make_mxfp_f32(want_codes, want_deq):
    @njit(cache=True, parallel=True)
    def kernel(x, xbits, k, mbits, bias, max_code, max_normal, emax_elem, smin, smax, sbias, snan, srule, ebits, mode,
               seed, inner, codes, scales, deq):
        R, L = x.shape
        nb = (L + k - 1) // k
        emin = 1 - bias
        sign_bit = 1 << (ebits + mbits)
        hseed = seed_hash(seed)
        G = chunk_blocks(k)
        nc = (nb + G - 1) // G
        for t in prange(R * nc):  # work items of G blocks of one row: one division each
            r = t // nc
            b0 = (t - r * nc) * G
            idx0 = (r // inner) * L * inner + (r % inner)  # flat_index(r, j) = idx0 + j * inner
            for b in range(b0, min(b0 + G, nb)):
                j0 = b * k
                j1 = min(j0 + k, L)
                m = block_max_bits(xbits[r, j0:j1])
                if m >= F32_INF_BITS:
                    scales[r, b] = snan
                    fill_block(codes, deq, r, j0, j1, np.nan, want_codes, want_deq)
                    continue
                if m == 0:
                    scales[r, b] = smin + sbias
                    fill_block(codes, deq, r, j0, j1, 0.0, want_codes, want_deq)
                    continue
                s = block_rule_exponent(m, srule, emax_elem, mbits, max_normal, smin, smax)
                scales[r, b] = s + sbias
                # the block's slices, indexed from 0 (chunk_blocks: no gathers)
                xs, cs, ds, i0 = x[r, j0:j1], codes[r, j0:j1], deq[r, j0:j1], idx0 + j0 * inner
                # one call per rounding, each with its mode a constant: the loops compile without the branch;
                # the deterministic ones in float32 where 2^+-s are normal float32, amax 2^-s < 2^101 and
                # the smallest element step 2^(emin - mbits) >= 2^-120 (every standard MXFP format)
                if (mode != RN_STOCH and abs(s) <= F32_NORMAL_EXP and (m >> 23) - F32_EXP_BIAS - s <= 100
                        and mbits - emin <= 120):
                    xbs = xbits[r, j0:j1]
                    if mode == RN_EVEN:
                        _mxfp_f32_elements_f32(xs, xbs, s, mbits, emin, max_code, max_normal, sign_bit, RN_EVEN,
                                               want_codes, want_deq, cs, ds)
                    elif mode == RN_AWAY:
                        _mxfp_f32_elements_f32(xs, xbs, s, mbits, emin, max_code, max_normal, sign_bit, RN_AWAY,
                                               want_codes, want_deq, cs, ds)
                    else:
                        _mxfp_f32_elements_f32(xs, xbs, s, mbits, emin, max_code, max_normal, sign_bit, RN_FLOOR,
                                               want_codes, want_deq, cs, ds)
                elif mode == RN_EVEN:
                    _mxfp_f32_elements(xs, s, mbits, emin, max_code, max_normal, sign_bit, RN_EVEN, hseed, i0, inner,
                                       want_codes, want_deq, cs, ds)
                elif mode == RN_AWAY:
                    _mxfp_f32_elements(xs, s, mbits, emin, max_code, max_normal, sign_bit, RN_AWAY, hseed, i0, inner,
                                       want_codes, want_deq, cs, ds)
                elif mode == RN_FLOOR:
                    _mxfp_f32_elements(xs, s, mbits, emin, max_code, max_normal, sign_bit, RN_FLOOR, hseed, i0, inner,
                                       want_codes, want_deq, cs, ds)
                else:
                    _mxfp_f32_elements(xs, s, mbits, emin, max_code, max_normal, sign_bit, RN_STOCH, hseed, i0, inner,
                                       want_codes, want_deq, cs, ds)

    return kernel


_mxfp_f32_kernel = functools.cache(_make_mxfp_f32)


def mxfp_f32(x, xbits, k, mbits, bias, max_code, max_normal, emax_elem, smin, smax, sbias, snan, srule, ebits, mode,
             seed, inner, want_codes, want_deq, codes, scales, deq):
    """MXFP for float32 input (``xbits``: its int32 view), every scale rule and rounding, in
    one pass per block: amax and NaN/Inf from the bit patterns, each element by exact float64
    arithmetic (no libm call, no float64 copy of the tensor); the kernel built for this
    (want_codes, want_deq)."""
    _mxfp_f32_kernel(bool(want_codes), bool(want_deq))(x, xbits, k, mbits, bias, max_code, max_normal, emax_elem, smin,
                                                       smax, sbias, snan, srule, ebits, mode, seed, inner, codes,
                                                       scales, deq)
