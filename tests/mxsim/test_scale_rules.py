"""Shared-scale rules (floor / ceil / even / rceil, torchao's ScaleCalculationMode names):
hand-computed scale codes, the numba path against the referee bit for bit, and both against
torchao itself where it is installed (an independent implementation)."""

import numpy as np
import pytest
import torch

import mxsim
from mxsim import reference as R
from mxsim.validate import adversarial_batches, compare_quantize, random_case, scale_rule_batch

RULES = ("floor", "ceil", "even", "rceil")
MX_NAMES = ("MXFP8_E4M3", "MXFP8_E5M2", "MXFP6_E2M3", "MXFP6_E3M2", "MXFP4_E2M1")


def _codes(fmt, amaxes):
    """Scale codes of one-block rows [amax, amax/3] from both paths (they must agree)."""
    x = np.array([[a, a / 3] for a in amaxes], np.float32)
    got = mxsim.quantize(x, fmt.with_block_size(2)).scales[:, 0]
    ref = R.quantize(torch.from_numpy(x), fmt.with_block_size(2))[1][:, 0].numpy()
    np.testing.assert_array_equal(got, ref)
    return got.astype(int) - 127


# Hand-computed exponents. E4M3: emax 8, max 448, 3 mantissa bits (even threshold: significand
# >= 2 - 2^-4 = 1.9375). E2M1: emax 2, max 6, 1 mantissa bit (threshold 1.75). MXINT8: emax 0,
# max 127/64, 6 fraction bits (threshold 2 - 2^-7).
HAND = {
    # amax:        floor, ceil, even, rceil
    "MXFP8_E4M3": {1.0: (-8, -8, -8, -8),          # rceil: log2(1/448) = -8.81
                   1.5: (-8, -7, -8, -8),          # log2(1.5/448) = -8.22
                   1.9375: (-8, -7, -7, -7),       # the even threshold itself rounds up
                   1.875: (-8, -7, -8, -7),        # log2(1.875/448) = -7.90
                   448.0: (0, 1, 0, 0),            # d = 1 exactly
                   896.0: (1, 2, 1, 1),            # 1.75 * 2^9: ceil(log2) = 10
                   # 448 + ulp: d = fl32(1 + 2^-23.8) = 1 + 2^-23, so rceil rounds up to 1
                   float(np.nextafter(np.float32(448), np.float32(1e9))): (0, 1, 0, 1)},
    "MXFP4_E2M1": {6.0: (0, 1, 0, 0), 6.5: (0, 1, 0, 1), 7.0: (0, 1, 1, 1), 4.0: (0, 0, 0, 0),
                   3.0: (-1, 0, -1, -1), 0.75: (-3, -2, -3, -3), 0.875: (-3, -2, -2, -2)},
    "MXINT8": {1.0: (0, 0, 0, -0), 1.984375: (0, 1, 0, 0), 1.99: (0, 1, 0, 1), 1.9921875: (0, 1, 1, 1),
               0.5: (-1, -1, -1, -1)},
}


@pytest.mark.parametrize("name", list(HAND))
def test_hand_computed_exponents(name):
    amaxes = list(HAND[name])
    for i, rule in enumerate(RULES):
        got = _codes(mxsim.get_format(name).with_scale_rule(rule), amaxes)
        want = [HAND[name][a][i] for a in amaxes]
        assert got.tolist() == want, (name, rule, dict(zip(amaxes, got.tolist())))


