"""experiments.lrc_table: area columns (hwmodel, SmolLM2 shapes, FPGA LUT), the CSV output, and the
committed docs/results/lrc_table.csv regenerated identically from its measured columns.

Hand-computed areas of the largest SmolLM2 linear (down_proj, K = 1536 -> N = 576, 1 token, 16 lanes,
blocks of 32) with hwmodel/costs/fpga_lut.csv (rows not in the table are scaled from the nearest row,
docs/hwmodel.md "Lookup"):

MXINT4 x MXINT4 unit (lanes 16 < block 32): 16 int_mul 4x4 (12) = 192; products 4+4-1 = 7 bits
(mxsim.datapath_widths), 16-input adder tree from 7 bits: 8·8 + 4·9 + 2·10 + 1·11 = 131; block
integer sum fixed_acc 7+5 = 12 bits: 12; shared exponents 8+1 = 9 bits: 2 exp_add(9) = 18,
comparator(9) 4.5, mux2(9) 4.5; accumulator 7+5+ceil(log2 48)+1 = 19 bits: fixed_acc 19 (scaled
from 24) = 19, alignment barrel shifter (19 data, 5 shift bits; scaled from the (16,4) row:
32·95/64) = 47.5.  Sum 428.5.
RTN / GPTQ (mxint) = 428.5 + output cast to MXINT4/32 (max_tree(8,2) 8 + exp_add(8) 8 + shifter(19,5)
47.5) = 492.  LRC = input quantizer (8 + 8 + shifter(11,4) 22 = 38) + 428.5 + int_to_fp16(19) (scaled
from 16: 80·19/16 = 95) + exp_add(9) 9 + two FP16 GEMM units (2 · (16·115 + 16·143) = 8256) + one
fp16_add 143 = 8969.5.  FP16 = 16·115 + 16·143 = 4128.  A dense input rotation adds an FP16 GEMM
unit (4128) and an FP16 -> MXINT4/32 input quantizer (38): rotated RTN = 492 + 4166 = 4658.
(Before products took mxsim's a+b-1 bits, hwmodel used a+b: RTN 514, LRC 8994.)
"""

import csv
import json
from pathlib import Path

import pytest

from experiments import lrc_table
from experiments.hardware import model_area

ROOT = Path(__file__).resolve().parents[2]
SHAPE = "smollm2-135m"


def _run_table(src, out):
    records = lrc_table.table_records(lrc_table.read_jsonl_rows([src]), SHAPE, "fpga")
    lrc_table.write_csv(out, records)
    return lrc_table.markdown(records)


