"""Fast tests of the experiments plumbing: grid parsing, Pareto front, CLI errors, atomic writes."""

import json
import os

import pandas as pd
import pytest

from experiments.cli import main
from experiments.grid import DesignPoint, load_grid, parse_grid
from experiments.sweep import pareto_mask, point_key
from experiments.util import UserError, atomic_dir, write_json_atomic


def test_grid_expands_normalises_and_dedupes():
    settings, pts = parse_grid({
        "settings": {"windows": 3},
        "grid": {"method": ["plain", "lqer"], "w_bits": [3, 4], "rank": [8, 32]},
        "points": [{"method": "fp"}, {"method": "fp", "rank": 64}, {"method": "lqer", "w_bits": 3, "rank": 8}],
    })
    assert settings["windows"] == 3 and settings["seq_len"] == 512
    # plain ignores rank: 2 plain points, 4 lqer points, one fp (twice given), the duplicate lqer point dropped
    assert len(pts) == 2 + 4 + 1
    assert DesignPoint("plain", 3, 8, 16, 0) in pts
    assert DesignPoint("fp", None, None, None, 0) in pts
    assert sum(p.method == "fp" for p in pts) == 1


@pytest.mark.parametrize("data, needle", [
    ({"grid": {"method": ["nope"]}}, "unknown method 'nope'"),
    ({"grid": {"w_bits": [0]}}, "grid.w_bits"),
    ({"grid": {"wbits": [4]}}, "unknown grid key"),
    ({"grid": {"rank": 4}}, "non-empty list"),
    ({"settings": {"windows": 0}, "grid": {}}, "settings.windows"),
    ({"settings": {"foo": 1}}, "unknown setting"),
    ({"stuff": {}}, "unknown table"),
    ({}, "no design points"),
])
def test_grid_errors_are_clear(data, needle):
    with pytest.raises(UserError, match=needle):
        parse_grid(data)


def test_default_grid_is_small_and_valid():
    settings, pts = load_grid(None)
    assert 4 <= len(pts) <= 12
    assert settings["model"] == "smollm2-135m"


def test_point_key_depends_on_point_and_settings():
    s = {"windows": 2}
    a, b = DesignPoint("lqer", 3, 8, 16, 8), DesignPoint("lqer", 3, 8, 16, 16)
    assert point_key(a, s) == point_key(DesignPoint("lqer", 3, 8, 16, 8), dict(s))
    assert point_key(a, s) != point_key(b, s)
    assert point_key(a, s) != point_key(a, {"windows": 3})


def test_pareto_mask_by_hand():
    df = pd.DataFrame({
        "status": ["ok", "ok", "ok", "ok", "error"],
        "area": [1.0, 2.0, 3.0, 2.5, 0.1],
        "perplexity": [30.0, 20.0, 19.0, 25.0, 1.0],
    })
    # point 3 (2.5, 25) is beaten by point 1 (2.0, 20); the failed point never counts
    assert pareto_mask(df).tolist() == [True, True, True, False, False]


