"""Validation of the numba path (mxsim.fake_quantize / quantize / matmul) against the
independent torch referee (mxsim.reference), bit for bit, on random and adversarial inputs.

``run_validation()`` returns a pandas DataFrame with one row per (check, format, rounding,
block, axis): how many values were compared and how many differed. This module imports both
paths, which is fine for a validator (it is neither a kernel nor the reference).

The adversarial generators live here (so the report generator can use them without the test
tree); ``tests/mxsim/adversarial.py`` re-exports them and adds hypothesis strategies.
"""

from __future__ import annotations

import numpy as np
import torch

from . import reference as R
from .accumulators import FP32, Exact, FixedPoint, datapath_accumulator
from .formats import (
    FORMATS,
    ROUNDING_MODES,
    BlockFP,
    MXFPFormat,
    MXIntFormat,
    get_format,
)
from .rounding import Rounding

# formats exercised by default: every OCP format plus BlockFP widths and a narrow exponent
DEFAULT_FORMATS = [*FORMATS.values(), BlockFP(4), BlockFP(8), BlockFP(3, exponent_width=4), BlockFP(2)]
DEFAULT_BLOCKS = (16, 32, 7)
F32_MAX = float(np.finfo(np.float32).max)

# ----------------------------------------------------------------------------------------
# adversarial inputs (float32, 2-D: rows x length; length deliberately not a block multiple)


def _nextafter(v, n):
    v = np.float32(v)
    d = np.float32(np.inf) if n > 0 else np.float32(-np.inf)
    for _ in range(abs(n)):
        v = np.nextafter(v, d)
    return v


def _ties(fmt, rng, n):
    """Values that sit exactly on rounding ties of ``fmt`` for a block max of 2^m (first
    element of every row is 2^m): (j + 1/2) grid steps for the format's element grid."""
    out = []
    for _ in range(n):
        m = int(rng.integers(-20, 20))
        row = [2.0**m]
        if isinstance(fmt, MXFPFormat):
            # block max 2^m -> s = m - emax; element binades E in [emin, emax]
            s = m - fmt.emax_elem
            for _ in range(15):
                E = int(rng.integers(fmt.emin, fmt.emax_elem + 1))
                j = int(rng.integers(0, 2 ** (fmt.mantissa_bits + 1)))
                row.append(float(rng.choice([-1, 1])) * (j + 0.5) * 2.0 ** (E - fmt.mantissa_bits + s))
        elif isinstance(fmt, BlockFP):
            # e = m, step 2^(m - (w-1))
            for _ in range(15):
                j = int(rng.integers(0, 2 ** (fmt.width - 1)))
                row.append(float(rng.choice([-1, 1])) * (j + 0.5) * 2.0 ** (m - (fmt.width - 1)))
        else:
            # s = m, grid 2^(m + q)
            for _ in range(15):
                j = int(rng.integers(0, 2 ** (fmt.element_bits - 1)))
                row.append(float(rng.choice([-1, 1])) * (j + 0.5) * 2.0 ** (m + fmt.quantum_log2))
        out.append(row)
    return np.array(out, dtype=np.float32)


