"""README and docs numbers outside the tables: each is parsed from the prose and compared with
the committed file it comes from (docs/results/*.csv, *.meta.json, *.log), so a re-run that
changes the file, or an edit that changes the prose, fails here until both agree."""

import json
import re
from pathlib import Path

import pandas as pd

from experiments.provenance import agrees

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
README = (ROOT / "README.md").read_text()
RTL = (ROOT / "docs" / "hwmodel_rtl.md").read_text()
SPEED = (ROOT / "docs" / "mxsim_speed.md").read_text()


def flat(text: str) -> str:
    return " ".join(text.split())


def num(s: str) -> int:
    return int(s.replace(",", ""))


def test_validation_counts():
    v = pd.read_csv(RESULTS / "validation.csv").set_index("run")
    m = re.search(r"\*\*([\d,]+) values compared, (\d+) mismatches\*\* \(`mxsim\.validate\.run_validation\(\)`",
                  flat(README))
    assert m and num(m[1]) == v.loc["mxsim", "values"] and num(m[2]) == v.loc["mxsim", "mismatches"]
    m = re.search(r"The report's emulator check compared ([\d,]+) values \(numba vs torch referee\) and found "
                  r"(\d+) mismatches \(`docs/results/validation\.csv`", flat(README))
    assert m and num(m[1]) == v.loc["report", "values"] and num(m[2]) == v.loc["report", "mismatches"]
    assert "mxlab reproduce validation" in README


def test_readme_quotes_no_uncommitted_report_timing():
    """The main job's wall times had no committed record (the paragraph used to quote them)."""
    p = flat(README)
    for gone in ("4 min 48 s", "280.5 s", "37 min", "262 s", "2.1e-7", "48-token"):
        assert gone not in p, gone


def test_gpu_full_split_paragraph():
    metas = {c: json.loads((RESULTS / f"gpu_fullsplit_{c}.meta.json").read_text()) for c in ("W4A8", "W3A8")}
    a = metas["W4A8"]
    m = re.search(r"\(NVIDIA (\S+); (\d+) windows × (\d+) tokens = ([\d,]+) tokens; calibration (\d+) × (\d+) tokens "
                  r".*?run in parallel, (\d+) s and (\d+) s;", flat(README))
    assert m, "GPU paragraph"
    assert f"NVIDIA {m[1]}" in a["gpu"]
    assert (int(m[2]), int(m[3]), num(m[4]), int(m[5]), int(m[6])) == \
           (a["windows"], a["seq_len"], a["tokens"], a["calib_samples"], a["calib_seq_len"])
    assert int(m[2]) * int(m[3]) == num(m[4])
    for cfg, secs in zip(("W4A8", "W3A8"), (m[7], m[8])):
        assert agrees(secs, metas[cfg]["seconds"]) and metas[cfg]["windows"] == a["windows"], cfg


def _rtl(name):
    return pd.read_csv(RESULTS / f"{name}.csv")


def test_rtl_vector_counts_readme():
    mx, paper = _rtl("rtl_verify_verilator_mx"), _rtl("rtl_verify_verilator")
    p = flat(README)
    m = re.search(r"agrees with `mxsim\.matmul` on ([\d,]+) vectors \(of 2 blocks each\) per configuration, (\d+) "
                  r"mismatches.*?agree with numpy float16 / mxsim on ([\d,]+) vectors each on Verilator, (\d+) mismatches",
                  p)
    assert m
    assert set(mx.vectors) == {num(m[1])} and set(mx.mismatches) == {int(m[2])}
    assert set(paper.vectors) == {num(m[3])} and set(paper.mismatches) == {int(m[4])}


def test_rtl_doc_unit_runs():
    fp, mx = _rtl("rtl_verify_verilator_fp"), _rtl("rtl_verify_verilator_mx")
    p = flat(RTL)
    m = re.search(r"`docs/results/rtl_verify_verilator_fp\.csv` \(the (\d+) FP unit configurations\) and "
                  r"`docs/results/rtl_verify_verilator_mx\.csv` \(the (\d+) MX settings\), ([\d,]+) vectors each, (\d+) "
                  r"mismatches, (\d+)–(\d+) s per configuration", p)
    assert m
    both = pd.concat([fp, mx])
    assert (int(m[1]), int(m[2])) == (len(fp), len(mx))
    assert set(both.vectors) == {num(m[3])} and set(both.mismatches) == {int(m[4])}
    assert agrees(m[5], both.seconds.min()) and agrees(m[6], both.seconds.max())
    # the Icarus unit run: its printed table
    log = (RESULTS / "rtl_verify_icarus_units.log").read_text()
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in log.splitlines() if re.match(r"\| \w", ln)][1:]
    m = re.search(r"stopped after (\d+) of its (\d+) checks for lack of time: the (\d+) FP units \((\d+)–(\d+) s each\) "
                  r"and MXINT4×8 k=16 at 0/0 stages \((\d+) s\), (\d+) mismatches", p)
    assert m and int(m[1]) == len(rows) and int(m[2]) == len(fp) + len(mx)
    fp_rows = [r for r in rows if not r[0].startswith("mx")]
    assert int(m[3]) == len(fp_rows) == len(fp)
    secs = [float(r[4]) for r in fp_rows]
    assert agrees(m[4], min(secs)) and agrees(m[5], max(secs))
    mxr = [r for r in rows if r[0] == "mxint4x8_k16 dot0/acc0"]
    assert len(mxr) == 1 and agrees(m[6], float(mxr[0][4]))
    assert {r[2] for r in rows} == {m[7]} and {r[1] for r in rows} == {"10000"}


