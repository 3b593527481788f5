"""The README's perplexity tables are the committed CSVs they cite (docs/results/*.csv, written
by `mxlab reproduce NAME`): every cell is looked up in its file and must agree to the digits
printed (test_results.py checks that the files regenerate and that the README cites them)."""

import re
from pathlib import Path

import pandas as pd

from experiments.provenance import agrees
from experiments.provenance import markdown_table as table

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
README = (ROOT / "README.md").read_text()

METHODS = {"full precision (fp32)": "fp", "plain MXINT": "plain", "LQER (k = 32)": "lqer", "L2QER (k = 32)": "l2qer",
           "QERA closed form (k = 32)": "qera"}


def _method(label: str) -> str:
    return "llm_int8" if label.startswith("LLM.int8()") else METHODS[label]


def _cell(df, method, config):
    """The row of ``method`` at preset ``config`` (fp and LLM.int8() have their own formats: one row)."""
    hit = df[df.method == method] if method in ("fp", "llm_int8") else df[(df.method == method) & (df.config == config)]
    assert len(hit) == 1, (method, config)
    return hit.iloc[0]


def _check_ppl_table(header: str, w4a8: pd.DataFrame, w3a8: pd.DataFrame):
    _, body = table(README, header)
    assert [_method(r[0]) for r in body] == ["fp", "plain", "lqer", "l2qer", "qera", "llm_int8"]
    for label, p4, p3, bits in body:
        m = _method(label)
        a, b = _cell(w4a8, m, "W4A8"), _cell(w3a8, m, "W3A8")
        assert agrees(p4.strip("*"), a.perplexity), (label, p4)
        assert p3 == "(same)" if m == "llm_int8" else agrees(p3.strip("*"), b.perplexity), (label, p3)
        parts = bits.split(" / ")
        assert agrees(parts[0], a.bits_per_weight) and agrees(parts[-1], b.bits_per_weight), (label, bits)


def test_readme_cpu_table():
    df = pd.read_csv(RESULTS / "smollm2_cpu_table.csv")
    _check_ppl_table("| method | W4A8 ppl | W3A8 ppl | bits/weight (W4 / W3) |", df, df)


def test_readme_rank_sweep():
    df = pd.read_csv(RESULTS / "smollm2_cpu_rank_sweep.csv")
    head, body = table(README, "| k | 8 | 32 | 128 |")
    for row in body:
        for k, cell in zip(head[1:], row[1:]):
            hit = df[(df.method == row[0].lower()) & (df["rank"] == int(k))]
            assert len(hit) == 1 and agrees(cell, hit.perplexity.iloc[0]), (row[0], k, cell)


def test_readme_gpu_table():
    _check_ppl_table("| method (GPU, full split) |", pd.read_csv(RESULTS / "gpu_fullsplit_W4A8.csv"),
                     pd.read_csv(RESULTS / "gpu_fullsplit_W3A8.csv"))


def test_readme_lrc_table():
    df = pd.read_csv(RESULTS / "lrc_table.csv", keep_default_na=False)
    df = df[df.rotation == "none"]
    _, body = table(README, "| method | rank | W4A4 ppl | W4A8 ppl | bits/weight |")
    assert len(body) == 13
    for label, rank, p4, p8, bits, area in body:
        rank = "" if not rank else str(int(rank.rstrip("%")) / 100)
        rows = {s: df[(df.label == label) & (df["rank"] == rank) & (df.setting == s)] for s in ("W4A4", "W4A8")}
        a = rows["W4A4"].iloc[0]
        b = rows["W4A8"].iloc[0] if len(rows["W4A8"]) else a  # FP: one row, the same model for both
        assert agrees(p4, a.ppl) and agrees(p8, b.ppl), (label, rank)
        assert agrees(bits, a.bits_per_weight) and agrees(bits, b.bits_per_weight), (label, rank, bits)
        areas = area.split(" / ")
        assert agrees(areas[0], a.area) and agrees(areas[-1], b.area), (label, rank, area)
    rot = pd.read_csv(RESULTS / "lrc_table.csv", keep_default_na=False)
    rot = rot[(rot.rotation == "auto") & (rot.setting == "W4A4")]
    m = re.search(r"With a random input rotation GPTQ gives ([\d.]+) and LRC\(1\) ([\d.]+) at W4A4", README)
    assert m and agrees(m[1], rot[rot.method == "gptq"].ppl.iloc[0])
    assert agrees(m[2], rot[(rot.method == "lrc1") & (rot["rank"] == "0.1")].ppl.iloc[0])


def test_readme_datapath_table():
    """The README's accumulator table: one column per setting x block in the CSV, every cell
    its perplexity (and 'ovf' rate) or 'not representable' (tests/experiments/
    test_results_datapath.py checks the rest of the study's files)."""
    df = pd.read_csv(RESULTS / "datapath_table.csv")
    head, body = table(README, "| accumulator | W")
    cols = [(h.rsplit(" b", 1)[0], int(h.rsplit(" b", 1)[1])) for h in head[1:]]
    assert set(cols) == set(zip(df.setting, df.block))
    for acc, *cells in body:
        for (setting, block), cell in zip(cols, cells):
            r = df[(df.setting == setting) & (df.block == block) & (df.accumulator == acc)].iloc[0]
            if r.status != "ok":
                assert cell == "not representable", (acc, cell)
                continue
            m = re.fullmatch(r"([\d.]+)(?: \(ovf ([\d.e+-]+)\))?", cell)
            assert m and agrees(m[1], r.ppl), (acc, cell)
            if m[2]:
                mant, exp = m[2].split("e")
                assert agrees(mant, r.overflow_rate / 10 ** int(exp)), (acc, cell)
            else:
                assert pd.isna(r.overflow_rate) or r.overflow_rate == 0, acc
    assert len(body) == df.accumulator.nunique()


def test_lrc_doc_table():
    """docs/lrc.md's full table (every rotation): each cell agrees with docs/results/lrc_table.csv."""
    doc = (ROOT / "docs" / "lrc.md").read_text()
    df = pd.read_csv(RESULTS / "lrc_table.csv", keep_default_na=False)
    _, body = table(doc, "| setting | method | rank | rotation | ppl |")
    assert len(body) == len(df)
    for setting, label, rank, rotation, ppl, bits, qs, area, ratio in body:
        rank = "" if not rank else str(int(rank.rstrip("%")) / 100)
        hit = df[(df.label == label) & (df["rank"] == rank) & (df.rotation == (rotation or "none"))
                 & (df.setting == ("W4A4" if setting == "–" else setting))]
        assert len(hit) == 1, (setting, label, rank, rotation)
        r = hit.iloc[0]
        for printed, col in ((ppl, "ppl"), (bits, "bits_per_weight"), (qs, "quantize_s"), (area, "area"),
                             (ratio, "area_ratio_to_fp16")):
            assert agrees(printed, r[col] if r[col] != "" else None), (setting, label, rank, rotation, col, printed)