def test_clamps_and_zero_blocks():
    """All-zero blocks keep code 0 under every rule; huge and tiny amax clamp to +-127."""
    for rule in RULES:
        f = mxsim.MXFP8_E4M3.with_scale_rule(rule).with_block_size(2)
        x = np.array([[0.0, -0.0], [3e38, 1.0], [1e-44, 0.0]], np.float32)
        for s in (mxsim.quantize(x, f).scales[:, 0], R.quantize(torch.from_numpy(x), f)[1][:, 0].numpy()):
            assert s[0] == 0 and s[2] == 0, rule
        # 3e38 = 2^127.8: floor 127 - 8 = 119; ceil 120; even 119 (significand 1.76 < 1.9375);
        # rceil ceil(log2(3e38 / 448)) = ceil(119.0) ... 3e38/448 = 2^119.03, so 120
        assert mxsim.quantize(x, f).scales[1, 0] - 127 == {"floor": 119, "ceil": 120, "even": 119, "rceil": 120}[rule]
    f = mxsim.MXINT2.with_scale_rule("rceil").with_block_size(1)  # max_pos 1: d = amax
    assert mxsim.quantize(np.array([3e38], np.float32), f).scales[0] == 254  # 2^128 clamps to 127


@pytest.mark.parametrize("rule", RULES[1:])  # floor: tests/mxsim/test_bitexact.py
@pytest.mark.parametrize("name", [*MX_NAMES, "MXINT8", "MXINT4"])
def test_numba_vs_referee(name, rule):
    fmt = mxsim.get_format(name).with_scale_rule(rule)
    rng = np.random.default_rng(7)
    batches = adversarial_batches(fmt, length=45, seed=3) + [scale_rule_batch(fmt, rng), random_case(rng, 8, 64, "wide")]
    roundings = ("nearest_even", "stochastic") if name == "MXFP8_E4M3" else ("nearest_even",)
    for x in batches:
        for rounding in roundings:
            for inp in (x, x.astype(np.float64)):  # rceil divides in float64 for float64 input
                res = compare_quantize(inp, fmt, rounding=rounding, seed=5)
                bad = {c: v for c, v in res.items() if v[1]}
                assert not bad, (name, rule, rounding, inp.dtype, bad)


def test_rceil_float64_input_divides_in_float64():
    """amax = 448 * (1 + 2^-40) (float64): the float64 quotient is above 1, so rceil gives 1;
    the same amax rounded to float32 is 448 exactly and gives 0."""
    f = mxsim.MXFP8_E4M3.with_scale_rule("rceil").with_block_size(1)
    a = np.array([448 * (1 + 2.0**-40)])
    assert mxsim.quantize(a, f).scales[0] == 128
    assert mxsim.quantize(a.astype(np.float32), f).scales[0] == 127


# ----------------------------------------------------------------------------------------
# torchao as the independent reference

from torchao_ref import load as _load_torchao  # noqa: E402

_ao = _load_torchao()
torchao_mx = _ao and _ao["mx_tensor"]
torchao_kernels = _ao and _ao["kernels"]
ScaleCalculationMode = _ao and _ao["config"].ScaleCalculationMode

needs_torchao = pytest.mark.skipif(torchao_mx is None, reason="torchao (optional) is not installed")


def _torchao_cast(x, name, rule):
    dt = {"MXFP8_E4M3": torch.float8_e4m3fn, "MXFP8_E5M2": torch.float8_e5m2, "MXFP6_E2M3": "fp6_e2m3",
          "MXFP6_E3M2": "fp6_e3m2", "MXFP4_E2M1": torch.float4_e2m1fn_x2}[name]
    s, d = torchao_mx.to_mx(torch.from_numpy(x), dt, 32, ScaleCalculationMode(rule))
    codes = d.view(torch.uint8)
    if name == "MXFP4_E2M1":
        codes = torchao_kernels.unpack_uint4(codes)
    return s.view(torch.uint8).numpy().reshape(x.shape[0], -1), codes.numpy().reshape(x.shape)


