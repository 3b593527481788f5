"""mxsim.vectors: golden hex test vectors; expected values computed by hand here."""

import json

import numpy as np
import pytest

import mxsim
from mxsim import vectors


def test_hand_computed_mxint8_block(tmp_path):
    # a = [1, 0.5, -0.25, 0]: amax 1 -> s = 0 (code 127), codes = x * 2^6 = 64, 32, -16, 0
    a = np.array([[1.0, 0.5, -0.25, 0.0]])
    b = np.ones((4, 1))                       # codes 64 each, scale code 127
    man = vectors.export(tmp_path, a, b, "MXINT8/4", accumulators=["exact", "fp32", mxsim.FixedPoint(16, 8)])
    assert (tmp_path / "a_codes.hex").read_text() == "00f02040\n"   # lane 0 in the low byte
    assert (tmp_path / "b_codes.hex").read_text() == "40404040\n"
    assert (tmp_path / "a_scales.hex").read_text() == "7f\n"
    # (64*64 + 32*64 - 16*64) * 2^(0 + 0 - 6 - 6) = 5120 / 4096 = 1.25
    assert (tmp_path / "expected_exact.hex").read_text() == "3ff4000000000000\n"
    assert (tmp_path / "block_exact.hex").read_text() == "3ff4000000000000\n"
    assert (tmp_path / "expected_fp32.hex").read_text() == "3fa00000\n"
    assert (tmp_path / "expected_fixed_16_8_saturate.hex").read_text() == "0140\n"  # 1.25 * 256 = 320
    assert man["M"] == 1 and man["N"] == 1 and man["n_blocks"] == 1
    assert json.loads((tmp_path / "manifest.json").read_text())["fmt_a"] == "MXINT8"


def test_mxint4_packing_and_ints(tmp_path):
    # amax 1.5 -> s = 0; MXINT4 codes = x * 2^2: [1.5, -1, 0.25, 0.5] -> 6, -4, 1, 2
    a = np.array([[1.5, -1.0, 0.25, 0.5]])
    b = np.array([[1.0], [0.0], [0.0], [0.0]])
    vectors.export(tmp_path, a, b, "MXINT4/4", per_block=False)
    assert (tmp_path / "a_codes.hex").read_text() == "21c6\n"       # nibbles 6, c(-4), 1, 2
    # integer view in int_bits = 4 bits per lane: same as the codes for MXINT
    assert vectors.int_bits(mxsim.MXINT4) == 4
    assert (tmp_path / "a_ints.hex").read_text() == "21c6\n"
    # 6 * 4 * 2^(0 + 0 - 2 - 2) = 1.5
    assert (tmp_path / "expected_exact.hex").read_text() == f"{np.float64(1.5).view(np.uint64):016x}\n"


def test_multi_block_layout_and_readback(tmp_path):
    rng = np.random.default_rng(0)
    a, b = vectors.adversarial_pair(3, 40, 2, 16, rng)     # short last block (8 of 16)
    man = vectors.export(tmp_path, a, b, "MXINT8/16", accumulators=["exact"])
    assert man["n_blocks"] == 3
    assert len(vectors.read_hex(tmp_path / "a_codes.hex")) == 3 * 3
    assert len(vectors.read_hex(tmp_path / "b_scales.hex")) == 2 * 3
    blk = np.array(vectors.read_hex(tmp_path / "block_exact.hex"), dtype=np.uint64).view(np.float64)
    tot = np.array(vectors.read_hex(tmp_path / "expected_exact.hex"), dtype=np.uint64).view(np.float64)
    # the exact result is the exact sum of the block results (both from mxsim.matmul)
    np.testing.assert_array_equal(blk.reshape(3 * 2, 3).sum(axis=1), tot)
    assert vectors.read_hex(tmp_path / "a_codes.hex", 8, signed=True) is not None


def test_other_formats_export(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 32)), rng.standard_normal((32, 2))
    man = vectors.export(tmp_path / "fp", a, b, "MXFP4_E2M1/32", "MXFP6_E2M3/32", accumulators=["fp32"])
    assert man["int_bits_a"] == vectors.int_bits(mxsim.MXFP4_E2M1)
    man = vectors.export(tmp_path / "bfp", a, b, "BlockFP8/16", accumulators=["exact"])
    assert man["scale_bias_a"] == 127 and man["n_blocks"] == 2


def test_bad_input(tmp_path):
    with pytest.raises(ValueError):
        vectors.export(tmp_path, np.ones((2, 4)), np.ones((5, 2)), "MXINT8/4")
    with pytest.raises(ValueError):
        vectors.export(tmp_path, np.ones((2, 4)), np.ones((4, 2)), "MXINT8/4", "MXINT8/2")
