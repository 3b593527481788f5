"""The typed accumulator and rank vocabulary (mxsim.accumulators, mxsim.rank)."""

import numpy as np
import pytest

import mxsim
from mxsim import FP32, CalibratedFixedPoint, Exact, FixedPoint, Float, Rank, parse_accumulator
from mxsim.accumulators import accumulator_to_toml


@pytest.mark.parametrize("spec, want", [
    ("float", Float()), ("exact", Exact()), ("fp32", FP32()), ("FP32:4", FP32(4)),
    ("fixed:24:8", FixedPoint(24, 8, "saturate")), ("fixed:16:-2:wrap", FixedPoint(16, -2, "wrap")),
    ({"fixed": [24, 8], "overflow": "wrap"}, FixedPoint(24, 8, "wrap")), ({"fp32": {"lanes": 2}}, FP32(2)),
])
def test_parse_every_spelling(spec, want):
    assert parse_accumulator(spec) == want


@pytest.mark.parametrize("acc", [Float(), Exact(), FP32(), FP32(4), FixedPoint(20, 6), FixedPoint(12, 0, "wrap")])
def test_string_and_toml_round_trip(acc):
    assert parse_accumulator(str(acc)) == acc
    assert parse_accumulator(accumulator_to_toml(acc)) == acc


@pytest.mark.parametrize("bad", ["fp16", "fixed:24", "fixed:a:b", "fp32:0", "exact:3", {"fixed": 24}, 7, None,
                                 "fixed:24:8:clip", {"fp32": {"lane": 2}}])
def test_bad_spellings_name_the_argument(bad):
    with pytest.raises(ValueError, match="^acc_arg"):
        parse_accumulator(bad, what="acc_arg")


@pytest.mark.parametrize("spec, want", [
    ("fixed:24", CalibratedFixedPoint(24, "saturate")), ("fixed:24:saturate", CalibratedFixedPoint(24, "saturate")),
    ("fixed:32:wrap", CalibratedFixedPoint(32, "wrap")), (" FIXED:12:Wrap ", CalibratedFixedPoint(12, "wrap")),
    (CalibratedFixedPoint(20, "wrap"), CalibratedFixedPoint(20, "wrap")),
    # a third field that is an integer is FRAC: still the concrete accumulator
    ("fixed:24:8", FixedPoint(24, 8, "saturate")),
])
def test_calibrated_fixed_point_spellings(spec, want):
    acc = parse_accumulator(spec, allow_calibrated=True)
    assert acc == want and type(acc) is type(want)


def test_calibrated_fixed_point_names_and_frac_bits():
    # the datapath table's committed row names, spelled out with the overflow mode
    assert str(CalibratedFixedPoint(24, "saturate")) == "fixed:24:saturate"
    assert str(CalibratedFixedPoint(32, "wrap")) == "fixed:32:wrap"
    assert parse_accumulator("fixed:20:wrap", allow_calibrated=True).name == "fixed"
    assert CalibratedFixedPoint(24, "wrap").with_frac_bits(7) == FixedPoint(24, 7, "wrap")


@pytest.mark.parametrize("bad", ["fixed:24:sat", "fixed:0", "fixed:65:wrap", "fixed:x:wrap", "fixed:24:8:sat",
                                 "fixed", "fixed:24:wrap:8"])
def test_calibrated_bad_spellings_name_the_argument(bad):
    with pytest.raises(ValueError, match="^acc_arg"):
        parse_accumulator(bad, what="acc_arg", allow_calibrated=True)


def test_bad_spelling_lists_the_calibrated_spelling_where_allowed():
    with pytest.raises(ValueError, match=r"^acc_arg .*fixed:TOTAL\[:saturate\|wrap\].*'fixed:24:sat'"):
        parse_accumulator("fixed:24:sat", what="acc_arg", allow_calibrated=True)


@pytest.mark.parametrize("spec", ["fixed:24:saturate", "fixed:32:wrap", CalibratedFixedPoint(24)])
def test_calibrated_refused_where_a_concrete_accumulator_is_needed(spec):
    with pytest.raises(ValueError, match=r"^acc_arg must be one of .*fixed:TOTAL:FRAC\[:saturate\|wrap\] .*got .*fraction bits"):
        parse_accumulator(spec, what="acc_arg")
    a = mxsim.quantize(np.ones((1, 32)), "MXINT8/32", axis=-1)
    b = mxsim.quantize(np.ones((32, 1)), "MXINT8/32", axis=0)
    with pytest.raises(ValueError, match="^accumulator .*fraction bits"):
        mxsim.matmul(a, b, accumulator=spec)


def test_numpy_integers_are_integers():
    assert FixedPoint(np.int64(24), np.int32(8)) == FixedPoint(24, 8)
    assert FP32(np.int16(4)).lanes == 4 and type(FP32(np.int16(4)).lanes) is int
    with pytest.raises(ValueError):
        FixedPoint(24.0, 8)


def _one_block(values_a, values_b):
    fmt = mxsim.MXINT8.with_block_size(4)
    a = mxsim.quantize(np.array([values_a], np.float32), fmt, axis=-1)
    b = mxsim.quantize(np.array(values_b, np.float32)[:, None], fmt, axis=0)
    return a, b


def test_matmul_lanes_honoured_for_fp32_and_refused_elsewhere():
    a, b = _one_block([1, 1, 1, 1], [1, 1, 1, 1])
    assert mxsim.matmul(a, b, FP32(2))[0, 0] == 4.0
    assert mxsim.matmul(a, b, "fp32", lanes=2)[0, 0] == 4.0
    for acc in (Exact(), FixedPoint(16, 4), "exact"):
        with pytest.raises(ValueError, match="lanes"):
            mxsim.matmul(a, b, acc, lanes=2)
    with pytest.raises(ValueError, match="contradicts"):
        mxsim.matmul(a, b, FP32(2), lanes=4)
    with pytest.raises(ValueError, match="float"):
        mxsim.matmul(a, b, Float())


@pytest.mark.parametrize("rank, d_in, d_out, want", [
    # hand: floor(0.1 * 576) = 57; floor(0.3 * 576) = 172 (SmolLM2's smallest dim)
    (Rank(0.1, "of_min_dim"), 576, 1536, 57), (Rank(0.3, "of_min_dim"), 1536, 576, 172),
    # hand: 0.1 * 576 * 1536 / 2112 = 41.89 -> 41
    (Rank(0.1, "of_params"), 576, 1536, 41),
    (Rank(32), 576, 1536, 32), (Rank(1e-6, "of_min_dim"), 64, 64, 1), (Rank(1.0, "of_min_dim"), 8, 4, 4),
])
def test_rank_resolution_by_hand(rank, d_in, d_out, want):
    assert rank.resolve(d_in, d_out) == want


@pytest.mark.parametrize("bad", [0, -3, True, 1.5, 0.0, float("nan"), "10%"])
def test_rank_rejects(bad):
    with pytest.raises(ValueError, match="rank"):
        Rank.of(bad)
    with pytest.raises(ValueError, match="out of range"):
        Rank(65).resolve(64, 128)