def test_rtl_doc_paper_design_runs():
    paper = _rtl("rtl_verify_verilator").set_index("check")
    p = flat(RTL)
    m = re.search(r"\): (\d+) s \(LQER-MXINT 6/4 \+ low rank\) to (\d+) s \(LLM\.int4\(\)\), in the CSV's `seconds` column",
                  p)
    assert m and agrees(m[1], paper.seconds.min()) and agrees(m[2], paper.seconds.max())
    assert paper.seconds.idxmin() == "paper LQER-MXINT 6/4 + low rank (LB 8)"
    assert paper.seconds.idxmax() == "paper LLM.int4()"
    ll = _rtl("rtl_verify_icarus_llm_int8").iloc[0]
    m = re.search(r"LB = 8 also at ([\d,]+) \(`docs/results/rtl_verify_icarus_llm_int8\.csv`, (\d+) s at load", p)
    assert m and num(m[1]) == ll.vectors and agrees(m[2], ll.seconds) and ll.mismatches == 0


def line_with(text: str, anchor: str) -> str:
    hits = [ln for ln in text.splitlines() if anchor in ln]
    assert len(hits) == 1, f"{anchor!r}: expected one line, found {len(hits)}"
    return hits[0]


def test_readme_speed_rows_datapath_and_16_cores():
    d = pd.read_csv(RESULTS / "bench_datapath_cpu.csv").set_index("accumulator")
    row = line_with(README, "| whole SmolLM2 through the datapath, 4×512 tokens, fp32 / FixedPoint(32,16)")
    m = re.search(r"\| ([\d.]+)x / ([\d.]+)x \|", row)
    assert m and agrees(m[1], d.loc["fp32", "x_float"]) and agrees(m[2], d.loc["fixed:32:16", "x_float"]), row
    c = pd.read_csv(RESULTS / "bench_matmul_cpu16_h200host.csv").set_index("benchmark")
    row = line_with(README, "| 16 cores (GPU machine's host, `docs/results/bench_matmul_cpu16_h200host.csv`)")
    m = re.search(r"\| ([\d.]+)x / ([\d.]+)x \|", row)
    assert m and agrees(m[1], c.loc["MXINT8 2048^3 exact", "ratio"]) and agrees(m[2], c.loc["MXINT8 2048^3 fp32", "ratio"])


def test_speed_doc_datapath_sentence_and_16_core_paragraph():
    d = pd.read_csv(RESULTS / "bench_datapath_cpu.csv").set_index("accumulator")
    m = re.search(r"`docs/results/bench_datapath_cpu\.csv`\): float forward ([\d.]+) s; fp32 ([\d.]+)x, fp32:4 ([\d.]+)x, "
                  r"FixedPoint\(32,16\) ([\d.]+)x", flat(SPEED))
    assert m and agrees(m[1], d.loc["float", "seconds"])
    for v, acc in zip(m.groups()[1:], ("fp32", "fp32:4", "fixed:32:16")):
        assert agrees(v, d.loc[acc, "x_float"]), acc
    c = pd.read_csv(RESULTS / "bench_matmul_cpu16_h200host.csv").set_index("benchmark")
    m = re.search(r"`docs/results/bench_matmul_cpu16_h200host\.csv`\): torch's 2048³ fp32 GEMM ([\d.]+) ms; exact "
                  r"([\d.]+) ms = \*\*([\d.]+)x\*\* \(CPU-time ([\d.]+)x\), fp32 ([\d.]+) ms = \*\*([\d.]+)x\*\* \(([\d.]+)x\), "
                  r"FixedPoint\(32,16\) / \(24,8\) at 2048×576×1536 \*\*([\d.]+)x / ([\d.]+)x\*\* against a ([\d.]+) ms GEMM",
                  flat(SPEED))
    assert m
    ex, f32 = c.loc["MXINT8 2048^3 exact"], c.loc["MXINT8 2048^3 fp32"]
    want = [c.loc["torch float32 matmul 2048^3", "ms"], ex.ms, ex.ratio, ex.cpu_time_ratio, f32.ms, f32.ratio,
            f32.cpu_time_ratio, c.loc["MXINT8 2048x576x1536 fixed:32:16", "ratio"],
            c.loc["MXINT8 2048x576x1536 fixed:24:8", "ratio"], c.loc["torch float32 matmul 2048x576x1536", "ms"]]
    for printed, value in zip(m.groups(), want):
        assert agrees(printed, value), (printed, value)


def _log_values(name: str, pattern: str) -> list:
    return re.findall(pattern, (RESULTS / name).read_text())


