"""The speed numbers in the README and docs/mxsim_speed.md are the ones in the committed
benchmark CSVs (docs/results/bench_*_cpu.csv, written by the benchmarks' --out): each quoted
value is recomputed here from the CSV and looked up in the sentence or table row that quotes it.
A re-run that changes a number fails here until the prose says the new one."""

import re
from pathlib import Path

import pytest

from experiments.provenance import agrees, read_table

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
README = (ROOT / "README.md").read_text()
SPEED_DOC = (ROOT / "docs" / "mxsim_speed.md").read_text()
LQER_DOC = (ROOT / "docs" / "lqer.md").read_text()
THREADS = "2"  # the README and the speed doc quote the 2-thread rows


def line_with(text: str, anchor: str) -> str:
    hits = [ln for ln in text.splitlines() if anchor in ln]
    assert len(hits) == 1, f"{anchor!r}: expected one line, found {len(hits)}"
    return hits[0]


def paragraph_with(text: str, anchor: str) -> str:
    hits = [p for p in re.split(r"\n\s*\n", text) if anchor in p.replace("\n", " ")]
    assert len(hits) == 1, f"{anchor!r}: expected one paragraph, found {len(hits)}"
    return hits[0].replace("\n", " ")


def matmul():
    rows, meta = read_table(RESULTS / "bench_matmul_cpu.csv")
    return {r["benchmark"]: r for r in rows}, meta


def quantize():
    rows, meta = read_table(RESULTS / "bench_quantize_cpu.csv")
    return {(r["format"], r["rounding"]): r for r in rows if r["threads"] == THREADS}, meta


def x_copy(q, *cases):
    return [float(q[c]["x_copy"]) for c in cases]


MXINT_RN = [(f"MXINT{b}", "nearest_even") for b in (2, 4, 6, 8)] + [("MXINT8", "floor")]
MXFP_RN = [(f, "nearest_even") for f in ("MXFP8_E4M3", "MXFP8_E5M2", "MXFP6_E3M2", "MXFP6_E2M3", "MXFP4_E2M1")]
BLOCKFP = [("BlockFP4", "nearest_even"), ("BlockFP8", "nearest_even")]
MXFP_RULES = [("MXFP8_E4M3/32@rceil", "nearest_even"), ("MXFP4_E2M1/32@even", "nearest_even")]


def in_group(quoted: str, values) -> bool:
    """A single quoted value for a group of measurements: one of them, or between them."""
    v = float(quoted)
    return min(values) - 1e-9 <= v <= max(values) + 1e-9


def test_committed_csvs_have_the_benchmarks_columns():
    """The files are in the format the scripts write (so an idle re-run overwrites them alike)."""
    from experiments.results_bench import MATMUL_CSV_COLUMNS, QUANTIZE_CSV_COLUMNS

    for name, columns in (("bench_matmul", MATMUL_CSV_COLUMNS), ("bench_quantize", QUANTIZE_CSV_COLUMNS)):
        rows, meta = read_table(RESULTS / f"{name}_cpu.csv")
        header = (RESULTS / f"{name}_cpu.csv").read_text().splitlines()[0].split(",")
        assert header == list(columns) == meta["columns"]
        assert rows and meta["commit"] and meta["machine"]["logical_cpus"] and meta["command"].startswith(
            f"python benchmarks/{name}.py")


@pytest.mark.parametrize("text", [README, SPEED_DOC], ids=["README", "mxsim_speed.md"])
def test_docs_name_the_files_and_their_commit(text):
    for name in ("bench_matmul_cpu", "bench_quantize_cpu"):
        assert f"docs/results/{name}.csv" in text
        _, meta = read_table(RESULTS / f"{name}.csv")
        assert f"commit {meta['commit']}" in " ".join(text.split()), f"the doc does not say the commit of {name}.csv"


