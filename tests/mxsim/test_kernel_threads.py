"""Small kernel calls run on the calling thread (mxsim.kernels.serial_if_small), large ones on
numba's pool, and the caller's thread count is always restored."""

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