@needs_torchao
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", MX_NAMES)
def test_against_torchao(name, rule):
    """Scale and element codes equal torchao's to_mx, except (documented) torchao's eager rceil
    where float32 log2 rounds a quotient just above 2^k down to k; blocks torchao cannot
    represent faithfully (scale code 0 with nonzero elements, Inf) are left out of the input."""
    fmt = mxsim.get_format(name).with_scale_rule(rule)
    rng = np.random.default_rng(11)
    x = np.concatenate([scale_rule_batch(fmt.with_block_size(32), rng), random_case(rng, 64, 32, "scaled_rows"),
                        random_case(rng, 64, 32, "normal"), random_case(rng, 16, 32, "uniform_int")])
    x = x[np.abs(x).max(axis=1) > 2.0**-100]  # no scale-code-0 blocks (amax >= 2^-100)
    ts, tc = _torchao_cast(x, name, rule)
    q = mxsim.quantize(x, fmt)
    amax = np.abs(x).max(axis=1).astype(np.float32)
    if rule == "rceil":
        d = torch.from_numpy(amax) / float(fmt.max_normal)
        quirk = (torch.ceil(torch.log2(d)) != torch.from_numpy(q.scales[:, 0].astype(np.float32) - 127)).numpy()
        # where they differ, mxsim's exponent is the exact ceiling: 2^(s-1) < d <= 2^s
        s = q.scales[quirk, 0].astype(int) - 127
        dq = d.numpy()[quirk].astype(np.float64)
        assert np.all((np.ldexp(1.0, s - 1) < dq) & (dq <= np.ldexp(1.0, s)))
        assert quirk.sum() < 0.1 * quirk.size
    else:
        quirk = np.zeros(x.shape[0], bool)
    np.testing.assert_array_equal(q.scales[~quirk], ts[~quirk])
    np.testing.assert_array_equal(q.codes[~quirk], tc[~quirk])


# ----------------------------------------------------------------------------------------
# the API


def test_with_scale_rule_api_and_names():
    f = mxsim.MXFP8_E4M3.with_scale_rule("rceil")
    assert f.scale_rule is mxsim.ScaleRule.RCEIL and mxsim.MXFP8_E4M3.scale_rule is mxsim.ScaleRule.FLOOR
    assert f != mxsim.MXFP8_E4M3 and f.with_scale_rule("floor") == mxsim.MXFP8_E4M3
    with pytest.raises(Exception):
        f.block_size = 16  # frozen
    assert mxsim.get_format("MXFP8_E4M3/32@rceil") == f
    assert mxsim.get_format("mxint4/16@Even") == mxsim.MXINT4.with_block_size(16).with_scale_rule("even")
    for g in (f, mxsim.MXINT4.with_scale_rule("ceil"), mxsim.MXFP4_E2M1.with_block_size(16).with_scale_rule("even"),
              mxsim.MXINT8):
        assert mxsim.get_format(mxsim.format_to_str(g)) == g
    assert mxsim.format_to_str(f) == "MXFP8_E4M3/32@rceil"


def test_scale_rule_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"scale_rule 'round'.*allowed: floor, ceil, even, rceil"):
        mxsim.MXINT4.with_scale_rule("round")
    with pytest.raises(ValueError, match=r"scale_rule 'rceil' does not apply to BlockFP4"):
        mxsim.BlockFP(4).with_scale_rule("rceil")
    with pytest.raises(ValueError, match=r"scale_rule 'rceil' does not apply to NVFP4"):
        mxsim.NVFP4.with_scale_rule("rceil")
    with pytest.raises(ValueError, match="scale_rule"):
        mxsim.get_format("BlockFP4/16@ceil")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("rule", RULES[1:])
def test_cuda_path_matches_numba(rule):
    """The GPU path (what mxsim.fake_quantize runs on a CUDA tensor) on the decision-point
    blocks, float32 and float64, every MX element format and MXINT8."""
    rng = np.random.default_rng(12)
    for name in (*MX_NAMES, "MXINT8"):
        fmt = mxsim.get_format(name).with_scale_rule(rule)
        x = np.concatenate([scale_rule_batch(fmt, rng), random_case(rng, 8, 64, "wide")[:, :32]])
        for inp in (x, x.astype(np.float64)):
            got = mxsim.fake_quantize(torch.from_numpy(inp).cuda(), fmt).cpu().numpy()
            want = mxsim.fake_quantize(inp, fmt)
            np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8), err_msg=f"{name} {rule}")
