"""The streaming benchmark numbers quoted in docs/streaming.md and the README are the committed
CSVs' (docs/results/streaming_*.csv, written by benchmarks/bench_streaming.py --out): every row of
each file is in the document's table, every cell agrees to the digits printed, and the README's
sentence quotes the deepest run."""

import re
from pathlib import Path

import pytest

from experiments.provenance import agrees, markdown_table, read_table

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
DOC = (ROOT / "docs" / "streaming.md").read_text()
README = (ROOT / "README.md").read_text()
FILES = sorted(p.name[:-len(".csv")] for p in RESULTS.glob("streaming_*.csv"))
# document column -> CSV column
COLUMNS = {"model layers": "model layers", "quantized": "quantized", "peak RSS (GiB)": "peak_rss_GiB",
           "target (GiB)": "target_GiB", "RSS / target": "rss/target", "wall s / layer": "wall s/layer(mean)",
           "CPU s / layer": "cpu s/layer(mean)", "load (mean)": "load(mean)"}


def _doc_rows():
    header, body = markdown_table(DOC, "| result | model layers |")
    return [dict(zip(header, cells)) for cells in body]


def test_there_are_streaming_results():
    assert "streaming_7b_l2qer_cpu" in FILES, FILES


@pytest.mark.parametrize("name", FILES)
def test_every_row_of_the_file_is_quoted_in_the_doc(name):
    rows, meta = read_table(RESULTS / f"{name}.csv")
    assert rows and meta["commit"] and meta["command"]
    quoted = {r["model layers"]: r for r in _doc_rows() if r["result"].strip("`") == name}
    assert set(quoted) == {r["model layers"] for r in rows}, f"{name}: doc rows {sorted(quoted)}"
    for r in rows:
        q = quoted[r["model layers"]]
        for doc_col, csv_col in COLUMNS.items():
            assert agrees(q[doc_col], float(r[csv_col])), (name, r["model layers"], doc_col, q[doc_col], r[csv_col])
        # the peak RSS after each layer: its range over the layers ("lowest–highest")
        after = [float(x) for x in r["peak after each layer (GiB)"].split()]
        lo, hi = q["peak after each layer (GiB)"].split("–")
        assert agrees(lo, min(after)) and agrees(hi, max(after)), (name, r["model layers"])
    assert f"commit {meta['commit'][:7]}" in " ".join(DOC.split()), f"the doc does not say the commit of {name}"


def _paragraph(text, anchor):
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if anchor in p]
    assert len(paras) == 1, f"{anchor!r}: expected in one paragraph, found {len(paras)}"
    return paras[0]


def test_readme_quotes_every_run():
    rows, _ = read_table(RESULTS / "streaming_7b_l2qer_cpu.csv")
    para = _paragraph(README, "docs/results/streaming_7b_l2qer_cpu.csv")
    assert "mxlab reproduce streaming_7b_l2qer_cpu" in para
    for r in rows:
        m = re.search(rf"\b{r['model layers']}-layer model: peak RSS ([\d.]+) GiB", para)
        assert m and agrees(m.group(1), float(r["peak_rss_GiB"])), (r["model layers"], para)


LOG_LINE = re.compile(r"stream: layer (\d+) done in ([\d.]+) s; peak RSS so far ([\d.]+) GiB; load ([\d.]+)")


def _runs_in_log(path):
    """The benchmark's progress lines (stderr), split into runs: [[(layer, s, peak GiB, load)], ...]."""
    runs = []
    for ln in path.read_text().splitlines():
        m = LOG_LINE.search(ln)
        if m:
            rec = (int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4)))
            if rec[0] == 0:
                runs.append([])
            runs[-1].append(rec)
    return runs


