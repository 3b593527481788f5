"""The paper's figures, the workbook arithmetic, and the model beside them."""

import pytest

from hwmodel import cli
from hwmodel.paper import FIGURES, PAPER_FIGURES, fit_fp16_scale, headline, paper_table


def test_workbook_arithmetic():
    assert len(PAPER_FIGURES) == 9
    assert FIGURES["fp16"].area == 6125
    assert FIGURES["llm.int4"].area == 130019  # 129619 + 400
    assert FIGURES["gptq-w4"].area == 85714 and FIGURES["gptq-w2"].area == 85733
    assert FIGURES["lqer-int"].area == 6955
    assert FIGURES["lqer-mxint-8-4"].area == 1993.375  # (5164-1782)/16 + 1782
    assert FIGURES["lqer-mxint-6-4"].area == 1401.0625  # (3727-1246)/16 + 1246
    assert round(FIGURES["llm.int4"].ratio, 2) == 21.23
    assert round(FIGURES["gptq-w4"].ratio, 2) == 13.99
    assert round(FIGURES["omniquant-w6a6"].ratio, 3) == 0.386
    assert round(FIGURES["aqas-w4a8"].ratio, 3) == 0.451
    assert round(FIGURES["lqer-int"].ratio, 3) == 1.136
    assert round(FIGURES["lqer-mxint-8-4"].ratio, 3) == 0.325
    assert round(FIGURES["lqer-mxint-6-4"].ratio, 3) == 0.229


def test_headline():
    h = headline()
    assert h["rounded"] == 1.36  # 0.45 / 0.33
    assert h["unrounded"] == pytest.approx(2760 / 1993.375)


def test_fp16_fit_is_one_parameter():
    # derived FP16 design: 16 x 115 + 16 x 143 = 4128 LUT -> s = 6125 / 4128
    s, t = fit_fp16_scale("fpga")
    assert s == pytest.approx(6125 / 4128)
    assert t.cost("fp16_mul")[0] == pytest.approx(115 * 6125 / 4128)
    assert "FIT" in t.cost("fp16_add")[1]
    assert t.cost("int_mul", 8, 4)[0] == 24  # nothing else changes


def test_paper_table():
    df = paper_table("fpga")
    main = df[df.rows == "paper assumptions"].set_index("design")
    assert len(main) == 9
    assert main.loc["FP16", "fit_ratio"] == pytest.approx(1.0)
    assert (main["paper_ratio"] == [f.ratio for f in PAPER_FIGURES]).all()
    # the dequantize/scatter-heavy designs land within 10% of the paper's ratios after the FP16 fit
    for d in ("LLM.int4() (353 outlier columns)", "GPTQ/AWQ W4, 128 groups", "GPTQ/AWQ W2, 128 groups",
              "LQER int16 low-rank / int4 W"):
        assert abs(main.loc[d, "fit_ratio"] / main.loc[d, "paper_ratio"] - 1) <= 0.10, d
    # ordering the paper reports: LLM.int4 > GPTQ > LQER-int > FP16 > LQER-MXINT 8/4 > 6/4
    r = main["fit_ratio"]
    assert (r["LLM.int4() (353 outlier columns)"] > r["GPTQ/AWQ W4, 128 groups"] > r["LQER int16 low-rank / int4 W"]
            > r["FP16"] > r["LQER-MXINT 8b low-rank / 4b W"] > r["LQER-MXINT 6b low-rank / 4b W"])
    assert main["gap"].str.len().min() > 10  # every row explains its gap


def test_cli_paper(capsys):
    assert cli.main(["paper", "--no-sensitivity"]) == 0
    out = capsys.readouterr().out
    assert "MEASURED" in out and "LQER-MXINT 8b" in out and "1.36" in out