def test_readme_matmul_rows():
    m, _ = matmul()
    n3 = "MXINT8 2048^3 "
    row = line_with(README, "| matmul MXINT8 2048³ exact / fused fp32 vs torch fp32 matmul")
    assert f"({float(m['torch float32 matmul 2048^3']['ms']):.0f} ms)" in row
    assert f"| {float(m[n3 + 'exact']['ratio']):.1f}x / {float(m[n3 + 'fp32']['ratio']):.1f}x" in row
    row = line_with(README, "| matmul FixedPoint(32,16) / (24,8), 2048×576×1536")
    fx = "MXINT8 2048x576x1536 fixed:"
    assert f"| {float(m[fx + '32:16']['ratio']):.1f}x / {float(m[fx + '24:8']['ratio']):.1f}x" in row


def test_readme_quantize_rows():
    q, _ = quantize()
    row = line_with(README, "| fake_quantize 4096² f32 vs numpy copy: MXINT2–8")
    lo, hi = min(x_copy(q, *MXINT_RN)), max(x_copy(q, *MXINT_RN))
    assert f"| {lo:.2f}–{hi:.2f}x (nearest_even, floor), {x_copy(q, ('MXINT8', 'nearest_away'))[0]:.2f}x nearest_away" \
        in row
    row = line_with(README, "| same: MXFP8/6/4 / BlockFP / NVFP4 / stochastic / MXFP with a non-floor scale rule")
    cell = row.split("|")[2]
    quoted = re.findall(r"(\d\.\d\d)x", cell)
    groups = [MXFP_RN, BLOCKFP, [("NVFP4", "nearest_even")], [("MXINT8", "stochastic")], MXFP_RULES]
    assert len(quoted) == len(groups), cell
    for v, g in zip(quoted, groups):
        assert in_group(v, x_copy(q, *g)), f"{v}x is not the measured {g}: {x_copy(q, *g)}"


def test_speed_doc_idle_paragraph():
    m, _ = matmul()
    q, _ = quantize()
    p = paragraph_with(SPEED_DOC, "2048³ matmul takes")
    assert f"takes {float(m['torch float32 matmul 2048^3']['ms']):.0f} ms here" in p
    for label, key in (("exact", "MXINT8 2048^3 exact"), ("fused fp32", "MXINT8 2048^3 fp32"),
                       ("FixedPoint(32,16)", "MXINT8 2048x576x1536 fixed:32:16"),
                       ("(24,8)", "MXINT8 2048x576x1536 fixed:24:8")):
        assert f"{label} {m[key]['ratio']}x" in p, label
    p = paragraph_with(SPEED_DOC, "Two references in the same run")
    lo, hi = min(x_copy(q, *MXINT_RN)), max(x_copy(q, *MXINT_RN))
    assert f"MXINT2–8 {lo:.2f}–{hi:.2f}x a numpy copy" in p
    rates = {r["format"]: float(r["melem_per_s"]) for r in read_table(RESULTS / "bench_quantize_cpu.csv")[0]
             if r["threads"] == THREADS and not r["rounding"]}
    assert f"`x.copy()`, {rates['numpy copy']:.0f} Melem/s" in p
    assert f"kept array, {rates['numpy copy into a kept array']:.0f} Melem/s" in p
    kept = [float(r["x_copy_kept"]) for r in read_table(RESULTS / "bench_quantize_cpu.csv")[0]
            if r["threads"] == THREADS and r["rounding"]]
    assert f"every format is at {min(kept):.2f}–{max(kept):.2f}x" in p
    for label, g in (("MXFP", MXFP_RN), ("BlockFP", BLOCKFP), ("NVFP4", [("NVFP4", "nearest_even")]),
                     ("stochastic", [("MXINT8", "stochastic")]), ("non-floor scale rule", MXFP_RULES)):
        v = re.search(rf"{re.escape(label)} (\d\.\d\d)x", p)
        assert v and in_group(v[1], x_copy(q, *g)), label


