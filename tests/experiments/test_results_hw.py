"""The hardware tables of the README, docs/hwmodel.md and docs/hwmodel_rtl.md are the committed
docs/results/hw_paper*.csv and hw_composite.csv (written by `mxlab reproduce hw_paper hw_composite`;
test_results.py holds that they regenerate byte for byte): every number in those tables is looked
up in the CSV and must agree to the digits printed."""

import re
from pathlib import Path

import pandas as pd
import pytest

from experiments.provenance import agrees
from experiments.provenance import markdown_table as table

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
README = (ROOT / "README.md").read_text()
HWMODEL = (ROOT / "docs" / "hwmodel.md").read_text()
RTL = (ROOT / "docs" / "hwmodel_rtl.md").read_text()
PAPER = pd.read_csv(RESULTS / "hw_paper.csv")
YOSYS = pd.read_csv(RESULTS / "hw_paper_yosys.csv")
COMPOSITE = pd.read_csv(RESULTS / "hw_composite.csv")


def paper_row(design: str, rows: str = "paper assumptions"):
    hit = PAPER[(PAPER.design == design) & (PAPER.rows == rows)]
    assert len(hit) == 1, (design, rows)
    return hit.iloc[0]


def yosys_row(tech: str, design: str):
    hit = YOSYS[(YOSYS.tech == tech) & (YOSYS.design == design)]
    assert len(hit) == 1, (tech, design)
    return hit.iloc[0]


def composite_row(tech: str, name: str):
    hit = COMPOSITE[(COMPOSITE.tech == tech) & (COMPOSITE.composite == name)]
    assert len(hit) == 1, (tech, name)
    return hit.iloc[0]


# the README's names for the Yosys designs (hwmodel.rtl_designs.PAPER_DESIGNS)
README_YOSYS = {"FP16": "FP16", "LLM.int4() (353 outlier columns)": "LLM.int4()",
                "GPTQ/AWQ W4, 128 groups": "GPTQ/AWQ W4", "LQER int16 low-rank / int4 W": "LQER int16/int4",
                "LQER-MXINT 8b low-rank / 4b W": "LQER-MXINT 8/4", "LQER-MXINT 6b low-rank / 4b W": "LQER-MXINT 6/4"}


def test_readme_hardware_cost_table():
    _, body = table(README, "| design (LLaMA-7B MLP layer")
    assert [r[0] for r in body] == list(README_YOSYS)
    for design, paper_ratio, model, fit, yosys in body:
        p = paper_row(design)
        assert agrees(paper_ratio, p.paper_ratio) and agrees(model, p.model_ratio) and agrees(fit, p.fit_ratio), design
        y = yosys_row("xilinx", README_YOSYS[design])
        m = re.fullmatch(r"([\d.]+) \(([\d,]+)( LUT)?\)", yosys)
        assert m and agrees(m[1], y.ratio) and agrees(m[2], y.lut), (design, yosys)
    m = re.search(r"main LQER-MXINT 8/4 GEMM unit agrees with the sheet \(([\d,]+) vs ([\d,]+)\)", README)
    assert m and f"M = {m[1].replace(',', '')}," in yosys_row("xilinx", "LQER-MXINT 8/4").how
    assert agrees(m[2], 1782)  # the sheet's M (hwmodel.paper's lqer-mxint-8-4 formula)
    assert "docs/results/hw_paper.csv" in README and "mxlab reproduce hw_paper" in README


def _readme_composite_name(name: str) -> str:
    m = re.fullmatch(r"MX dot (\d)×(\d), k=(\d+)", name)
    if m:
        return f"MX dot k={m[3]} {m[1]}x{m[2]}"
    return {"LLM.int8 scatter/gather path": "LLM.int8() scatter/gather k=16"}.get(name, name)


def test_readme_composite_table():
    _, body = table(README, "| composite | sky130 model")
    assert len(body) == len(COMPOSITE) // 4
    for name, model, whole, diff, xdiff in body:
        s = composite_row("sky130", _readme_composite_name(name))
        x = composite_row("xilinx", _readme_composite_name(name))
        assert agrees(model, s.analytical) and agrees(whole, s.synthesized), name
        assert agrees(diff, s.diff_pct) and agrees(xdiff, x.diff_pct), name
    assert "docs/results/hw_composite.csv" in README and "mxlab reproduce hw_composite" in README


def test_rtl_doc_composite_table():
    head, body = table(RTL, "| composite | sky130 model")
    techs = ["sky130", "sky130", "sky130", "xilinx", "ecp5", "cmos"]
    cols = ["analytical", "synthesized", "diff_pct", "diff_pct", "diff_pct", "diff_pct"]
    assert len(head) == 7 and len(body) == len(COMPOSITE) // 4
    for row in body:
        name = row[0].replace("×", "x")
        for cell, tech, col in zip(row[1:], techs, cols):
            assert agrees(cell, composite_row(tech, name)[col]), (name, tech, col, cell)


@pytest.mark.parametrize("tech", ["xilinx", "sky130"])
def test_rtl_doc_paper_tables(tech):
    head, body = table(RTL, f"| design | Yosys {tech} (")
    assert head[1:7] == [head[1], "ratio to FP16", "paper LUT", "paper ratio", "ratio diff % (Yosys vs paper)",
                         "analytical model ratio"]
    assert len(body) == (YOSYS.tech == tech).sum()
    for row in body:
        y = yosys_row(tech, row[0])
        for cell, col in zip(row[1:7], ["lut", "ratio", "paper_lut", "paper_ratio", "diff_pct", "model_ratio"]):
            assert agrees(cell, y[col]), (tech, row[0], col, cell)
        assert row[7] == y.how


def test_hwmodel_doc_paper_table():
    head, body = table(HWMODEL, "| design                           | rows ")
    numeric = [c for c in head if c in PAPER.columns and c not in ("design", "rows", "within_10%_fit")]
    assert len(body) == len(PAPER) and len(numeric) >= 8
    for row in body:
        cells = dict(zip(head, row))
        p = paper_row(cells["design"], cells["rows"])
        for c in numeric:
            assert agrees(cells[c], p[c]), (cells["design"], cells["rows"], c, cells[c])


def test_readme_accumulator_pricing_table():
    from experiments.results_hw import HW_ACCUMULATORS

    acc = pd.read_csv(RESULTS / "hw_accumulators.csv")
    head, body = table(README, "| design | aligned (default) |")
    assert len(head) == 1 + len(HW_ACCUMULATORS) and len(body) * len(HW_ACCUMULATORS) == len(acc)
    for row in body:
        for cell, a in zip(row[1:], HW_ACCUMULATORS):
            hit = acc[(acc.design == row[0]) & (acc.accumulator == a)]
            assert len(hit) == 1 and agrees(cell, hit.area.iloc[0]), (row[0], a, cell)
    assert "docs/results/hw_accumulators.csv" in README and "mxlab reproduce hw_accumulators" in README
