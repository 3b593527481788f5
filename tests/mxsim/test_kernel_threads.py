"""Small kernel calls run on the calling thread (mxsim.kernels.serial_if_small), large ones on
numba's pool, and the caller's thread count is always restored."""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import mxsim
from mxsim.kernels import SERIAL_BELOW, serial_if_small


def test_small_calls_run_serial_and_restore_the_thread_count():
    seen = []
    run = serial_if_small(lambda x: seen.append(numba.get_num_threads()))
    old = numba.get_num_threads()
    run(np.zeros(SERIAL_BELOW - 1))
    run(np.zeros(SERIAL_BELOW))
    assert seen == [1, old]
    assert numba.get_num_threads() == old


def test_the_thread_count_is_restored_when_the_kernel_raises():
    def boom(x):
        raise RuntimeError("kernel failed")

    old = numba.get_num_threads()
    with pytest.raises(RuntimeError):
        serial_if_small(boom)(np.zeros(4))
    assert numba.get_num_threads() == old


@pytest.mark.parametrize("fmt", ["MXINT4", "MXFP4_E2M1", "NVFP4"])
def test_a_small_call_gives_the_bits_of_the_same_rows_in_a_large_one(fmt):
    # the same rows quantized alone (serial) and inside a tensor past the threshold (parallel)
    x = np.random.default_rng(0).standard_normal((SERIAL_BELOW // 16 + 8, 32)).astype(np.float32)
    big = mxsim.fake_quantize(x, fmt, axis=-1)
    small = mxsim.fake_quantize(x[:8], fmt, axis=-1)
    assert x.size >= SERIAL_BELOW > x[:8].size
    np.testing.assert_array_equal(small.view(np.uint32), big[:8].view(np.uint32))


def test_mxsims_first_kernel_call_keeps_the_torch_thread_count_set_before_it():
    # A fresh process (this one's numba pool is already running): the caller sets torch to one
    # thread, then mxsim's first parallel kernel call starts numba's pool. The count must stay
    # the caller's 1; before mxsim started the pool itself, the OpenMP layer's start set it to
    # NUMBA_NUM_THREADS (forced to 2 here, so the check means something on any machine).
    code = ("import torch, mxsim; torch.set_num_threads(1); "
            "mxsim.fake_quantize(torch.ones((1024, 256)), 'MXINT4'); print(torch.get_num_threads())")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1"
