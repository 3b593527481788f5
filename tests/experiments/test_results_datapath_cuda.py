"""The whole-split datapath table measured on an H200 (docs/results/datapath_cuda_fullsplit/) as
the README quotes it, and experiments.datapath_table.combine, which joined its six runs."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from experiments.datapath_table import combine, markdown, read_rows, write

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "results" / "datapath_cuda_fullsplit"
README = (ROOT / "README.md").read_text()
META = json.loads((FOLDER / "datapath_table.meta.json").read_text())


def test_readme_table_is_the_committed_rows():
    assert markdown(read_rows(FOLDER / "datapath_table.csv"), corner="H200, whole split: accumulator") in README


def test_sixteen_and_twelve_bits_are_refused_for_the_block_sum_width():
    # hand: an MXINT a x MXINT b product is a + b - 1 bits signed; a block of k adds log2(k) bits.
    # 16 bits: every GEMM of MXINT8 x MXINT8 (W8A8, and L2QER's low-rank path) needs 15 + log2(k);
    # 12 bits: L2QER's main GEMM, MXINT8 x MXINT4, already needs 11 + log2(k)
    t = pd.read_csv(FOLDER / "datapath_table.csv")
    for block, log2k in ((16, 4), (32, 5)):
        at = t[t.block == block]
        for total, setting, need in ((16, "W4A8-L2QER", 15), (16, "W8A8-MXINT8", 15),
                                     (12, "W4A8-L2QER", 11), (12, "W8A8-MXINT8", 15)):
            refused = at[(at.setting == setting) & at.accumulator.str.startswith(f"fixed:{total}:")]
            assert len(refused) == 2 and (refused.status == "not representable").all(), (block, total, setting)
            assert refused.note.str.contains(rf"total_bits in \[{need + log2k}\b").all(), refused.note.tolist()


SESSION9_RUNS = ["dt_L16x", "dt_L16y", "dt_L16z", "dt_L32x", "dt_L32y", "dt_W16x", "dt_W16y", "dt_W32x", "dt_W32y"]


def test_every_run_says_where_it_ran_and_the_one_cut_short_is_made_up():
    calls = (FOLDER / "device_calls.txt").read_text()
    runs = {r["run"]: r for r in META["runs"]}
    assert list(runs)[6:] == SESSION9_RUNS and len(runs) == 15
    assert all(r["windows"] == "full" and r["seq_len"] == 1024 and r["device"] == "cuda" for r in runs.values())
    # session 8: commit 1712d03 on the device, six processes, each exit 0
    s8, s9 = calls.split("# Session 9", 1)
    assert re.search(r"^1712d03[0-9a-f]{33}$", s8, re.M) and len(re.findall(r"exit 0", s8)) == 6
    # session 9: the metas carry the device's stale HEAD, which the committed git status explains
    status = (ROOT / "docs" / "results" / "device_git_session9.txt").read_text()
    assert all(runs[n]["commit"] == "ac8cdb9+dirty" for n in SESSION9_RUNS) and status.count("\nac8cdb9") == 1
    assert " M experiments/datapath_table.py" in status
    exits = dict(re.findall(r"^(\w+) exit (\d+)$", s9, re.M))
    assert {f"dt_{k}" for k in exits} == set(SESSION9_RUNS)
    assert [k for k, v in exits.items() if v != "0"] == ["L16y"] == [n[3:] for n in SESSION9_RUNS
                                                                     if not runs[n].get("complete")]
    # what the cut-short run did not reach is the row the one after it measured
    t = pd.read_csv(FOLDER / "datapath_table.csv")
    assert t[(t.block == 16) & (t.setting == "W4A8-L2QER") & (t.accumulator == "fixed:24:saturate")].run.tolist() == ["dt_L16z"]
    # every (setting, block) has the full accumulator list, once
    from experiments.datapath_table import BLOCKS, FULL_ACCUMULATORS, SETTINGS

    assert sorted(zip(t.setting, t.block, t.accumulator)) == sorted(
        (s, b, a) for s in SETTINGS for b in BLOCKS for a in FULL_ACCUMULATORS)


def test_readme_warm_fp32_time_is_the_timing_run():
    timing = next(r for r in META["runs"] if r["run"] == "dt_W32_timing")
    seconds = timing["row_seconds"]
    assert [a for a, _ in seconds] == ["float", "fp32", "float", "fp32", "exact"]
    warm_float, warm_fp32, exact = seconds[2][1], seconds[3][1], seconds[4][1]
    m = re.search(r"fp32 datapath ([\d.]+) s vs the float emulation ([\d.]+) s for the whole split = ([\d.]+)×",
                  " ".join(README.split()))
    assert m and float(m[1]) == warm_fp32 and float(m[2]) == warm_float
    assert float(m[3]) == round(warm_fp32 / warm_float, 2) <= 2
    assert f"exact {exact} s" in README


def _run(tmp, name, accs_ppl):
    rows = [{"setting": "W8A8-MXINT8", "block": 32, "accumulator": a, "status": "ok", "ppl": p, "seconds": 1.0}
            for a, p in accs_ppl]
    layers = [{"setting": "W8A8-MXINT8", "block": 32, "accumulator": a, "layer": "l0", "gemm": "main",
               "outputs": 10, "overflowed": 1} for a, _ in accs_ppl if a.startswith("fixed")]
    write(tmp / name, rows, layers, {"complete": True})
    return tmp / name


def test_combine_keeps_the_first_of_each_row_and_every_time(tmp_path):
    a = _run(tmp_path, "a", [("float", 21.0), ("fixed:20:wrap", 99.0)])
    b = _run(tmp_path, "b", [("float", 21.0), ("fp32", 21.5), ("fp32", 21.5)])
    combine([a, b], tmp_path / "out")
    t = pd.read_csv(tmp_path / "out" / "datapath_table.csv")
    assert t.accumulator.tolist() == ["float", "fixed:20:wrap", "fp32"]
    assert t.run.tolist() == ["a", "a", "b"]
    lay = pd.read_csv(tmp_path / "out" / "datapath_layers.csv")
    assert lay.accumulator.tolist() == ["fixed:20:wrap"] and lay.run.tolist() == ["a"]
    meta = json.loads((tmp_path / "out" / "datapath_table.meta.json").read_text())
    assert [len(r["row_seconds"]) for r in meta["runs"]] == [2, 3] and meta["complete"]


def test_combine_carries_an_earlier_combination(tmp_path):
    a = _run(tmp_path, "a", [("float", 21.0), ("fixed:20:wrap", 99.0)])
    b = _run(tmp_path, "b", [("float", 21.0), ("fp32", 21.5)])
    combine([a, b], tmp_path / "first")
    c = _run(tmp_path, "c", [("float", 21.0), ("fixed:24:wrap", 30.0)])
    combine([tmp_path / "first", c], tmp_path / "out")
    t = pd.read_csv(tmp_path / "out" / "datapath_table.csv")
    assert t.accumulator.tolist() == ["float", "fixed:20:wrap", "fp32", "fixed:24:wrap"]
    assert t.run.tolist() == ["a", "a", "b", "c"]  # rows keep the run that measured them
    lay = pd.read_csv(tmp_path / "out" / "datapath_layers.csv")
    assert list(zip(lay.accumulator, lay.run)) == [("fixed:20:wrap", "a"), ("fixed:24:wrap", "c")]
    meta = json.loads((tmp_path / "out" / "datapath_table.meta.json").read_text())
    assert [r["run"] for r in meta["runs"]] == ["a", "b", "c"] and meta["combined_from"] == ["a", "b", "c"]


def test_combine_refuses_runs_that_disagree(tmp_path):
    from mxsim.errors import UserError

    a = _run(tmp_path, "a", [("float", 21.0)])
    b = _run(tmp_path, "b", [("float", 22.0)])
    with pytest.raises(UserError, match="perplexity"):
        combine([a, b], tmp_path / "out")
    with pytest.raises(UserError, match="no datapath_table.csv"):
        combine([a, tmp_path / "missing"], tmp_path / "out")


def test_readme_overflow_sums_and_row_times_are_the_files():
    """'saturated: 34,456 vs 34,146 for L2QER /16, 8,923 vs 8,633 for MXINT8 /16' are the sums of
    the layer file's overflowed outputs; '54–260 s ... (82.4 s alone)' the fixed rows' seconds."""
    text = " ".join(README.split())
    lay = pd.read_csv(FOLDER / "datapath_layers.csv")

    def summed(setting, total):
        at = lay[(lay.setting == setting) & (lay.block == 16) & (lay.accumulator == f"fixed:{total}:saturate")]
        return f"{int(at.overflowed.sum()):,}"

    assert (f"saturated: {summed('W4A8-L2QER', 32)} vs {summed('W4A8-L2QER', 24)} for L2QER /16, "
            f"{summed('W8A8-MXINT8', 32)} vs {summed('W8A8-MXINT8', 24)} for MXINT8 /16") in text
    t = pd.read_csv(FOLDER / "datapath_table.csv")
    fixed = t[t.accumulator.str.startswith("fixed") & (t.status == "ok")]
    shared = fixed[fixed.run != "dt_L16z"].seconds
    alone = fixed[fixed.run == "dt_L16z"].seconds.tolist()
    m = re.search(r"a fixed-point row took (\d+)–(\d+) s with five to eight processes sharing the GPU \(([\d.]+) s alone\)",
                  text)
    assert m and (int(m[1]), int(m[2])) == (int(shared.min()), int(shared.max())) and [float(m[3])] == alone