def test_readme_h200_rows_are_the_logs():
    # bench_quantize --device cuda --out: the three rows with a target, per input dtype
    q = pd.read_csv(RESULTS / "bench_quantize_cuda.csv")
    q = q[(q.op == "fake_quantize") & q.target_pct.notna()]
    f32 = dict(zip(q[q.dtype == "float32"].case, q[q.dtype == "float32"].pct_of_clone))
    bf16 = dict(zip(q[q.dtype == "bfloat16"].case, q[q.dtype == "bfloat16"].pct_of_clone))
    assert len(f32) == 3 and len(bf16) == 3
    meta = json.loads((RESULTS / "bench_quantize_cuda.meta.json").read_text())
    side = meta["size"][0]
    row = line_with(README, f"fake_quantize {side}² f32 MXINT8 / MXFP8 / MXFP4 vs clone() bandwidth")
    m = re.search(r"\| (\d+)% / (\d+)% / (\d+)% \(bf16: (\d+)% / (\d+)% / (\d+)%\) \|", row)
    assert m, row
    for i, fmt in enumerate(("MXINT8", "MXFP8_E4M3", "MXFP4_E2M1")):
        assert agrees(m[1 + i], f32[fmt]) and agrees(m[4 + i], bf16[fmt]), fmt
    # the torchao row: x_torchao = torchao's ms / mxsim's ms, same run
    q = q.dropna(subset=["x_torchao"])
    ao = {(d, c): x for d, c, x in zip(q.dtype, q.case, q.x_torchao)}
    for d, c in ao:
        row_ms = q[(q.dtype == d) & (q.case == c)].iloc[0]
        assert agrees(str(ao[d, c]), row_ms.torchao_ms / row_ms.ms), (d, c)
    row = line_with(README, "| H200: fake_quantize vs torchao 0.18 `to_mx` + `to_dtype` compiled, MXFP8 / MXFP4")
    m = re.search(r"\| ([\d.]+)x / ([\d.]+)x \(bf16: ([\d.]+)x / ([\d.]+)x\) \|", row)
    assert m, row
    want = [ao["float32", "MXFP8_E4M3"], ao["float32", "MXFP4_E2M1"], ao["bfloat16", "MXFP8_E4M3"], ao["bfloat16", "MXFP4_E2M1"]]
    assert [agrees(v, w) for v, w in zip(m.groups(), want)] == [True] * 4, row
    mm = dict(_log_values("bench_matmul_cuda.log", r"MXINT8 8192\^3 (\S+) \(throughput vs _int_mm\)\s+[\d.]+ ms\s+([\d.]+)"))
    row = line_with(README, "| H200: MXINT8 8192³ exact / fp32 / FixedPoint(32,16) / (24,8) vs `torch._int_mm` throughput")
    m = re.search(r"\| ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+) \|", row)
    keys = ("exact", "fp32", "fixed:32:16", "fixed:24:8")
    assert m and [agrees(v, mm[k]) for v, k in zip(m.groups(), keys)] == [True] * 4, row
    # the CSV beside the log holds the same ratios
    csv = pd.read_csv(RESULTS / "bench_matmul_cuda.csv").dropna(subset=["ratio"])
    assert [agrees(str(r), mm[k]) for r, k in zip(csv["ratio"], keys)] == [True] * 4


def test_fast_launch_configuration_is_the_sweeps_best_fixed_point_row():
    """mxsim.gpu.MM_CONFIGS["fast"] is the configuration whose FixedPoint(32,16) row is the
    highest of the committed H200 sweep, and docs/mxsim_speed.md quotes that row and its fp32 row."""
    from mxsim import gpu

    sweep = pd.read_csv(RESULTS / "bench_matmul_cuda_configs.csv")
    rows = sweep[sweep.benchmark.str.strip().str.startswith("config ")]
    parsed = [(b.split()[1], b.split()[2], r) for b, r in zip(rows.benchmark.str.strip(), rows.ratio)]
    fixed = {c: r for c, acc, r in parsed if acc == "fixed:32:16"}
    fp32 = {c: r for c, acc, r in parsed if acc == "fp32"}
    assert len(fixed) == len(fp32) == 9
    best = max(fixed, key=fixed.get)
    assert tuple(int(v) for v in best.split("x")) == gpu.MM_CONFIGS["fast"]
    speed = flat((ROOT / "docs" / "mxsim_speed.md").read_text())
    bm, bn, warps, stages = best.split("x")
    assert f"**{fixed[best]:.2f}× at {bm} × {bn}, {warps} warps, {stages} stages**" in speed
    assert f"(its fp32 row there: {fp32[best]:.2f}×" in speed
    top3 = sorted(fixed.values(), reverse=True)[:3]
    assert "(" + ", ".join(f"{v:.2f}" for v in top3[:2]) + f" and {top3[2]:.2f} for the three best" in speed


