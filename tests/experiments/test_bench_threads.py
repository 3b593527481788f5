"""benchmarks/bench_datapath.py --threads N: torch's and numba's pools run the forwards with N
threads and the printed machine line says so (a run printed "torch threads 2" for --threads 1).
The model, data and quantization are stand-ins: only the thread handling is under test."""

import importlib.util
import re
from pathlib import Path

import numba
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_datapath", ROOT / "benchmarks" / "bench_datapath.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_threads_flag_sets_and_prints_the_pools(monkeypatch, capsys):
    import lqer.data
    import lqer.datapath
    import lqer.model
    import lqer.quantize

    seen = []

    def model(ids):
        seen.append((torch.get_num_threads(), numba.get_num_threads()))

    monkeypatch.setattr(lqer.model, "load_model", lambda name: (model, None))
    monkeypatch.setattr(lqer.data, "load_wikitext", lambda split: "")
    monkeypatch.setattr(lqer.data, "token_windows", lambda tok, text, seq, batch: torch.zeros(batch, seq, dtype=torch.long))
    monkeypatch.setattr(lqer.quantize, "quantize_model", lambda *a, **k: None)
    monkeypatch.setattr(lqer.datapath, "set_accumulator", lambda m, acc: None)
    old = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(2)  # the pools start wider than asked for, so a flag left unapplied shows
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        assert _bench().main(["--threads", "1", "--accumulators", "float,fp32", "--batch", "1", "--seq", "4"]) == 0
    finally:
        torch.set_num_threads(old[0])
        numba.set_num_threads(old[1])
    assert seen and set(seen) == {(1, 1)}
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("# ")]
    assert len(line) == 1 and re.search(r"torch threads 1, numba threads 1,", line[0]), line