def test_lqer_speed_sentences():
    lq, _ = read_table(RESULTS / "bench_lqer_cpu.csv")
    qm, _ = read_table(RESULTS / "bench_quantize_model_cpu.csv")
    lq = {r["svd"]: r for r in lq}
    q = qm[0]
    rand, full = lq["randomized"]["seconds"], lq["full"]["seconds"]
    readme = paragraph_with(README, "L2QER of one 11008×4096 layer at k = 32 takes")
    m = re.search(r"takes ([\d.]+) s with the randomized SVD .*? the full SVD's, which takes ([\d.]+) s", readme)
    assert m and agrees(m[1], rand) and agrees(m[2], full), readme
    row = line_with(LQER_DOC, "| L2QER 11008×4096, k=32, randomized SVD")
    m = re.search(r"\| ([\d.]+) s \(full SVD: ([\d.]+) s\)", row)
    assert m and agrees(m[1], rand) and agrees(m[2], full), row
    if lq["randomized"]["error_ratio_to_full"]:  # quoted as "within 0.1 %"
        assert float(lq["randomized"]["error_ratio_to_full"]) <= 1.001
    m = re.search(r"Whole-model L2QER on SmolLM2 takes ([\d.]+) s excluding calibration.*?peak RSS (\d+) MiB = "
                  r"\*\*([\d.]+)×\*\* the (\d+) MiB fp32 model", readme)
    assert m, readme
    for printed, col in zip(m.groups(), ("quantize_s", "peak_rss_MiB", "x_fp32", "fp32_MiB")):
        assert agrees(printed, q[col]), col
    row = line_with(LQER_DOC, "| whole-model L2QER of SmolLM2, W4A8 k=32")
    m = re.search(r"\| ([\d.]+) s; peak RSS (\d+) MiB = ([\d.]+)× fp32 \((\d+) MiB\)", row)
    assert m, row
    for printed, col in zip(m.groups(), ("quantize_s", "peak_rss_MiB", "x_fp32", "fp32_MiB")):
        assert agrees(printed, q[col]), col


def test_lrc_layer_sentence_and_table():
    cpu = read_table(RESULTS / "bench_lrc_layer_cpu.csv")[0][0]
    gpu = read_table(RESULTS / "bench_lrc_layer_cuda.csv")[0][0]
    p = paragraph_with(README, "LRC(1) on one 4096×4096 layer")
    m = re.search(r"(\d+) calibration tokens, rank (\d+) = 10 %\) takes ([\d.]+) s\s+on the idle 2-core machine "
                  r"\(target ≤ 60 s\) with peak RSS ([\d.]+) GB .*?; ([\d.]+) s on an H200", p)
    assert m, p
    assert m[1] == cpu["tokens"] and m[2] == cpu["rank"] and agrees(m[3], cpu["lrc1_s"]) and agrees(m[4], cpu["peak_rss_gb"])
    assert agrees(m[5], gpu["lrc1_s"])
    row = line_with((ROOT / "docs" / "lrc.md").read_text(), "| H200 (CUDA tensors")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert agrees(cells[3], gpu["lrc1_s"]) and agrees(cells[5], gpu["stats_s"])
    assert cells[6] == f"{gpu['peak_rss_gb']} GB host, {gpu['gpu_peak_gb']} GB GPU"


def test_speed_doc_block_size_paragraph():
    """The block-size paragraph of docs/mxsim_speed.md: every ratio is the CSV's, and each
    format's fit t = c + B/k (blocks 32 and 128, ns per element at Melem/s rates) is worked out
    here from the CSV's rates."""
    rows, _ = read_table(RESULTS / "quantize_block_sizes" / "bench_quantize_cpu.csv")
    rate = {r["format"]: float(r["melem_per_s"]) for r in rows}
    ratio = {r["format"]: r["x_copy"] for r in rows if r["rounding"]}
    p = paragraph_with(SPEED_DOC, "Where the rest of the time goes")
    for fmt in ("MXINT8", "MXFP8_E4M3", "BlockFP8"):
        quoted = " / ".join(f"{float(ratio[f'{fmt}/{k}']):.2f}" for k in (16, 32, 64, 128))
        assert f"{fmt} {quoted}x" in p, (fmt, quoted)
        t32, t128 = 1e3 / rate[f"{fmt}/32"], 1e3 / rate[f"{fmt}/128"]
        b = (t32 - t128) / (1 / 32 - 1 / 128)
        assert f"{fmt} c = {t128 - b / 128:.3f}, B = {b:.2f}" in p, fmt
    assert f"copy's {1e3 / rate['numpy copy']:.3f} ns per element" in p
