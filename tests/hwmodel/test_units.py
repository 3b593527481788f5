"""Unit-cost tables: schema, lookup and scaling, round trip, hand checks of the FPGA derivations."""

import pandas as pd
import pytest

from hwmodel.units import COLUMNS, COMPONENTS, UnitCostTable, load_table, table_path


def small_table():
    return UnitCostTable(pd.DataFrame([
        ("int_mul", 4, 4, 10.0, "LUT", "made up"),
        ("int_mul", 8, 8, 40.0, "LUT", "made up"),
        ("int_add", 8, 0, 8.0, "LUT", "made up"),
        ("fp16_mul", 0, 0, 100.0, "LUT", "made up"),
    ], columns=COLUMNS), name="small")


def test_exact_row_wins():
    t = small_table()
    assert t.cost("int_mul", 8, 8) == (40.0, "made up")


def test_scaling_from_nearest_row():
    t = small_table()
    # int_mul(6,6): size 36; nearest by |log| is (8,8) (log 64/36 = 0.575 < log 36/16 = 0.811)
    # cost = 40 * 36/64 = 22.5
    cost, note = t.cost("int_mul", 6, 6)
    assert cost == pytest.approx(22.5)
    assert "scaled" in note and "(8,8)" in note
    # int_add(24): 8 * 24/8 = 24
    assert t.cost("int_add", 24)[0] == pytest.approx(24.0)
    # constant law: used as is
    assert t.cost("fp16_mul", 3, 0)[0] == 100.0


def test_missing_and_unknown_component():
    t = small_table()
    with pytest.raises(ValueError, match="comparator"):
        t.cost("comparator", 8)
    with pytest.raises(ValueError, match="component"):
        t.cost("warp_drive", 8)
    with pytest.raises(ValueError, match="component"):
        UnitCostTable(pd.DataFrame([("warp_drive", 1, 0, 1.0, "LUT", "")], columns=COLUMNS))
    with pytest.raises(ValueError, match="a must be"):
        t.cost("int_add", -3)


def test_round_trip(tmp_path):
    t = small_table()
    p = tmp_path / "mine.csv"
    t.to_csv(p)
    back = UnitCostTable.from_csv(p)
    pd.testing.assert_frame_equal(back.rows, t.rows)
    assert list(pd.read_csv(p).columns) == COLUMNS
    # a user's table is accepted as --tech path
    assert load_table(str(p)).cost("int_mul", 4, 4)[0] == 10.0


def test_unknown_tech():
    with pytest.raises(ValueError, match="tech"):
        load_table("quantum")
    with pytest.raises(ValueError, match="tech"):
        table_path("/nonexistent/table.csv")


@pytest.mark.parametrize("tech", ["fpga", "asic"])
def test_hand_tables_cover_every_component_with_sources(tech):
    t = load_table(tech)
    assert set(COMPONENTS) <= set(t.rows.component)
    assert (t.rows.source.str.len() > 10).all()
    assert len(set(t.rows.unit)) == 1


def test_fpga_hand_derivations():
    t = load_table("fpga")
    # n-bit adder = n LUTs
    assert t.cost("int_add", 16)[0] == 16
    # signed 8x4 multiplier: ceil(8*4/2) + max(8,4) = 16 + 8 = 24
    assert t.cost("int_mul", 8, 4)[0] == 24
    # fp16_mul = int_mul(11,11) [61+11=72] + 2 int_add(6) [12] + mux2(11) [6] + int_add(11) [11]
    #            + 2 comparator(5) [3+3] + mux2(16) [8] = 115
    assert t.cost("fp16_mul")[0] == 115
    # fp16_add = 2 int_add(6) [12] + 2 mux2(15) [16] + 2 barrel(14,4) [2*28] + int_add(14) [14]
    #            + leading_one(14) [14] + int_add(11) [11] + int_add(6) [6] + specials [6+8] = 143
    assert t.cost("fp16_add")[0] == 143
    # register bits and SRAM bits are not LUTs
    assert t.cost("register_bit")[0] == 0 and t.cost("sram_bit")[0] == 0


def test_asic_hand_derivations():
    t = load_table("asic")
    # 8-bit ripple adder: 8 FA x 6 GE = 48
    assert t.cost("int_add", 8)[0] == 48
    # 4x4 array multiplier: 16 AND2 x 1.25 + 4*3 FA x 6 = 20 + 72 = 92
    assert t.cost("int_mul", 4, 4)[0] == pytest.approx(92)
    assert t.cost("register_bit")[0] == 5
