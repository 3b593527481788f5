"""Replaced linear layers and whole models on mxsim's integer datapath (issue 15).

Expected values come from mxsim.reference.matmul (the separately written referee) on the same
codes, from float64 dot products where those are exact, and from hand calculations."""
import contextlib

import numpy as np
import pytest
import torch

import mxsim
from lqer.approximate import approximate
from lqer.datapath import (calibrate_partial_sums, calibrated_fixed_point,
                           count_overflow, fraction_bits, overflow_table, set_accumulator)
from lqer.config import QuantConfig
from lqer.linear import QuantLinear
from lqer.quantize import quantize_model
from mxsim import reference

W4 = mxsim.MXINT4.with_block_size(16)
I8 = mxsim.MXINT8.with_block_size(16)
ACCUMULATORS = ["exact", "fp32", "fp32:4", "fixed:24:10", "fixed:20:12:wrap"]


def _layer(acc=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(24, 48, generator=g)
    r = approximate(W, w_format=W4, a_format=I8, b_format=I8, rank=8, factor_axis="reduction")
    bias = torch.randn(24, generator=g)
    return QuantLinear(r.w_q, x_format=I8, A=r.A, B=r.B, lowrank_output_format=I8, bias=bias,
                       accumulator=acc, name="t"), r, bias


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _ref_mm(a_mx, b_mx, acc):
    """mxsim.reference.matmul on the codes of a (M x K, blocked along K) and b (K x N, axis 0)."""
    acc = mxsim.parse_accumulator(acc)
    if isinstance(acc, mxsim.FP32):
        spec, lanes = "fp32", acc.lanes
    elif isinstance(acc, mxsim.Exact):
        spec, lanes = "exact", None
    else:
        spec, lanes = acc, None
    return reference.matmul(_t(a_mx.codes), _t(a_mx.scales), a_mx.fmt, _t(b_mx.codes), _t(b_mx.scales), b_mx.fmt,
                            accumulator=spec, lanes=lanes)


@pytest.mark.parametrize("acc", ACCUMULATORS)
def test_layer_equals_referee_bit_for_bit(acc):
    q, r, bias = _layer(acc)
    x = torch.randn(3, 48, generator=torch.Generator().manual_seed(5)) * 3
    y = q(x)
    # the referee, step by step on the same codes: main GEMM, x·A, re-quantized h, h·B, float32 adds
    xq = mxsim.quantize(x, I8, axis=-1)
    wT = mxsim.quantize(r.w_deq.T.contiguous(), W4, axis=0)
    assert np.array_equal(wT.codes, r.w_q.codes.T) and np.array_equal(wT.scales, r.w_q.scales.T)
    main = _ref_mm(xq, wT, acc)
    h = _ref_mm(xq, r.A, acc)
    low = _ref_mm(mxsim.quantize(h, I8, axis=-1), r.B, acc)
    expect = (main.to(torch.float32) + low.to(torch.float32)) + bias
    assert torch.equal(y, expect)
    assert q.datapath() == {g: str(mxsim.parse_accumulator(acc)) for g in ("main", "lowrank_in", "lowrank_out")}


def test_exact_equals_float64_dot_product_of_dequantized_operands():
    # MXINT8 x MXINT4 over 48 = 3 blocks of randn data: every product is an integer times 2^e
    # with e within a few units of the others, so the float64 sum is exact; the layer's output
    # is that value rounded once to float32.
    q, r, _ = _layer("exact")
    q = QuantLinear(r.w_q, x_format=I8, accumulator="exact")
    x = torch.randn(4, 48, generator=torch.Generator().manual_seed(1))
    xd = mxsim.fake_quantize(x, I8, axis=-1).double()
    expect = (xd @ r.w_deq.double().T).to(torch.float32)
    assert torch.equal(q(x), expect)


def _saturation_layer(acc):
    # K = 32 (two blocks of 16), N = 2: column 0 of W is all 1.0, column 1 all 0.5 (exact in
    # MXINT4: code 4 with the block's exponent). Rows of x: all 1.0 and all -1.0 (MXINT8 exact).
    W = torch.stack([torch.ones(32), torch.full((32,), 0.5)])
    w_q = mxsim.quantize(W, W4, axis=1)
    assert torch.equal(torch.as_tensor(w_q.dequantize()), W)
    return QuantLinear(w_q, x_format=I8, accumulator=acc, name="sat")


def test_fixed_point_saturates_where_the_hand_calculation_says():
    x = torch.stack([torch.ones(32), -torch.ones(32)])
    # FixedPoint(16, 10): codes in [-32768, 32767] units of 2^-10, i.e. [-32, 32 - 2^-10].
    # Per block the aligned sum is 16 * 2^10 = 16384 (column 0) and 8192 (column 1).
    # Row 0, column 0: 16384 + 16384 = 32768 > 32767 -> saturates at the second block to 32767.
    # Row 1, column 0: -32768 is representable -> exactly -32. Column 1: 8 + 8 = 16, no overflow.
    q = _saturation_layer("fixed:16:10")
    with count_overflow(q):
        y = q(x)
    assert y.tolist() == [[32767 / 1024, 16.0], [-32.0, -16.0]]
    assert q.overflow_counts == {"main": (1, 4)}
    # wrap: 32768 wraps to -32768 -> -32.0; the other outputs are as before
    qw = _saturation_layer("fixed:16:10:wrap")
    with count_overflow(qw):
        assert qw(x).tolist() == [[-32.0, 16.0], [-32.0, -16.0]]
    assert qw.overflow_counts == {"main": (1, 4)}
    # one fraction bit fewer (F = 9) holds 32 * 2^9 = 16384: nothing overflows
    q9 = _saturation_layer("fixed:16:9")
    with count_overflow(q9):
        assert q9(x).tolist() == [[32.0, 16.0], [-32.0, -16.0]]
    assert q9.overflow_counts == {"main": (0, 4)}


def test_partial_sum_range_and_fraction_bit_rule_by_hand():
    W = torch.stack([torch.ones(32), torch.full((32,), 0.5)])
    b = mxsim.quantize(W.T.contiguous(), W4, axis=0)
    # x = [1]*16 + [-1]*16: running sums of column 0 are 16 then 0; column 1: 8 then 0
    x = torch.cat([torch.ones(16), -torch.ones(16)])[None]
    r = mxsim.partial_sum_range(mxsim.quantize(x, I8, axis=-1), b)
    assert r == {"max_abs_partial_sum": 16.0, "max_abs_block_sum": 16.0, "outputs": 2}
    r = mxsim.partial_sum_range(mxsim.quantize(torch.ones(1, 32), I8, axis=-1), b)
    assert r["max_abs_partial_sum"] == 32.0 and r["max_abs_block_sum"] == 16.0
    # F = W - 1 - (floor(log2 m) + 1): m = 32 needs 6 integer bits -> F = 9 at W = 16 (the
    # non-saturating choice of the hand case above); m = 31.9 needs 5 -> F = 10
    assert fraction_bits(16, 32.0) == 9 and fraction_bits(16, 31.9) == 10
    assert fraction_bits(16, 32.0, headroom=2) == 7
    assert fraction_bits(16, 0.01) == 15  # clamped: the sign bit stays
    assert fraction_bits(24, 0.0) == 23


def test_lrc_style_high_precision_path_stays_float_and_says_so():
    g = torch.Generator().manual_seed(2)
    w_q = mxsim.quantize(torch.randn(24, 48, generator=g), W4, axis=1)
    A, B = torch.randn(48, 4, generator=g), torch.randn(4, 24, generator=g)
    q = QuantLinear(w_q, x_format=I8, A=A, B=B, lowrank_input="unquantized", accumulator="fp32")
    dp = q.datapath()
    assert dp["main"] == "fp32"
    assert dp["lowrank_in"].startswith("float (") and dp["lowrank_out"].startswith("float (")
    x = torch.randn(3, 48, generator=g)
    main = _ref_mm(mxsim.quantize(x, I8, axis=-1), mxsim.quantize(torch.as_tensor(w_q.dequantize()).T.contiguous(),
                                                                    W4, axis=0), "fp32")
    F = torch.nn.functional
    assert torch.equal(q(x), main + F.linear(F.linear(x, A.T), B.T))


def test_bad_accumulators_are_refused_with_the_argument_and_allowed_values():
    q, r, _ = _layer()
    with pytest.raises(ValueError, match=r"accumulator .*narrower than one block's integer sum.*15 bits.*allowed"):
        q.set_accumulator("fixed:12:4")
    with pytest.raises(ValueError, match=r"frac_bits 24 is beyond the accumulator.*allowed: frac_bits <= 23"):
        q.set_accumulator(mxsim.FixedPoint(24, 24))
    with pytest.raises(ValueError, match=r"accumulator must be one of float, exact, fp32"):
        q.set_accumulator("fp33")
    with pytest.raises(ValueError, match=r"FP32 lanes must divide the block size 16"):
        q.set_accumulator("fp32:3")
    assert isinstance(q.accumulator, mxsim.Float)  # refusals changed nothing
    fp = QuantLinear(torch.randn(8, 16), x_format=None, name="fp_layer")
    with pytest.raises(ValueError, match=r"accumulator exact needs MX operands.*fp_layer.*allowed for this layer: float"):
        fp.set_accumulator("exact")
    for method in ("fp", "llm_int8"):
        with pytest.raises(ValueError, match=rf"accumulator fp32 needs MX operands.*{method}.*allowed for it: float"):
            QuantConfig(method=method, accumulator="fp32")
    with pytest.raises(ValueError, match=r"x_format is none"):
        QuantConfig(method="plain", x_format="none", accumulator="exact")
    with pytest.raises(ValueError, match=r"narrower than one block's integer sum"):
        QuantConfig(method="plain", accumulator="fixed:12:2")


def test_whole_tiny_model_under_every_accumulator(tiny_llama):
    cfg = QuantConfig(method="lqer", rank=4, factor_axis="reduction")
    model, _ = quantize_model(tiny_llama, cfg, progress=False)
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(ids).logits
    ranges = calibrate_partial_sums(model, [ids[:1]])
    assert set(ranges["model.layers.0.mlp.down_proj"]) == {"main", "lowrank_in", "lowrank_out"}
    assert all(v > 0 for r in ranges.values() for v in r.values())
    out = {}
    for acc in ["float", "exact", "fp32:4", "fixed:20:4:wrap", "calibrated:24"]:
        per = None
        if acc.startswith("calibrated"):
            per = calibrated_fixed_point(ranges, int(acc.split(":")[1]))
            acc = "fixed:64:0"  # layer-wide default; every MX GEMM is overridden by its calibrated one
        dp = set_accumulator(model, acc, per)
        assert len(dp) == 14
        with count_overflow(model), torch.no_grad():
            out[acc if per is None else f"cal{per['model.layers.0.mlp.down_proj']['main'].total_bits}"] = \
                model(ids).logits
        assert torch.isfinite(list(out.values())[-1]).all()
    assert torch.equal(out["float"], ref)
    # exact and fp32 differ from the float emulation only by rounding
    for k in ("exact", "fp32:4", "cal24"):
        torch.testing.assert_close(out[k], out["float"], atol=2e-3, rtol=1e-3)
    # the last run (calibrated 24 bits) counted every MX GEMM of every layer
    tab = overflow_table(model, ranges)
    assert len(tab) == 14 * 3 and (tab["outputs"] > 0).all()
    assert set(tab["accumulator"].str.split(":").str[1]) == {"24"}
    set_accumulator(model, "float")


def test_config_accumulator_toml_and_quantize_model(tiny_llama, tmp_path):
    p = tmp_path / "dp.toml"
    p.write_text('method = "plain"\naccumulator = {fixed = [24, 8], overflow = "wrap"}\n')
    from lqer.config import load_config

    cfg = load_config(p)
    assert cfg.accumulator == mxsim.FixedPoint(24, 8, "wrap")
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg  # the TOML table round-trips
    assert load_config(p, accumulator="fp32:4").accumulator == mxsim.FP32(4)
    model, info = quantize_model(tiny_llama, cfg.replace(accumulator="fp32:4"), progress=False)
    assert info["datapath"]["model.layers.1.mlp.up_proj"] == {"main": "fp32:4"}
    assert all(m.accumulator == mxsim.FP32(4) for m in model.modules() if isinstance(m, QuantLinear))


@pytest.mark.parametrize("argv, msg", [
    (["--accumulator", "fixed:24"], "argument --accumulator: accumulator must be one of float, exact, fp32"),
    (["--accumulator", "fp32", "--method", "fp"], "accumulator fp32 needs MX operands"),
    (["--accumulator", "fixed:12:2", "--method", "plain"], "narrower than one block's integer sum"),
])
def test_cli_accumulator_mistakes_are_one_line_exit_2(argv, msg, capsys):
    from lqer.cli import main

    with pytest.raises(SystemExit) if argv[1] == "fixed:24" else contextlib.nullcontext():
        rc = main(["eval", *argv])
        assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("lqer eval: error:") and msg in err and len(err.strip().splitlines()) == 1



def test_partial_sum_range_equals_the_largest_exact_prefix_matmul():
    # independent route: the running sum after block j is the exact matmul of the first j blocks
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, 40, generator=g) * torch.logspace(-2, 2, 40)  # a short last block (40 = 16+16+8)
    w = torch.randn(40, 6, generator=g)
    r = mxsim.partial_sum_range(mxsim.quantize(x, I8, axis=-1), mxsim.quantize(w, W4, axis=0))
    prefixes = [np.abs(mxsim.matmul(mxsim.quantize(x[:, :c], I8, axis=-1), mxsim.quantize(w[:c], W4, axis=0),
                                    accumulator="exact")).max() for c in (16, 32, 40)]
    assert r["max_abs_partial_sum"] == pytest.approx(max(prefixes), rel=1e-12)
    assert r["outputs"] == 30