@pytest.mark.parametrize("text", [DOC, README], ids=["streaming.md", "README"])
def test_an_unfinished_run_is_quoted_from_its_log(text):
    """The deepest run's progress is quoted from the committed log (also while it was still going):
    the layers finished, the range of the peak RSS after each, mean wall time and load."""
    log = RESULTS / "streaming_7b_l2qer_cpu.log"
    if "docs/results/streaming_7b_l2qer_cpu.log" not in text:
        pytest.skip("no unfinished run quoted")
    run = _runs_in_log(log)[-1]
    para = _paragraph(text, "docs/results/streaming_7b_l2qer_cpu.log")
    m = re.search(r"(?:first|all) (\d+) of its (\d+) layers.*?peak RSS ([\d.]+)–([\d.]+) GiB after each", para)
    assert m, para
    assert int(m.group(1)) == len(run) and [r[0] for r in run] == list(range(len(run)))
    assert agrees(m.group(3), min(r[2] for r in run)) and agrees(m.group(4), max(r[2] for r in run))
    if text is DOC:
        w = re.search(r"([\d.]+) s wall per layer at load average ([\d.]+)", para)
        assert w and agrees(w.group(1), sum(r[1] for r in run) / len(run)), para
        assert agrees(w.group(2), sum(r[3] for r in run) / len(run)), para


# the GPU section's table: one row per docs/results/bench_streaming_cuda_<method>.csv (H200 runs)
CUDA_FILES = {"L2QER": "bench_streaming_cuda_l2qer", "LRC": "bench_streaming_cuda_lrc"}


@pytest.mark.parametrize("method", sorted(CUDA_FILES))
def test_cuda_rows_are_the_files(method):
    rows, meta = read_table(RESULTS / f"{CUDA_FILES[method]}.csv")
    assert len(rows) == 1 and meta["machine"]["device"] == "cuda", meta["machine"]
    (r,) = rows
    header, body = markdown_table(DOC, "| method | layers |")
    (q,) = [dict(zip(header, c)) for c in body if c[0].startswith(method + " ")]
    assert q["layers"] == r["model layers"]
    wall = q["wall s/layer (mean, min)"].split(", ")
    assert agrees(wall[0], float(r["wall s/layer(mean)"]))
    if len(wall) > 1:
        assert agrees(wall[1], float(r["wall s/layer(min)"]))
    for doc_col, csv_col in (("peak RSS GiB", "peak_rss_GiB"), ("target GiB", "target_GiB"),
                             ("GPU peak GiB", "gpu_peak_GiB")):
        assert agrees(q[doc_col], float(r[csv_col])), (method, doc_col, q[doc_col], r[csv_col])
    section = " ".join(DOC[DOC.index("## GPU"):].split())
    assert f"commit {meta['commit'][:7]}" in section


def test_lrc_at_7b_is_quoted_and_within_its_target():
    """LRC's 7B-shape run (float32 statistics): the README quotes its peak and target from the CSV,
    the doc says which layers were quantized, and the peak is within the target it states."""
    rows, meta = read_table(RESULTS / "streaming_7b_lrc_cpu.csv")
    assert meta["method"]["method"] == "lrc" and meta["method"]["stats_dtype"] == "float32"
    assert meta["calibration"]["tokens"] >= 2 * meta["model"]["intermediate_size"]  # LRC's minimum
    para = _paragraph(README, "docs/results/streaming_7b_lrc_cpu.csv")
    assert "mxlab reproduce streaming_7b_lrc_cpu" in para
    for r in rows:
        m = re.search(rf"layer 0 of the {r['model layers']}-layer model: peak RSS ([\d.]+) GiB against "
                      rf"its ([\d.]+) GiB target", para)
        assert m and agrees(m.group(1), float(r["peak_rss_GiB"])) and agrees(m.group(2), float(r["target_GiB"]))
        assert int(r["quantized"]) == 1 and float(r["rss/target"]) <= 1.0
    doc = _paragraph(DOC, "layer 0 of a 2-layer model")
    assert all(f"layer 0 of a {r['model layers']}-layer model" in doc for r in rows)