def adversarial_cases(fmt=None, length=45, seed=0):
    """List of (name, float32 numpy array of shape (rows, length)) adversarial inputs."""
    rng = np.random.default_rng(seed)
    L = length
    cases = []

    def add(name, rows):
        a = np.array(rows, dtype=np.float32)
        if a.ndim == 1:
            a = a[None, :]
        cases.append((name, a))

    add("zeros", np.zeros((2, L)))
    z = np.zeros((2, L), np.float32)
    z[0, ::3] = -0.0
    z[1, 5] = 1.5
    z[1, 6] = -0.0
    add("signed_zeros", z)
    add("all_equal", np.full((3, L), 0.7) * np.array([[1.0], [-3.0], [2.0**-100]]))
    add("f32_max", np.resize(np.array([F32_MAX, -F32_MAX, 1.0, -2.5], np.float32), (2, L)))
    huge = np.array([2.0**127, -(2.0**127) * 1.5, 2.0**126 * 1.75, 2.0**127 * 1.9999], np.float32)
    add("huge_2^127", np.resize(huge, (2, L)))
    # powers of two and +-1 ulp
    pw = []
    for k in rng.integers(-140, 127, size=L * 2):
        b = np.float32(2.0 ** int(k))
        pw.append(_nextafter(b, int(rng.integers(-2, 3))) * np.float32(rng.choice([-1, 1])))
    add("pow2_ulp", np.array(pw, np.float32).reshape(2, L))
    # the same, but each row within one magnitude range so blocks share a scale
    pw = []
    for r in range(3):
        base = int(rng.integers(-30, 30))
        for _ in range(L):
            b = np.float32(2.0 ** (base - int(rng.integers(0, 4))))
            pw.append(_nextafter(b, int(rng.integers(-3, 4))))
    add("pow2_ulp_block", np.array(pw, np.float32).reshape(3, L))
    # float32 subnormals, alone and mixed
    sub = rng.integers(-(2**23) + 1, 2**23, size=(2, L)).astype(np.float64) * 2.0**-149
    add("subnormal", sub.astype(np.float32))
    mix = sub.astype(np.float32).copy()
    mix[:, ::5] = np.float32(2.0**-120)
    add("subnormal_mixed", mix)
    add("subnormal_tiny", np.resize(np.array([2.0**-149, -(2.0**-149), 3 * 2.0**-149, 0.0], np.float32), (1, L)))
    # NaN / Inf in some blocks
    for name, bad in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        a = rng.standard_normal((2, L)).astype(np.float32)
        a[0, 3] = bad
        a[1, L - 1] = bad
        add(name, a)
    # BlockFP specials: around fl32(1e-8) (pass-through boundary), 1e-9, and powers of two
    t8 = np.float32(1e-8)
    pt = [t8, _nextafter(t8, 1), _nextafter(t8, -1), -t8, np.float32(1e-9), np.float32(-1e-9), np.float32(5e-9)]
    a = rng.standard_normal((1, L)).astype(np.float32) * np.float32(1e-8)
    a[0, : len(pt)] = pt
    add("passthrough_edge", a)
    add("passthrough_edge_scaled", a * np.float32(100.0))
    # block maxima just above powers of two, many binades (BlockFP log2 quirk)
    rows = []
    for k in rng.integers(-126, 126, size=4):
        r = rng.standard_normal(L).astype(np.float32) * np.float32(2.0 ** int(k - 2))
        r[:: 7] = _nextafter(np.float32(2.0 ** int(k)), int(rng.integers(1, 4)))
        rows.append(r)
    add("just_above_pow2", np.array(rows, np.float32))
    if fmt is not None:
        t = _ties(get_format(fmt), rng, 3)
        add("ties", np.resize(t, (3, L)))
    # wide dynamic range inside a block
    wide = (rng.standard_normal((2, L)) * 2.0 ** rng.integers(-40, 40, size=(2, L))).astype(np.float32)
    add("wide_range", wide)
    # values saturating the element grid (just below the next power of two)
    sat = np.resize(np.array([1.999, -1.999, 3.99, 7.9, 0.999, 1.0, -1.0, 448.0, 500.0, 57344.0, 63000.0], np.float32), (1, L))
    add("saturation", sat)
    return cases


# cases that must stay alone: BlockFP's tensor-wide rules (all-zero tensor -> maxima 1)
SOLO_CASES = ("zeros", "signed_zeros")


def adversarial_batches(fmt=None, length=45, seed=0):
    """The adversarial cases stacked into few tensors (one compare call each): every case
    whose result does not depend on the rest of the tensor is stacked row-wise; the
    all-zero cases stay alone (BlockFP's tensor-wide zero-block rule)."""
    cases = adversarial_cases(fmt, length=length, seed=seed)
    if fmt is not None and not isinstance(get_format(fmt), BlockFP):
        # MX blocks never look at the rest of the tensor: one batch
        return [np.concatenate([a for _, a in cases], axis=0)]
    solo = [a for n, a in cases if n in SOLO_CASES]
    rest = np.concatenate([a for n, a in cases if n not in SOLO_CASES], axis=0)
    return solo + [rest]


def random_case(rng, rows, length, kind):
    """Random float32 inputs of a few distributions."""
    if kind == "normal":
        a = rng.standard_normal((rows, length))
    elif kind == "scaled_rows":
        a = rng.standard_normal((rows, length)) * 2.0 ** rng.integers(-60, 60, size=(rows, 1))
    elif kind == "heavy":
        a = rng.standard_cauchy((rows, length))
    elif kind == "uniform_int":
        a = rng.integers(-20, 21, size=(rows, length)) * 2.0 ** rng.integers(-8, 2)
    elif kind == "wide":
        a = rng.standard_normal((rows, length)) * 2.0 ** rng.integers(-140, 120, size=(rows, length))
    else:
        raise ValueError(kind)
    return np.asarray(a, dtype=np.float32)


RANDOM_KINDS = ("normal", "scaled_rows", "heavy", "uniform_int", "wide")


