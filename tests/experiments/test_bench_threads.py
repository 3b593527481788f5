"""experiments.util.set_threads, the one thread setter of the experiments and the benchmarks
(benchmarks/bench_datapath.py --threads N calls it): it sets torch's pool (mxsim.matmul's strip
workers) and numba's (the quantize kernels) to N, numba's capped at the pool numba started with
(a run once printed "torch threads 2" for --threads 1: the flag had not reached the pools)."""

import numba
import pytest
import torch

from experiments import util
from mxsim.errors import UserError


@pytest.fixture(autouse=True)
def wide_pools():
    # the pools start as wide as they go, so a count left unapplied shows; restored afterwards
    old = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(max(2, old[0]))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    yield
    torch.set_num_threads(old[0])
    numba.set_num_threads(old[1])


def test_one_thread_reaches_both_pools():
    assert util.set_threads(1) == 1
    assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1)


def test_more_threads_than_numbas_pool_caps_numba_only():
    n = numba.config.NUMBA_NUM_THREADS  # numba cannot run more threads than it launched with
    assert util.set_threads(n + 1) == n + 1
    assert (torch.get_num_threads(), numba.get_num_threads()) == (n + 1, n)


@pytest.mark.parametrize("load, want", [(0.3, 2), (1.9, 2), (2.0, 1), (5.0, 1)])
def test_auto_is_one_thread_on_a_busy_two_core_machine(monkeypatch, load, want):
    # 2 cores: busy means a load average of at least 2
    monkeypatch.setattr(util.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(util.os, "getloadavg", lambda: (load, load, load))
    assert util.set_threads(None) == want
    assert torch.get_num_threads() == want
    assert numba.get_num_threads() == min(want, numba.config.NUMBA_NUM_THREADS)


def test_auto_without_a_load_average_uses_every_core(monkeypatch):
    def no_load():
        raise OSError("no load average here")

    monkeypatch.setattr(util.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(util.os, "getloadavg", no_load)
    assert util.set_threads(None) == 2 and torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1])
def test_fewer_than_one_thread_is_refused_before_any_pool_changes(bad):
    before = torch.get_num_threads(), numba.get_num_threads()
    with pytest.raises(UserError, match=f"^--threads must be >= 1, got {bad}$"):
        util.set_threads(bad)
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
