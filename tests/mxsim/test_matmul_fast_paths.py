"""The CPU matmul's fast paths (mxsim/datapath.py) against reference.matmul, bit for bit,
with the paths forced: "exact" by int8 digit GEMMs with rows and columns whose scale spread
sends them per block, K chunked and several output panels; the per-step int8 GEMMs against
the float BLAS path; and the scale-only proofs (float32-exact terms, fixed point that
cannot overflow) by hand."""

import numpy as np
import pytest

import mxsim
from mxsim import FP32, Exact, FixedPoint, datapath
from mxsim.tensor import MXTensor
from mxsim.validate import compare_matmul_tensors


def _case(fa, fb, rng, M=9, K=77, N=7, k=16):
    fa, fb = fa.with_block_size(k), fb.with_block_size(k)
    nb = -(-K // k)

    def codes(fmt, shape):
        if isinstance(fmt, mxsim.MXFPFormat):
            c = rng.integers(0, 2**fmt.element_bits, size=shape)
            if fmt.exponent_bits == 4:
                c = np.where((c & 0x7F) == 0x7F, c ^ 1, c)
            return c.astype(np.uint8)
        return rng.integers(-fmt.max_code, fmt.max_code + 1, size=shape).astype(np.int8)

    # narrow spread (3 bits) everywhere but row 2 and column 5: 100 bits (per block there)
    sa = rng.integers(125, 129, size=(M, nb))
    sb = rng.integers(125, 129, size=(nb, N))
    sa[2, 0], sb[1, 5] = 20, 230
    ac, bc = codes(fa, (M, K)), codes(fb, (K, N))
    ac[4] = 0  # a zero row
    qa = MXTensor(ac, sa.astype(np.uint8), fa, 1, ac.shape)
    qb = MXTensor(bc, sb.astype(np.uint8), fb, 0, bc.shape)
    return qa, qb


@pytest.mark.parametrize("fa,fb", [(mxsim.MXINT8, mxsim.MXINT8), (mxsim.MXFP4_E2M1, mxsim.MXINT4),
                                   (mxsim.MXFP8_E4M3, mxsim.MXFP4_E2M1)])
def test_exact_digits_with_slow_rows_chunks_and_panels(fa, fb, monkeypatch):
    if not datapath.int8_gemm_is_exact():
        pytest.skip("torch._int_mm is not exact here: the digit path is off")
    rng = np.random.default_rng(7)
    qa, qb = _case(fa, fb, rng)
    res = datapath.exact_by_digits(np.ascontiguousarray(qa.codes), np.ascontiguousarray(qb.codes), qa.fmt, qb.fmt,
                                   qa.scale_exponents(), qb.scale_exponents(),
                                   qa.fmt.quantum_log2 + qb.fmt.quantum_log2, 16, 2)
    assert res is not None
    assert res[1].tolist() == [2] and res[2].tolist() == [5]  # the 100-bit row and column
    _ok(compare_matmul_tensors(qa, qb, Exact()))
    monkeypatch.setattr(datapath, "INT32_TERMS", 24)  # K = 77 in 4+ chunks per digit weight
    monkeypatch.setattr(datapath, "PANEL_BYTES", 4 * 7 * 40)  # a few rows per panel
    _ok(compare_matmul_tensors(qa, qb, Exact()))


def test_per_step_int8_equals_float_blas(monkeypatch):
    rng = np.random.default_rng(3)
    qa, qb = _case(mxsim.MXINT8, mxsim.MXINT8, rng)
    accs = [FP32(), FP32(4), FixedPoint(32, 16), FixedPoint(24, 8, "wrap"), FixedPoint(12, 2), Exact()]
    for acc in accs:
        _ok(compare_matmul_tensors(qa, qb, acc))
    monkeypatch.setattr(datapath, "int8_gemm_is_exact", lambda: False)  # the float32 BLAS path
    for acc in accs:
        _ok(compare_matmul_tensors(qa, qb, acc))


def _ok(res):
    n, bad, msg = res
    assert bad == 0, f"{bad}/{n} differ, first {msg}"


def test_float32_exact_steps_by_hand():
    # |P| <= 516128 = 127 * 127 * 32 (19 bits): P * 2^e is an exact float32 for e >= -149
    # (its lowest bit stays on the subnormal grid) and e + 19 <= 128 (below 2^128)
    bound = 127 * 127 * 32
    ea = np.array([[-149, 0, 109, 110]])
    eb = np.array([[0], [0], [0], [0]])
    _, _, ok = datapath.float32_exact_steps(ea, eb, 0, bound)
    assert ok.tolist() == [[True, True, True, False]]
    _, _, ok = datapath.float32_exact_steps(np.array([[-100]]), np.array([[-50]]), 0, bound)
    assert ok.tolist() == [[False]]  # 2^-150: below the float32 grid


def test_fixed_point_proofs_by_hand():
    bound = 127 * 127 * 32  # 516128
    one = np.zeros((1, 1), np.int64)
    # one block, 2^0 alignment: |floor(P)| <= 516128 + 1 < 2^(W-2) = 2^19 = 524288 for W = 21,
    # not for W = 20 (2^18 = 262144)
    assert datapath.fixed_point_proofs(one, one, 0, bound, FixedPoint(21, 0), 1)[1] is True
    assert datapath.fixed_point_proofs(one, one, 0, bound, FixedPoint(20, 0), 1)[1] is False
    # near: shift + 19 bits (516128 < 2^19) <= 62
    assert datapath.fixed_point_proofs(one, one, 43, bound, FixedPoint(64, 0, "wrap"), 1)[0] is True
    assert datapath.fixed_point_proofs(one, one, 44, bound, FixedPoint(64, 0, "wrap"), 1)[0] is False
    assert datapath.fixed_point_proofs(one, one, 0, bound, FixedPoint(32, 16), 1)[2] == 2.0**-16


def test_fixed_sum_bound_by_hand():
    f = mxsim.MXINT8.with_block_size(3)
    a = np.array([[1, -2, 3]], np.int8)
    b = np.array([[4], [5], [-6]], np.int8)
    zero = np.zeros((1, 1), np.int64)
    # l1(a) = 6, max|a| = 3, l1(b) = 15, max|b| = 6: min(6 * 6, 3 * 15) = 36, + 1 for floor
    # (the true |P| = |4 - 10 - 18| = 24)
    assert datapath.fixed_sum_bound(a, b, f, f, zero, zero, 3, 0) == 37.0
    assert datapath.fixed_sum_bound(a, b, f, f, zero, zero, 3, -1) == 19.0
    assert datapath.fixed_sum_bound(a, b, f, f, zero + 2, zero, 3, 0) == 36.0 * 4 + 1


def test_fixed_point_int32_fold_on_quantized_data():
    """Normal data: the codes' bound proves that FixedPoint(32,16) / (24,8) cannot overflow,
    so the int32 / float32 kernel runs (fixed_fold_plain32); it must equal the referee."""
    rng = np.random.default_rng(5)
    fmt = mxsim.MXINT8
    qa = mxsim.quantize(rng.standard_normal((40, 96)).astype(np.float32), fmt, axis=1)
    qb = mxsim.quantize(rng.standard_normal((96, 24)).astype(np.float32), fmt, axis=0)
    ea, eb = qa.scale_exponents(), qb.scale_exponents()
    for acc in (FixedPoint(32, 16), FixedPoint(24, 8), FixedPoint(24, 8, "wrap")):
        shift = 2 * fmt.quantum_log2 + acc.frac_bits
        assert datapath.fixed_sum_bound(qa.codes, qb.codes, fmt, fmt, ea, eb, 32, shift) < 2.0**(acc.total_bits - 2)
        _ok(compare_matmul_tensors(qa, qb, acc))