def scale_rule_batch(fmt, rng):
    """float32 blocks of 32 whose amax sits on every scale rule's decision points (MXINT/MXFP):
    powers of two, the "even" threshold, max_pos * 2^k (rceil), each with its float32
    neighbours, in binades 2^-30 .. 2^30, and max_pos * 2^-127..-125 (where the float32 quotient
    of rceil rounds to a subnormal); the amax element's sign is random."""
    fmt = get_format(fmt)
    if isinstance(fmt, MXIntFormat):
        mbits, max_pos = fmt.element_bits - 2, fmt.max_code * 2.0**fmt.quantum_log2
    else:
        mbits, max_pos = fmt.mantissa_bits, fmt.max_normal
    pts = []
    for k in range(-30, 31, 3):
        for base in (2.0**k, (2 - 2.0 ** -(mbits + 1)) * 2.0**k, max_pos * 2.0**k):
            b = np.float32(base)
            pts += [b, np.nextafter(b, np.float32(np.inf)), np.nextafter(b, np.float32(0))]
    for k in (-127, -126, -125):  # rceil quotients in float32's subnormal range: there its rounding matters
        b = np.float32(max_pos * 2.0**k)
        pts += [b, np.nextafter(b, np.float32(np.inf)), np.nextafter(b, np.float32(0))]
    amax = np.array(pts, np.float32)
    rows = random_case(rng, amax.size, 32, "normal")
    rows = rows / np.abs(rows).max(axis=1, keepdims=True) * amax[:, None] * np.float32(0.999)
    rows[:, 0] = amax * np.where(rng.random(amax.size) < 0.5, -1, 1)
    return rows.astype(np.float32)

# ----------------------------------------------------------------------------------------
# comparisons


def _bits_equal(a: torch.Tensor, b: torch.Tensor):
    """Boolean mask of positions that agree bit for bit (NaN == NaN regardless of payload)."""
    ib = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
    a, b = a.contiguous(), b.contiguous()
    eq = a.view(ib[a.dtype]) == b.view(ib[b.dtype])
    return eq | (torch.isnan(a) & torch.isnan(b))


def _as_torch(v):
    return torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v


def compare_quantize(x, fmt, axis=-1, rounding=Rounding.NEAREST_EVEN, seed=0):
    """Compare fake_quantize values and quantize codes and scales of both paths.

    Returns dict check -> (n_values, n_mismatch, first mismatch description or None).
    """
    import mxsim

    xt = _as_torch(x)
    out = {}
    ref = R.fake_quantize(xt, fmt, axis=axis, rounding=rounding, seed=seed)
    got = _as_torch(mxsim.fake_quantize(xt, fmt, axis=axis, rounding=rounding, seed=seed))
    out["fake_quantize"] = _summ(xt, ref, got, bits=True)
    rc, rs = R.quantize(xt, fmt, axis=axis, rounding=rounding, seed=seed)
    q = mxsim.quantize(xt, fmt, axis=axis, rounding=rounding, seed=seed)
    gc, gs = _as_torch(q.codes), _as_torch(q.scales)
    out["codes"] = _summ(xt, rc, gc, bits=False)
    out["scales"] = _summ(None, rs, gs, bits=False)
    return out


def _summ(x, ref, got, bits):
    if tuple(ref.shape) != tuple(got.shape) or ref.dtype != got.dtype:
        return (ref.numel(), ref.numel(), f"shape/dtype differ: ref {tuple(ref.shape)} {ref.dtype}, got {tuple(got.shape)} {got.dtype}")
    eq = _bits_equal(ref, got) if bits else (ref == got)
    n_bad = int((~eq).sum())
    msg = None
    if n_bad:
        idx = tuple(int(i) for i in torch.nonzero(~eq)[0])
        xin = "" if x is None else f"x={float(x[idx])!r} ({float(x[idx]).hex()}), "
        msg = f"at {idx}: {xin}reference={_show(ref[idx])}, numba={_show(got[idx])}"
    return (ref.numel(), n_bad, msg)


def _show(v):
    v = v.item()
    return f"{v!r} ({v.hex()})" if isinstance(v, float) else repr(v)


def compare_matmul(a, b, fmt_a, fmt_b, accumulator=Exact(), lanes=None):
    """Quantize a (M x K, along K) and b (K x N, along K) with the numba path, check that the
    codes/scales match the reference, then compare mxsim.matmul with reference.matmul."""
    import mxsim

    at, bt = _as_torch(a), _as_torch(b)
    qa = mxsim.quantize(at, fmt_a, axis=1)
    qb = mxsim.quantize(bt, fmt_b, axis=0)
    return compare_matmul_tensors(qa, qb, accumulator, lanes)