def test_cli_bad_input_gives_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["report", "--windows", "0"])
    assert e.value.code == 2
    assert "positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--ranks", "4,x"])
    assert "comma-separated integers" in capsys.readouterr().err

    assert main(["report", "--full", "--windows", "3"]) == 2
    assert "--full" in capsys.readouterr().err
    assert main(["report", "--name", "../escape"]) == 2
    assert "--name" in capsys.readouterr().err
    assert main(["sweep", "--grid", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nmethod = ['lqer', 'magic']\n")
    assert main(["sweep", "--grid", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err
    bad.write_text("[grid\n")
    assert main(["sweep", "--grid", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["table", "--methods", "fp,wat"]) == 2
    assert "unknown method 'wat'" in capsys.readouterr().err


def test_atomic_dir_keeps_old_report_on_failure(tmp_path):
    final = tmp_path / "rep"
    with atomic_dir(final) as d:
        (d / "report.md").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as d:
            (d / "report.md").write_text("half")
            raise RuntimeError("boom")
    assert (final / "report.md").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temp dirs left behind
    with atomic_dir(final) as d:
        (d / "report.md").write_text("v2")
    assert (final / "report.md").read_text() == "v2"


def test_write_json_atomic(tmp_path):
    write_json_atomic(tmp_path / "a" / "x.json", {"b": 1})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"b": 1}
    assert os.listdir(tmp_path / "a") == ["x.json"]


def test_ppl_table_reports_a_failing_optional_method_and_stops_on_a_required_one(monkeypatch):
    import torch

    from experiments import calibration, configs, models, report

    class FakeQuantized:
        def __init__(self, model, cfg, method, **kw):
            self.method = method

        def __enter__(self):
            if self.method in ("qera", "lqer"):
                raise ValueError(f"{self.method} exploded")
            return object(), {"avg_bits_per_weight": 4.5}

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(calibration, "quantized", FakeQuantized)
    monkeypatch.setattr(models, "perplexity", lambda model, windows, progress=True: 10.0)
    monkeypatch.setattr(configs, "config_rank", lambda cfg, m: 32 if m in ("lqer", "qera") else 0)
    windows = torch.zeros(1, 8, dtype=torch.long)
    df, _ = report.ppl_table(None, None, windows, None, ["W4A8"], ["fp", "plain", "qera"], progress=False,
                             log=lambda *_: None)
    assert df["method"].tolist() == ["fp", "plain", "qera"]
    assert df.loc[2, "error"] == "ValueError: qera exploded" and df.loc[2, "perplexity"] != df.loc[2, "perplexity"]
    assert df.loc[:1, "error"].isna().all() and df.loc[1, "bits_per_weight"] == 4.5
    with pytest.raises(ValueError, match="lqer exploded"):
        report.ppl_table(None, None, windows, None, ["W4A8"], ["fp", "lqer"], progress=False, log=lambda *_: None)


def test_ppl_table_runs_config_free_methods_once(monkeypatch):
    import torch

    from experiments import calibration, configs, models, report

    calls = []

    class FakeQuantized:
        def __init__(self, model, cfg, method, **kw):
            calls.append((cfg, method))

        def __enter__(self):
            return object(), {"avg_bits_per_weight": 8.5}

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(calibration, "quantized", FakeQuantized)
    monkeypatch.setattr(models, "perplexity", lambda model, windows, progress=True: 10.0)
    monkeypatch.setattr(configs, "config_rank", lambda cfg, m: 0)
    df, _ = report.ppl_table(None, None, torch.zeros(1, 8, dtype=torch.long), None, ["W4A8", "W3A8"],
                             ["fp", "plain", "llm_int8"], progress=False, log=lambda *_: None)
    assert calls == [("W4A8", "plain"), ("W4A8", "llm_int8"), ("W3A8", "plain")]
    assert df["config"].tolist() == ["fp32", "W4A8", "int8 + fp16 outliers", "W3A8"]


def test_grid_scale_rule_axis():
    """scale_rule is a grid axis: points carry it into their mxsim formats ("MXINT4/16@rceil");
    OCP floor points keep the cache key they had before the axis existed (no scale_rule in the
    hashed dict); an unknown rule is refused naming the key and the allowed rules."""
    from experiments.configs import point_config

    _, pts = parse_grid({"grid": {"method": ["plain"], "w_bits": [4], "scale_rule": ["floor", "rceil"]}})
    assert [p.scale_rule for p in pts] == ["floor", "rceil"]
    assert pts[1].label == "plain W4A8 b16 @rceil" and pts[0].label == "plain W4A8 b16"
    assert "scale_rule" not in pts[0].to_dict() and pts[1].to_dict()["scale_rule"] == "rceil"
    s = {"windows": 1}
    assert point_key(pts[0], s) == point_key(DesignPoint("plain", 4, 8, 16, 0), s)
    assert point_key(pts[1], s) != point_key(pts[0], s)
    cfg = point_config(pts[1])
    assert str(cfg.w_format.scale_rule) == "rceil" and str(cfg.x_format.scale_rule) == "rceil"
    with pytest.raises(UserError, match=r"grid.scale_rule: unknown rule 'round' \(allowed: floor, ceil, even, rceil\)"):
        parse_grid({"grid": {"scale_rule": ["round"]}})


def test_grid_accumulator_axis_canonical_keys_refusals_and_area():
    from experiments.hardware import area_for_point
    from experiments.sweep import point_key

    _, pts = parse_grid({"grid": {"method": ["plain"], "w_bits": [4], "accumulator":
                                  ["float", "fp32", "fixed:24:8:saturate", "fixed:24:8"]}})
    assert [p.accumulator for p in pts] == ["float", "fp32", "fixed:24:8"]  # one spelling, deduplicated
    assert "accumulator" not in pts[0].to_dict() and pts[2].to_dict()["accumulator"] == "fixed:24:8"
    assert pts[2].label.endswith("acc=fixed:24:8")
    # float points keep the cache key they had before the axis existed
    old = DesignPoint("plain", 4, 8, 16, 0)
    assert point_key(pts[0], {}) == point_key(old, {}) and point_key(pts[1], {}) != point_key(old, {})
    # W4A8 blocks of 16: one block sum is 11 + 4 = 15 bits, so a 12-bit accumulator is refused up front
    with pytest.raises(UserError, match=r"accumulator fixed:12:2.*narrower than one block's integer sum"):
        parse_grid({"grid": {"method": ["plain"], "accumulator": ["fixed:12:2"]}})
    with pytest.raises(UserError, match=r"grid.accumulator.*must be one of float, exact, fp32"):
        parse_grid({"grid": {"accumulator": ["fp64"]}})
    # hwmodel prices each accumulator: float is the default aligned unit; wrap < saturate (no clamp logic)
    area = {p.accumulator: area_for_point(p, "smollm2-135m", "fpga")[0] for p in pts}
    wrap = DesignPoint("plain", 4, 8, 16, 0, "floor", "fixed:24:8:wrap")
    assert area_for_point(wrap, "smollm2-135m", "fpga")[0] < area["fixed:24:8"]
    assert area["fp32"] > area["float"]


def test_report_datapath_section_formats_rows_and_skips_in_quick():
    from experiments.report import ReportSettings, datapath_section

    rows = [{"setting": "W8A8-MXINT8", "block": 32, "accumulator": "float", "status": "ok", "ppl": 20.0},
            {"setting": "W8A8-MXINT8", "block": 32, "accumulator": "fixed:20:wrap", "status": "ok", "ppl": 90.5,
             "overflow_rate": 0.0123},
            {"setting": "W8A8-MXINT8", "block": 32, "accumulator": "fixed:12:saturate", "status": "not representable",
             "note": "total_bits 12 is narrower than one block's integer sum"}]
    text = datapath_section(ReportSettings(), rows)
    assert "| fixed:20:wrap | 90.500 (ovf 1.2e-02) |" in text
    assert "| fixed:12:saturate | not representable |" in text
    assert "Skipped in the --quick profile" in datapath_section(ReportSettings(quick=True), [])
