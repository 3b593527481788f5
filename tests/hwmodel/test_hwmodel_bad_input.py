"""Bad input to the hwmodel command line: one line `hwmodel CMD: error: ...` naming the argument,
exit 2, checked before any work, and no output file left behind (issue 13)."""

import os
import stat

import pytest

from hwmodel.cli import main


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    return f


@pytest.mark.parametrize("argv, needles", [
    (["report", "--model", "llama-70b"], ["--model", "llama-7b"]),          # lists the known shapes
    (["report", "--model", "llama-7b", "--tech", "fgpa"], ["--tech", "fpga"]),
    (["report", "--model", "llama-7b", "--designs", "fp16,lqer-mx"], ["--designs", "lqer-mxint"]),
    (["report", "--model", "llama-7b", "--designs", ","], ["--designs"]),
    (["report", "--model", "llama-7b", "--tokens", "0"], ["--tokens"]),
    (["report", "--model", "llama-7b", "--lanes", "-1"], ["--lanes"]),
    (["report", "--model", "llama-7b", "--layer", "ffn"], ["--layer", "mlp"]),
    (["report", "--model", "llama-7b", "--outliers", "3", "--outliers-file", "x.json"], ["--outliers-file"]),
    (["report", "--model", "llama-7b", "--outliers-file", "{tmp}/missing.json"], ["--outliers-file", "missing.json"]),
    (["report", "--model", "llama-7b", "--plot", "{file}/deep/area.png"], ["--plot", "not a directory"]),
    (["report", "--model", "llama-7b", "--plot", "{tmp}"], ["--plot", "is a directory"]),
    (["report", "--model", "llama-7b", "--plot", "{tmp}/area.xyz"], ["--plot", "png"]),
    (["paper", "--tech", "tsmc3"], ["--tech"]),
    (["components", "--tech", "{tmp}/no_table.csv"], ["--tech", "no_table.csv"]),
    (["calibrate", "--tech", "fgpa"], ["fgpa", "xilinx"]),
    (["calibrate", "--tech", "xilinx", "--out", "{file}/yosys.csv"], ["--out", "not a directory"]),  # before Yosys
])
def test_report_mistakes_are_one_line_exit_2_and_write_nothing(argv, needles, tmp_path, a_file, capsys):
    argv = [a.format(tmp=tmp_path, file=a_file) for a in argv]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own checks (types, choices)
        rc = e.code
    cap = capsys.readouterr()
    assert rc == 2
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hwmodel {argv[0]}: error: "), cap.err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert cap.out == ""  # checked before the tables are printed
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_plot_is_written_atomically_with_the_umask(tmp_path, capsys):
    old = os.umask(0o002)
    try:
        assert main(["report", "--model", "opt-125m", "--designs", "fp16,mxint", "--plot",
                     str(tmp_path / "new" / "area.png")]) == 0
    finally:
        os.umask(old)
    png = tmp_path / "new" / "area.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE(png.stat().st_mode) == 0o664
    assert os.listdir(tmp_path / "new") == ["area.png"]