def compare_matmul_tensors(qa, qb, accumulator=Exact(), lanes=None):
    """mxsim.matmul(qa, qb) against reference.matmul on the same codes and scales; both get the
    same typed accumulator (``lanes``: the legacy fp32 keyword, passed to both as well)."""
    import mxsim

    accumulator = datapath_accumulator(accumulator, lanes)
    lanes = None
    fmt_a, fmt_b = qa.fmt, qb.fmt
    ref = R.matmul(_as_torch(qa.codes), _as_torch(qa.scales), fmt_a, _as_torch(qb.codes), _as_torch(qb.scales), fmt_b,
                   accumulator=accumulator, lanes=lanes)
    kw = {} if lanes is None else {"lanes": lanes}
    got = _as_torch(mxsim.matmul(qa, qb, accumulator=accumulator, **kw))
    if got.dtype != ref.dtype:
        return (ref.numel(), ref.numel(), f"dtype differs: ref {ref.dtype}, got {got.dtype}")
    return _summ(None, ref, got, bits=True)


# ----------------------------------------------------------------------------------------


def run_validation(n_random=2, seed=0, formats=None, roundings=ROUNDING_MODES, blocks=DEFAULT_BLOCKS,
                   axes=(0, 1), length=45, rows=6, matmul=True):
    """Compare both paths on adversarial + ``n_random`` random inputs per configuration.

    Returns a DataFrame with columns check, format, rounding, block, axis, n_values,
    n_mismatch, first_mismatch.
    """
    import pandas as pd

    fmts = DEFAULT_FORMATS if formats is None else [get_format(f) for f in formats]
    rng = np.random.default_rng(seed)
    records = []
    for base in fmts:
        for k in blocks:
            fmt = base.with_block_size(k)
            inputs = adversarial_batches(fmt, length=length, seed=seed)
            inputs += [random_case(rng, rows, length, RANDOM_KINDS[i % len(RANDOM_KINDS)]) for i in range(n_random)]
            for rounding in roundings:
                for axis in axes:
                    tot = {}
                    for i, a in enumerate(inputs):
                        arr = a if axis == a.ndim - 1 or axis == -1 else np.ascontiguousarray(a.T)
                        res = compare_quantize(torch.from_numpy(arr), fmt, axis=axis, rounding=rounding, seed=seed + i)
                        for check, (n, bad, msg) in res.items():
                            t = tot.setdefault(check, [0, 0, None])
                            t[0] += n
                            t[1] += bad
                            t[2] = t[2] or msg
                    for check, (n, bad, msg) in tot.items():
                        records.append(dict(check=check, format=fmt.name, rounding=str(rounding), block=k, axis=axis,
                                            n_values=n, n_mismatch=bad, first_mismatch=msg))
    if matmul:
        records += _matmul_records(rng, seed)
    return pd.DataFrame.from_records(records, columns=["check", "format", "rounding", "block", "axis", "n_values",
                                                       "n_mismatch", "first_mismatch"])


MATMUL_PAIRS = [
    ("MXINT8", "MXINT8"), ("MXINT8", "MXINT4"), ("MXINT4", "MXINT2"), ("MXFP8_E4M3", "MXFP8_E4M3"),
    ("MXFP6_E3M2", "MXFP6_E2M3"), ("MXFP4_E2M1", "MXINT8"), ("BlockFP4", "BlockFP8"),
]
MATMUL_ACCS = [Exact(), FP32(), FixedPoint(32, 16, "saturate"), FixedPoint(24, 8, "wrap"), FixedPoint(12, 4, "saturate")]


def _matmul_records(rng, seed, M=5, K=70, N=4):
    import mxsim

    if not hasattr(mxsim, "matmul"):
        return []
    recs = []
    for an, bn in MATMUL_PAIRS:
        for k in (16, 32):
            fa, fb = get_format(an).with_block_size(k), get_format(bn).with_block_size(k)
            for acc in MATMUL_ACCS:
                for lanes in ((None, 4) if isinstance(acc, FP32) else (None,)):
                    n = bad = 0
                    msg = None
                    for kind in ("normal", "scaled_rows", "wide"):
                        a = random_case(rng, M, K, kind)
                        b = random_case(rng, N, K, kind).T.copy()
                        nn, bb, mm = compare_matmul(a, b, fa, fb, acc if lanes is None else FP32(lanes))
                        n += nn
                        bad += bb
                        msg = msg or mm
                    recs.append(dict(check=f"matmul:{acc if lanes is None else FP32(lanes)}", format=f"{fa.name}x{fb.name}",
                                     rounding=str(Rounding.NEAREST_EVEN), block=k, axis="K", n_values=n, n_mismatch=bad,
                                     first_mismatch=msg))
    return recs


if __name__ == "__main__":  # pragma: no cover
    df = run_validation()
    print(df.drop(columns=["first_mismatch"]).to_string())
    print("total values", int(df.n_values.sum()), "mismatches", int(df.n_mismatch.sum()))
