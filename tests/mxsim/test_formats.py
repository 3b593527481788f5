import pytest

import mxsim
from mxsim.formats import get_format


def test_ocp_element_constants():
    # OCP MX v1.0, Tables 2-3: emax and max normal of each element type.
    assert (mxsim.MXFP8_E4M3.emax_elem, mxsim.MXFP8_E4M3.max_normal) == (8, 448.0)
    assert (mxsim.MXFP8_E5M2.emax_elem, mxsim.MXFP8_E5M2.max_normal) == (15, 57344.0)
    assert (mxsim.MXFP6_E3M2.emax_elem, mxsim.MXFP6_E3M2.max_normal) == (4, 28.0)
    assert (mxsim.MXFP6_E2M3.emax_elem, mxsim.MXFP6_E2M3.max_normal) == (2, 7.5)
    assert (mxsim.MXFP4_E2M1.emax_elem, mxsim.MXFP4_E2M1.max_normal) == (2, 6.0)
    # MXINT8: implicit scale 2^-6, symmetric range +-127/64.
    assert mxsim.MXINT8.element_max == 127 / 64
    assert mxsim.MXINT4.element_max == 7 / 4


def test_bits_per_element():
    assert mxsim.MXINT4.bits_per_element == 4 + 8 / 32
    assert mxsim.MXINT4.with_block_size(16).bits_per_element == 4.5
    assert mxsim.BlockFP(4).bits_per_element == 4 + 8 / 16


def test_blockfp_exponent_range():
    f = mxsim.BlockFP(4)
    assert (f.bias, f.exp_min, f.exp_max, f.nan_code) == (127, -127, 127, 255)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_bad_block_size(bad):
    with pytest.raises(ValueError, match="block_size"):
        mxsim.MXINT8.with_block_size(bad)


def test_get_format():
    assert get_format("mxint4/16") == mxsim.MXINT4.with_block_size(16)
    assert get_format("BlockFP3") == mxsim.BlockFP(3)
    # every MXINTb with b in 2..8 has a name, not only the four preset constants
    assert get_format("MXINT5") == mxsim.MXIntFormat(5)
    with pytest.raises(ValueError, match="unknown format name"):
        get_format("MXINT9")