ROWS = [
    {"setting": "W4A4", "method": "fp", "rank": None, "rotation": "none", "ppl": 27.61, "bits_per_weight": 16.0,
     "quantize_s": None},
    {"setting": "W4A4", "method": "rtn", "rank": None, "rotation": "none", "ppl": 97.85, "bits_per_weight": 4.25,
     "quantize_s": 0.8},
    {"setting": "W4A4", "method": "lrc1", "rank": 0.1, "rotation": "none", "ppl": 42.98, "bits_per_weight": 6.61,
     "quantize_s": 171.0, "sum_final_layer_loss": 1.0},
    {"setting": "W4A8", "method": "qera", "rank": 0.3, "rotation": "none", "ppl": 28.55, "bits_per_weight": 7.92,
     "quantize_s": 59.8},
    {"setting": "W4A4", "method": "gptq", "rank": None, "rotation": "auto", "ppl": 54.44, "bits_per_weight": 4.25,
     "quantize_s": 90.0},
    {"setting": "W4A4", "method": "lrc5", "rank": 0.3, "rotation": "auto", "ppl": 30.0, "bits_per_weight": 11.37,
     "quantize_s": 900.0},
]
# the same rows mapped by hand to hwmodel designs (formats as lrc_table.row_config; ranks floor(f · 576))
HAND_DESIGNS = [
    ("fp16", {}),
    ("mxint", {"w_fmt": "MXINT4/32", "x_fmt": "MXINT4/32"}),
    ("lrc", {"w_fmt": "MXINT4/32", "x_fmt": "MXINT4/32", "rank": 57}),
    ("lqer-mxint", {"w_fmt": "MXINT4/32", "x_fmt": "MXINT8/32", "lr_fmt": "MXINT8/32", "lr_block_axis": "last",
                    "rank": 172}),
    ("mxint", {"w_fmt": "MXINT4/32", "x_fmt": "MXINT4/32", "input_rotation": "dense"}),
    ("lrc", {"w_fmt": "MXINT4/32", "x_fmt": "MXINT4/32", "rank": 172, "input_rotation": "dense"}),
]
LABELS = ["FP", "RTN", "LRC(1)", "QERA-exact", "GPTQ (Σx)", "LRC(5)"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("table")
    src = d / "rows.jsonl"
    lines = [json.dumps({"event": "calibrated", "load_s": 1.0})] + [json.dumps(r) for r in ROWS] + ["not json"]
    src.write_text("\n".join(lines) + "\n")
    out = d / "out" / "table.csv"
    md = [l for l in _run_table(src, out).splitlines() if l.startswith("|")]
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    return md, rows, out


def test_markdown_columns_and_order(table):
    md, _, _ = table
    head = [c.strip() for c in md[0].strip("|").split("|")]
    assert head == ["setting", "method", "rank", "rotation", "ppl", "bits/weight", "quantize s", "area (LUT)",
                    "area / FP16"]
    body = [[c.strip() for c in l.strip("|").split("|")] for l in md[2:]]
    assert [b[1] for b in body] == LABELS
    assert body[0][0] == "–" and body[0][3] == ""  # FP row: no setting, no rotation
    assert [b[2] for b in body] == ["", "", "10%", "30%", "", "30%"]
    assert [b[4] for b in body] == ["27.61", "97.85", "42.98", "28.55", "54.44", "30.00"]
    # hand-computed areas (module docstring)
    assert body[0][7] == "4128" and body[0][8] == "1.00"
    assert body[1][7] == "492" and body[1][8] == f"{492 / 4128:.2f}"
    assert body[2][7] == "8969.5"
    assert body[4][7] == "4658"


def test_csv_rows_match_model_area_of_hand_mapped_designs(table):
    _, rows, _ = table
    assert [r["label"] for r in rows] == LABELS
    assert [r["method"] for r in rows] == [r["method"] for r in ROWS]
    for r, (design, params) in zip(rows, HAND_DESIGNS):
        tot, _ = model_area(SHAPE, design, params, "fpga")
        assert float(r["area"]) == pytest.approx(float(tot["area"])), (r["label"], design)
        assert r["hw_design"] == design and r["unit"] == "LUT"
        assert float(r["area_ratio_to_fp16"]) == pytest.approx(float(r["area"]) / 4128)
    assert [r["hw_rank"] for r in rows] == ["", "", "57", "172", "", "172"]
    assert [r["hw_input_rotation"] for r in rows] == ["", "none", "none", "none", "dense", "dense"]


def test_hand_areas_and_lrc_exceeds_rtn(table):
    _, rows, _ = table
    area = {r["label"]: float(r["area"]) for r in rows}
    assert area["FP"] == 4128
    assert area["RTN"] == 492
    assert area["LRC(1)"] == 8969.5
    assert area["LRC(1)"] > area["RTN"]  # same setting (W4A4, no rotation)
    assert area["GPTQ (Σx)"] == 492 + 4128 + 38  # rotated: + FP16 GEMM stage + input quantizer
    assert area["LRC(5)"] == 8969.5 + 4128  # rotated LRC: exactly one FP16 GEMM stage more (FP16 in already)


def test_csv_written_atomically(tmp_path, monkeypatch):
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(ROWS[1]) + "\n")
    out = tmp_path / "t.csv"
    out.write_text("old\n")
    import os

    def boom(a, b):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        _run_table(src, out)
    assert out.read_text() == "old\n"  # untouched on failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl", "t.csv"]  # temp file removed
    monkeypatch.undo()
    _run_table(src, out)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["label"] == "RTN"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl", "t.csv"]


def test_mxlab_reproduce_lrc_table_writes_csv_and_meta(tmp_path, capsys):
    """`mxlab reproduce lrc_table --out DIR`: the committed CSV byte for byte, and a meta JSON with
    each row's resolved QuantConfig and hardware design, the commit and the machine."""
    from experiments.cli import main

    assert main(["reproduce", "lrc_table", "--out", str(tmp_path)]) == 0
    committed = ROOT / "docs" / "results"
    assert (tmp_path / "lrc_table.csv").read_bytes() == (committed / "lrc_table.csv").read_bytes()
    meta = json.loads((tmp_path / "lrc_table.meta.json").read_text())
    assert {"command", "measured_on", "areas_commit", "areas_on", "evaluation", "rows"} <= set(meta)
    rows = list(csv.DictReader(open(committed / "lrc_table.csv", newline="")))
    assert len(meta["rows"]) == len(rows)
    lrc5 = next(r for r in meta["rows"] if r["task"] == "lrc5")
    # LRC(5): method lrc, iterations 5, rank 10% of min(d_in, d_out), W MXINT4/32
    assert lrc5["config"]["method"] == "lrc" and lrc5["config"]["options"]["iterations"] == 5
    assert lrc5["config"]["rank"] == 0.1 and lrc5["config"]["w_format"] == "MXINT4/32"
    assert lrc5["hw_design"] == "lrc" and lrc5["hw_params"]["rank"] == 0.1  # hwmodel resolves mxsim.Rank per layer
    lrc5_csv = next(r for r in rows if r["method"] == "lrc5")
    assert lrc5_csv["hw_rank"] == "57"  # floor(0.1 * 576), the largest layer's