def test_readme_h200_test_count_is_the_log():
    """'its 151 bit-exactness tests (test_gpu.py) pass on an H200, with 63 CUDA tests of other
    files': b5.log's one pytest summary (test_gpu.py alone), b3.log's two (the other files)."""
    logs = RESULTS / "h200_session12"
    passed = {}
    for name in ("b5.log", "b3.log"):
        log = (logs / name).read_text()
        passed[name] = [int(n) for n in re.findall(r"^(\d+) passed", log, re.M)]
        assert "failed" not in log and " error" not in log, name
    assert len(passed["b5.log"]) == 1 and len(passed["b3.log"]) == 2
    assert "== test_gpu\n" in (logs / "b5.log").read_text()  # the section the summary is under
    m = re.search(r"its (\d+) bit-exactness tests \(`tests/mxsim/test_gpu.py`\) pass on an H200, with (\d+) CUDA "
                  r"tests of other files: `docs/results/h200_session12/b5\.log` and `b3\.log`", README)
    assert m and int(m[1]) == passed["b5.log"][0] and int(m[2]) == sum(passed["b3.log"])


def _costs(tech: str) -> dict:
    df = pd.read_csv(ROOT / "hwmodel" / "costs" / f"yosys_{tech}.csv")
    return {(r.component, int(r.a), int(r.b)): float(r.cost) for r in df.itertuples()}


def test_rtl_doc_unit_cost_selection_is_the_committed_tables():
    """docs/hwmodel_rtl.md's 'selection of the calibrated rows': every cell is the row of
    hwmodel/costs/yosys_<tech>.csv (what `hwmodel calibrate` wrote and the model prices with)."""
    from experiments.provenance import markdown_table

    head, body = markdown_table(RTL, "| component | a | b | xilinx (LUT)")
    techs = ["xilinx", "ecp5", "cmos", "sky130"]
    assert [h.split(" ")[0] for h in head[3:]] == techs and len(body) >= 10
    costs = {t: _costs(t) for t in techs}
    for comp, a, b, *cells in body:
        for tech, cell in zip(techs, cells):
            key = (comp, int(a), int(b))
            assert key in costs[tech], (tech, key)
            assert agrees(cell, costs[tech][key]), (tech, key, cell, costs[tech][key])


def test_readme_yosys_fp16_unit_luts():
    x = _costs("xilinx")
    m = re.search(r"Yosys's FP16 multiplier \((\d+) LUT\) and adder \((\d+) LUT\)", flat(README))
    assert m and agrees(m[1], x[("fp16_mul", 0, 0)]) and agrees(m[2], x[("fp16_add", 0, 0)])


def test_speed_doc_loaded_quantize_run_cites_its_committed_files():
    """The loaded-machine fake_quantize run is quoted only as its files (the table was cut)."""
    for f in ("quantize_loaded/bench_quantize_cpu.csv", "quantize_loaded/bench_quantize_cpu.meta.json",
              "quantize_loaded/before_bbba5b2.log"):
        assert (RESULTS / f).is_file(), f
    assert "docs/results/quantize_loaded/bench_quantize_cpu.csv" in SPEED
    assert "docs/results/quantize_loaded/before_bbba5b2.log" in SPEED
    meta = json.loads((RESULTS / "quantize_loaded" / "bench_quantize_cpu.meta.json").read_text())
    assert "--out docs/results/quantize_loaded" in " ".join(flat(SPEED).split()) and "--threads" in meta["command"]


def test_whole_model_lrc_time_is_the_lrc_table():
    d = pd.read_csv(RESULTS / "lrc_table.csv", keep_default_na=False)
    s = d[(d.method == "lrc1") & (d.setting == "W4A4")].quantize_s.astype(float)
    assert len(s) >= 2
    lrc = flat((ROOT / "docs" / "lrc.md").read_text())
    for text, pat in ((flat(README), r"Whole SmolLM2 LRC\(1\): (\d+)–(\d+) s excluding calibration"),
                      (lrc, r"Whole SmolLM2 LRC\(1\): (\d+)–(\d+) s of quantization")):
        m = re.search(pat, text)
        assert m and agrees(m[1], s.min()) and agrees(m[2], s.max()), pat


def test_lrc_doc_cpu_layer_row():
    cpu = pd.read_csv(RESULTS / "bench_lrc_layer_cpu.csv").iloc[0]
    row = line_with((ROOT / "docs" / "lrc.md").read_text(), "| idle 2-core machine (`docs/results/bench_lrc_layer_cpu.csv`)")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert agrees(cells[3], cpu.lrc1_s) and agrees(cells[4].lstrip("≤ "), cpu.target_s)
    assert agrees(cells[5], cpu.stats_s if not pd.isna(cpu.stats_s) else None)
    assert cells[6] == f"{cpu.peak_rss_gb} GB" and agrees(cells[7].lstrip("≤ ").rstrip(" GB"), cpu.target_gb)


def test_readme_datapath_run_times_are_the_meta_runs():
    runs = json.loads((RESULTS / "datapath_table.meta.json").read_text())["runs"]
    by = {r["command"].split("--settings ")[1].split()[0]: r for r in runs}
    p = flat(README)
    meta = json.loads((RESULTS / "datapath_table.meta.json").read_text())
    m = re.search(r"W8A8-MXINT8 under load \(~(\d+)–(\d+) runnable threads, as the meta's `note` records; (\d+) s\)", p)
    assert m and agrees(m[3], by["W8A8-MXINT8"]["seconds"])
    assert f"W8A8-MXINT8 on the shared 2-core machine under load (~{m[1]}-{m[2]})" in meta["note"]
    m = re.search(r"W4A8-L2QER with no other job running \(([\d.]+) s\)", p)
    assert m and agrees(m[1], by["W4A8-L2QER"]["seconds"])
    assert "no other job" in by["W4A8-L2QER"]["machine_state"]


