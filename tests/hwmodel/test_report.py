"""Reports, outlier files, CLI, plot."""

import json
import sys
import types

import pandas as pd
import pytest

from hwmodel import cli
from hwmodel.designs.base import Layer
from hwmodel.report import layer_report, load_outliers, model_report
from hwmodel.shapes import get_model


def test_layer_report_ratio_and_breakdown():
    s, bd = layer_report(Layer(1, 32, 8), "fp16,gptq", tech="fpga", params={"gptq": {"groups": 2}})
    assert list(s.design) == ["fp16", "gptq"]
    assert s.loc[s.design == "fp16", "ratio_to_fp16"].iloc[0] == 1.0
    # breakdown areas add up to the summary area
    for d in ("fp16", "gptq"):
        assert bd[bd.design == d]["area"].sum() == pytest.approx(s.loc[s.design == d, "area"].iloc[0])
    assert {"path", "component", "a", "b", "count", "unit_cost", "area", "unit", "source"} <= set(bd.columns)


def test_shapes():
    m = get_model("llama-7b")
    assert (m.hidden, m.intermediate, m.layers) == (4096, 11008, 32)
    assert len(m.layer_shapes("all")) == 32 * 7 and len(m.layer_shapes("mlp")) == 32 * 3
    mis = get_model("mistral-7b")
    assert mis.kv_dim == 128 * 8  # 8 KV heads of 4096/32
    smol = get_model("smollm2-135m")
    assert smol.kv_dim == 64 * 3
    assert get_model("opt-125m").linears()[-1] == ("mlp", "fc2", 3072, 768)
    with pytest.raises(ValueError, match="model"):
        get_model("gpt-5")


def test_model_report_sums_over_blocks():
    r = model_report("opt-125m", ["fp16"], layer="mlp")
    # OPT-125m MLP per block: fc1 768x3072 and fc2 3072x768, 16-bit weights, 12 blocks
    assert r.totals["mem_weights_bits"].iloc[0] == 12 * 2 * 768 * 3072 * 16
    # cycles: 12 blocks x (3072 outputs x 768/16 + 768 outputs x 3072/16)
    assert r.totals["cycles"].iloc[0] == 12 * (3072 * 48 + 768 * 192)
    assert set(r.linears.projection) == {"fc1", "fc2"}
    assert r.linears["blocks"].tolist() == [12, 12]


def test_outliers_file(tmp_path):
    p = tmp_path / "out.json"
    names = {f"model.decoder.layers.{i}.fc1": 10 * (i + 1) for i in range(12)}
    p.write_text(json.dumps(names))
    o = load_outliers(p)
    r = model_report("opt-125m", ["llm.int8"], layer="mlp", outliers=o)
    r0 = model_report("opt-125m", ["llm.int8"], layer="mlp", outliers=0)
    # fc1 weights: (768 - n) x 3072 x 8 + n x 3072 x 16 -> extra n x 3072 x 8 bits, n = 10 + 20 + ... + 120 = 780
    fc1 = r.linears[r.linears.projection == "fc1"]["mem_weights_bits"].iloc[0]
    fc1_0 = r0.linears[r0.linears.projection == "fc1"]["mem_weights_bits"].iloc[0]
    assert fc1 - fc1_0 == 780 * 3072 * 8
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x": -1}))
    with pytest.raises(ValueError, match="integer"):
        load_outliers(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_outliers(tmp_path / "none.json")


def test_cli_report_md_csv_plot(tmp_path, capsys):
    png = tmp_path / "a.png"
    assert cli.main(["report", "--model", "smollm2-135m", "--designs", "lqer-mxint,fp16",
                     "--tech", "fpga", "--format", "md", "--layer", "mlp", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| lqer-mxint" in out and "area_ratio_to_fp16" in out
    assert png.stat().st_size > 1000
    assert cli.main(["report", "--model", "smollm2-135m", "--designs", "fp16", "--format", "csv",
                     "--outliers", "5"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("design,model,area")


def test_cli_errors(capsys):
    assert cli.main(["report", "--model", "llama-7b", "--designs", "nope"]) == 2
    assert "design" in capsys.readouterr().err
    assert cli.main(["report", "--model", "llama-7b", "--tech", "quantum"]) == 2
    assert "tech" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["report", "--help"])


def test_cli_calibrate_forwards(monkeypatch):
    seen = {}
    fake = types.ModuleType("hwmodel.calibrate")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "hwmodel.calibrate", fake)
    import hwmodel

    monkeypatch.setattr(hwmodel, "calibrate", fake, raising=False)
    assert cli.main(["calibrate", "--tech", "ecp5", "--quiet"]) == 0
    assert seen["argv"] == ["--tech", "ecp5", "--quiet"]


def test_cli_calibrate_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hwmodel.calibrate", None)  # import raises ImportError
    import hwmodel

    monkeypatch.delattr(hwmodel, "calibrate", raising=False)
    assert cli.main(["calibrate", "--tech", "xilinx"]) == 2
    assert "hwmodel.calibrate" in capsys.readouterr().err