def test_fp16_baseline_inflation_is_the_yosys_rows():
    y = pd.read_csv(RESULTS / "hw_paper_yosys.csv")
    fp16 = y[(y.tech == "xilinx") & (y.design == "FP16")].iloc[0]
    m = re.search(r"inflates the FP16 denominator ~([\d.]+)×", flat(README))
    assert m and agrees(m[1], fp16.lut / fp16.paper_lut)
    m = re.search(r"\*\*The FP16 baseline is ([\d.]+)× the paper's\*\* \(([\d,]+) vs ([\d,]+) LUT", flat(RTL))
    assert m and agrees(m[1], fp16.lut / fp16.paper_lut) and agrees(m[2], fp16.lut) and agrees(m[3], fp16.paper_lut)


def _dp(setting, block, acc):
    t = pd.read_csv(RESULTS / "datapath_table.csv")
    hit = t[(t.setting == setting) & (t.block == block) & (t.accumulator == acc)]
    assert len(hit) == 1, (setting, block, acc)
    return hit.iloc[0]


def test_readme_datapath_findings_are_the_csv():
    """The 'What it shows' bullets: each number derived from docs/results/datapath_table.csv."""
    p = flat(README)
    W8, L2 = "W8A8-MXINT8", "W4A8-L2QER"
    m = re.search(r"sit 0\.2% from the emulation \(([\d.]+) vs ([\d.]+), ([\d.]+)% of argmaxes changed\)", p)
    ex, fl = _dp(W8, 16, "exact"), _dp(W8, 16, "float")
    assert m and agrees(m[1], ex.ppl) and agrees(m[2], fl.ppl) and agrees(m[3], 100 * ex.argmax_changed)
    assert agrees("0.2", 100 * (ex.ppl - fl.ppl) / fl.ppl)
    m = re.search(r"exact and fp32 land on the emulation \(logits within ([\d.e-]+)\) and fp32:4's extra roundings "
                  r"are what flips codes \(([\d.]+)\)", p)
    assert m and max(_dp(W8, 32, a).max_logit_diff for a in ("exact", "fp32")) <= float(m[1])
    assert agrees(m[2], _dp(W8, 32, "fp32:4").ppl)
    m = re.search(r"truncation below F \(24 bits: ([\d.]+) at /32\)", p)
    assert m and agrees(m[1], _dp(W8, 32, "fixed:24:saturate").ppl)
    m = re.search(r"the rule leaves no headroom: ([\d.]+)–([\d.]+) outputs per million", p)
    rates = [_dp(W8, b, f"fixed:{w}:{o}").overflow_rate * 1e6 for b in (16, 32) for w in (32, 24, 20)
             for o in ("saturate", "wrap")]
    assert m and agrees(m[1], min(rates)) and agrees(m[2], max(rates))
    m = re.search(r"It breaks at 20 bits: ([\d.]+) at blocks of 32, ([\d.]+) at blocks of 16 \(W4A8 L2QER: ([\d.]+) and "
                  r"([\d.]+)\)", p)
    assert m and agrees(m[1], _dp(W8, 32, "fixed:20:saturate").ppl) and agrees(m[2], _dp(W8, 16, "fixed:20:saturate").ppl)
    assert agrees(m[3], _dp(L2, 32, "fixed:20:saturate").ppl) and agrees(m[4], _dp(L2, 16, "fixed:20:saturate").ppl)
    m = re.search(r"to the printed digits \(([\d.]+) at /16, ([\d.]+) at /32; logits within ([\d.e-]+)\)", p)
    assert m
    for block, v in ((16, m[1]), (32, m[2])):
        for a in ("float", "exact", "fp32", "fp32:4"):
            assert agrees(v, _dp(L2, block, a).ppl), (block, a)
    assert max(_dp(L2, b, a).max_logit_diff for b in (16, 32) for a in ("exact", "fp32", "fp32:4")) <= float(m[3])
    m = re.search(r"up to ([\d.]+)% of layer 12's v_proj outputs at 20 bits", p)
    worst = max(_dp(L2, b, f"fixed:20:{o}").worst_rate for b in (16, 32) for o in ("saturate", "wrap"))
    assert m and agrees(m[1], 100 * worst)
    m = re.search(r"\(([\d.]+)/([\d.]+) at /16, ([\d.]+)/([\d.]+) at /32\) while their logits move the most \(max (\d+), "
                  r"(\d+)% of the argmaxes changed at /32\)", p)
    assert m
    want = [_dp(W8, b, f"fixed:{w}:wrap").ppl for b in (16, 32) for w in (32, 24)]
    assert all(agrees(v, w) for v, w in zip(m.groups()[:4], want)), (m.groups(), want)
    wr32 = [_dp(W8, 32, f"fixed:{w}:wrap") for w in (32, 24)]
    assert agrees(m[5], max(r.max_logit_diff for r in wr32)) and agrees(m[6], 100 * max(r.argmax_changed for r in wr32))


def test_readme_block_sum_widths():
    """One block's integer sum: an (a+b-1)-bit product plus one bit per adder-tree level (log2 k),
    by hand and as mxsim.datapath_widths says."""
    import mxsim

    p = flat(README)
    m = re.search(r"`mxsim\.datapath_widths`: (\d+) bits for MXINT8×MXINT4/16, (\d+) for MXINT8×MXINT8/16, (\d+) at /32", p)
    assert m
    for printed, (a, b, k) in zip(m.groups(), ((8, 4, 16), (8, 8, 16), (8, 8, 32))):
        hand = a + b - 1 + k.bit_length() - 1
        fa, fb = mxsim.MXIntFormat(a).with_block_size(k), mxsim.MXIntFormat(b).with_block_size(k)
        assert int(printed) == hand == mxsim.datapath_widths(fa, fb)["sum_bits"], (a, b, k)
    m = re.search(r"narrower than one block's integer sum of MXINT8 × MXINT8 \((\d+) bits at /16, (\d+) at /32", p)
    assert m and (int(m[1]), int(m[2])) == (8 + 8 - 1 + 4, 8 + 8 - 1 + 5)


def test_readme_datapath_cuda_test_count_is_the_log():
    """The 13 datapath CUDA tests are among the log's 158: the first call ran exactly the three files."""
    log = (RESULTS / "test_gpu_h200_session9.log").read_text()
    call = re.search(r"# call 1: .*pytest .* (tests/\S+) (tests/\S+) (tests/\S+)\n", log)
    assert call and "tests/lqer/test_datapath_cuda.py" in call.groups()
    import importlib.util

    spec = importlib.util.spec_from_file_location("dp_cuda", ROOT / "tests/lqer/test_datapath_cuda.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    n_tests = 2 * len(mod.ACCUMULATORS) + 3  # one parametrized test (2 settings x accumulators) + three plain ones
    r = re.search(r"`tests/lqer/test_datapath_cuda\.py`'s (\d+) tests are among the (\d+) that\s+passed there",
                  flat(README))
    assert r and int(r[2]) == int(re.search(r"^(\d+) passed", log, re.M)[1])
    assert int(r[1]) == n_tests


def test_experiments_doc_gpu_times_are_the_gpu_tables():
    metas = {c: json.loads((RESULTS / f"gpu_fullsplit_{c}.meta.json").read_text()) for c in ("W4A8", "W3A8")}
    rows = pd.concat([pd.read_csv(RESULTS / f"gpu_fullsplit_{c}.csv") for c in ("W4A8", "W3A8")])
    p = flat((ROOT / "docs" / "experiments.md").read_text())
    m = re.search(r"(\d+) s for W4A8 and (\d+) s for W3A8 over the whole split \(([\d,]+) tokens\); fp (\d+)–(\d+) s, "
                  r"plain (\d+) s, LQER/L2QER/QERA (\d+)–(\d+) s each, LLM\.int8\(\) (\d+) s", p)
    assert m
    assert agrees(m[1], metas["W4A8"]["seconds"]) and agrees(m[2], metas["W3A8"]["seconds"])
    assert num(m[3]) == metas["W4A8"]["tokens"]

    def secs(*methods):
        return rows[rows.method.isin(methods)].seconds

    fp, plain, lq, i8 = secs("fp"), secs("plain"), secs("lqer", "l2qer", "qera"), secs("llm_int8")
    assert agrees(m[4], fp.min()) and agrees(m[5], fp.max())
    assert all(agrees(m[6], v) for v in plain)
    assert agrees(m[7], lq.min()) and agrees(m[8], lq.max())
    assert all(agrees(m[9], v) for v in i8)


def test_formats_doc_w4_sentence_is_the_formats_table():
    d = pd.read_csv(RESULTS / "formats_w4.csv", keep_default_na=False)
    m = re.search(r"corrections at W4A4 \(([\d.]+) vs ([\d.]+)\) but not at W4A8 \(([\d.]+) vs QERA's ([\d.]+)\)",
                  flat((ROOT / "docs" / "formats.md").read_text()))
    assert m, "docs/formats.md's LRC sentence"
    def ppl(setting, method):
        hit = d[(d.setting == setting) & (d.w_format == "MXINT4/32") & (d.method == method)]
        assert len(hit) == 1, (setting, method)
        return float(hit.ppl.iloc[0])
    assert agrees(m[1], ppl("W4A4", "lrc1")) and agrees(m[2], ppl("W4A4", "qera"))
    assert agrees(m[3], ppl("W4A8", "lrc1")) and agrees(m[4], ppl("W4A8", "qera"))


def test_formats_doc_cross_run_rows():
    f = pd.read_csv(RESULTS / "formats_w4.csv", keep_default_na=False)
    t = pd.read_csv(RESULTS / "lrc_table.csv", keep_default_na=False)
    m = re.search(r"same configs \(an earlier commit\) are ([\d.]+) vs ([\d.]+) \(W4A4\) and ([\d.]+) vs ([\d.]+) \(W4A8\)",
                  flat((ROOT / "docs" / "formats.md").read_text()))
    assert m
    for (h, c), setting in (((m[1], m[2]), "W4A4"), ((m[3], m[4]), "W4A8")):
        hp = f[(f.setting == setting) & (f.w_format == "MXINT4/32") & (f.method == "plain")].ppl
        cp = t[(t.setting == setting) & (t.method == "rtn") & (t.rotation == "none")].ppl
        assert len(hp) == 1 and len(cp) == 1 and agrees(h, hp.iloc[0]) and agrees(c, cp.iloc[0]), setting


def test_readme_repricing_example_is_the_two_committed_tables():
    """'RTN 514 → 492 and LRC 8994 → 8970 at W4A4': the superseded file (a verbatim copy of
    lrc_table.csv before b5b7d46, same measurements) against today's."""
    old = pd.read_csv(RESULTS / "superseded" / "lrc_table_before_b5b7d46.csv", keep_default_na=False)
    new = pd.read_csv(RESULTS / "lrc_table.csv", keep_default_na=False)
    meta = json.loads((RESULTS / "superseded" / "lrc_table_before_b5b7d46.meta.json").read_text())
    assert meta["command"].startswith("git show b5b7d46^:docs/results/lrc_table.csv > ")
    cols = ["setting", "method", "rank", "rotation", "ppl", "bits_per_weight", "quantize_s"]
    assert old[cols].equals(new[cols])  # only the areas moved

    def area(d, method, rank):
        hit = d[(d.setting == "W4A4") & (d.method == method) & (d["rank"].astype(str) == rank) & (d.rotation == "none")]
        assert len(hit) == 1, (method, rank)
        return float(hit.area.iloc[0])

    m = re.search(r"e\.g\. RTN (\d+) → (\d+) and LRC (\d+) → (\d+) at W4A4 \(the earlier file, kept as "
                  r"`docs/results/superseded/lrc_table_before_b5b7d46\.csv`", flat(README))
    assert m
    assert agrees(m[1], area(old, "rtn", "")) and agrees(m[2], area(new, "rtn", ""))
    assert agrees(m[3], area(old, "lrc1", "0.1")) and agrees(m[4], area(new, "lrc1", "0.1"))


def test_readme_model_size_cites_the_data_readme():
    """'98 MB' is the GGUF's size as ../shared/data/README.md states it (a fact, not a measurement)."""
    assert "the 98 MB GGUF model (size from `../shared/data/README.md`)" in flat(README)
    data_readme = ROOT.parent / "shared" / "data" / "README.md"
    if data_readme.is_file():  # the shared folder sits beside the checkout on the development machine
        assert "SmolLM2-135M-Instruct.Q4_1.gguf` (98 MB" in data_readme.read_text()


def test_experiments_doc_sweep_run_is_its_results_csv():
    d = pd.read_csv(RESULTS / "sweep_gpu_h200" / "results.csv")
    p = flat((ROOT / "docs" / "experiments.md").read_text())
    m = re.search(r"the default (\d+)-point grid, (\d+) ok, .*?whose per-point `seconds` sum to (\d+) s \(one worker: "
                  r"the points ran one after another; the first point's (\d+) s include the GGUF load\)\. E\.g\. L2QER "
                  r"W4A8 k=32: perplexity ([\d.]+), fp ([\d.]+)\.", p)
    assert m
    assert int(m[1]) == len(d) and int(m[2]) == (d.status == "ok").sum()
    assert agrees(m[3], d.seconds.sum()) and agrees(m[4], d.seconds.iloc[0])
    by = d.set_index("label").perplexity
    assert agrees(m[5], by["l2qer W4A8 b16 k=32"]) and agrees(m[6], by["fp"])


def test_readme_streaming_paragraph_rates_are_the_csvs():
    """The 7B-shape runs' target, per-layer time, load and calibration tokens, as the CSVs and
    the meta hold them (tests/lqer/test_streaming_results.py checks the peaks)."""
    from experiments.provenance import read_table

    l2, _ = read_table(RESULTS / "streaming_7b_l2qer_cpu.csv")
    lrc, lrc_meta = read_table(RESULTS / "streaming_7b_lrc_cpu.csv")
    four = next(r for r in l2 if r["model layers"] == "4")
    p = flat(README)
    m = re.search(r"4-layer model: peak RSS [\d.]+ GiB against a target of ([\d.]+) GiB \(.*?\), ([\d.]+) s wall / "
                  r"([\d.]+) s CPU per layer at load average ([\d.]+)", p)
    assert m
    for printed, col in zip(m.groups(), ("target_GiB", "wall s/layer(mean)", "cpu s/layer(mean)", "load(mean)")):
        assert agrees(printed, float(four[col])), col
    m = re.search(r"and ([\d,]+) calibration tokens, layer 0 of the 2-layer model", p)
    assert m and num(m[1]) == lrc_meta["calibration"]["tokens"]
    m = re.search(r"one layer only: (\d+) s wall for it at load average ([\d.]+)\)", p)
    assert m and len(lrc) == 1 and agrees(m[1], float(lrc[0]["wall s/layer(mean)"]))
    assert agrees(m[2], float(lrc[0]["load(mean)"]))


def test_readme_main_job_time_is_the_committed_timings():
    t = pd.read_csv(RESULTS / "smollm2_cpu_timings.csv").set_index("step").seconds
    meta = json.loads((RESULTS / "smollm2_cpu_table.meta.json").read_text())
    assert set(meta["load_average_1_5_15min"]) == {"before", "after"}
    m = re.search(r"`docs/results/smollm2_cpu_timings\.csv`: (\d+) s in all \(perplexity table (\d+) s\)", flat(README))
    assert m and agrees(m[1], t["total"]) and agrees(m[2], t["perplexity table"])


def _diag_ppl(name: str) -> dict:
    """{'RTN': ppl, subset: ppl} of one docs/results/diag_gptq model log."""
    text = (RESULTS / "diag_gptq" / name).read_text()
    assert re.search(r"^# exit 0 ", text, re.M), name
    out = {"RTN": float(re.search(r"RTN ppl ([\d.]+)", text)[1])}
    out.update((m[1], float(m[2])) for m in re.finditer(r" on (\S+)\s+\(\d+ layers\): ppl ([\d.]+)", text))
    return out


def _diag_layer(layer: str, data: str, column: str) -> float:
    text = (RESULTS / "diag_gptq" / "layers.log").read_text()
    tokens = re.search(r"^layer\s+set\s+(.*)$", text, re.M)[1].split()
    names = []  # the header's column names; "RTN ex", "GPTQ exy", ... are two words each
    while tokens:
        names.append(" ".join(tokens[:2]) if tokens[0] in ("RTN", "GPTQ") else tokens[0])
        tokens = tokens[2:] if tokens[0] in ("RTN", "GPTQ") else tokens[1:]
    row = re.search(rf"^{re.escape(layer)}\s+{data}\s+(.*)$", text, re.M)[1].split()
    assert len(row) == len(names), (layer, data)
    return float(row[names.index(column)])


def test_lrc_gptq_bullet_is_the_diag_logs():
    """docs/lrc.md's GPTQ bullet: every whole-model perplexity is the logs' (2 decimals), and
    the per-layer numbers quoted are the layers.log cells (3 decimals)."""
    lrc = flat((ROOT / "docs" / "lrc.md").read_text())
    w4, w4s = _diag_ppl("model_W4A4.log"), _diag_ppl("model_W4A4_sink512.log")
    w8, w8s = _diag_ppl("model_W4A8.log"), _diag_ppl("model_W4A8_sink512.log")
    assert w4["RTN"] == w4s["RTN"] and w8["RTN"] == w8s["RTN"]
    quoted = [f"all {w4['all']:.2f}; attention {w4['attn']:.2f} (q/k/v {w4['qkv']:.2f}, o {w4['o']:.2f}); "
              f"MLP {w4['mlp']:.2f} (gate/up {w4['gate_up']:.2f}, down {w4['down']:.2f})",
              f"v_proj alone {w4['v']:.2f}, q_proj {w4['q']:.2f}, k_proj {w4['k']:.2f}",
              f"GPTQ on v_proj only {w4['v']:.2f} → {w4s['v']:.2f} (below RTN {w4['RTN']:.2f})",
              f"everywhere {w4['all']:.2f} → {w4s['all']:.2f} (RTN {w4['RTN']:.2f})",
              f"RTN {w8['RTN']:.2f}; GPTQ on v_proj only {w8['v']:.2f}, attention {w8['attn']:.2f}, MLP {w8['mlp']:.2f}",
              f"v_proj only {w8['v']:.2f} → {w8s['v']:.2f} (RTN {w8['RTN']:.2f})",
              f"W4A4 RTN {w4['RTN']:.2f} there"]
    for q in quoted:
        assert q in lrc, q
    cell = _diag_layer
    assert (f"layer 15 q_proj ‖(W−W_q)X‖/‖WX‖ {cell('15.self_attn.q_proj', 'test', 'RTN ex'):.3f} → "
            f"{cell('15.self_attn.q_proj', 'test', 'GPTQ ex'):.3f} (calib {cell('15.self_attn.q_proj', 'calib', 'GPTQ ex'):.3f})") in lrc
    for layer, kind in (("15", "k_proj"), ("15", "v_proj")):
        n = f"{layer}.self_attn.{kind}"
        assert f"{kind} {cell(n, 'calib', 'RTNex@p0'):.3f} → {cell(n, 'calib', 'GPTex@p0'):.3f}" in lrc, n
    assert f"down_proj {cell('15.mlp.down_proj', 'test', 'RTN ex'):.3f} → {cell('15.mlp.down_proj', 'test', 'GPTQ ex'):.3f}" in lrc
    assert f"o_proj 29 {cell('29.self_attn.o_proj', 'test', 'RTN ex'):.3f} → {cell('29.self_attn.o_proj', 'test', 'GPTQ ex'):.3f}" in lrc
    assert f"layer 29 v_proj {cell('29.self_attn.v_proj', 'test', 'RTNex@p0'):.3f} → {cell('29.self_attn.v_proj', 'test', 'GPTex@p0'):.3f}" in lrc
    assert (f"({cell('15.self_attn.q_proj', 'test', 'RTN exy'):.3f} → {cell('15.self_attn.q_proj', 'test', 'GPTQ exy'):.3f} "
            "for layer-15 q)") in lrc
