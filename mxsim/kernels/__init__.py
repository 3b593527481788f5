"""numba kernels of mxsim (CPU). ``serial_if_small`` keeps small calls on the calling thread."""

import functools

import numba


def _start_numba_pool_keeping_torch_threads():
    """Start numba's thread pool now, then give torch back its thread count.

    numba starts its pool at the first parallel launch, and its OpenMP threading layer then
    sets OpenMP's thread count to NUMBA_NUM_THREADS. torch's intra-op pool reads the same
    OpenMP setting, so a ``torch.set_num_threads(4)`` made before mxsim's first kernel call
    silently became 16 on a 16-core machine (seen: bench_lrc.py layer --threads 4 ran LRC
    with 16 torch threads on the H200 host). Starting the pool here, at import, and
    restoring torch's count keeps the caller's setting; later launches leave it alone."""
    try:
        import torch
    except ImportError:  # mxsim on numpy alone: nothing to protect
        numba.get_num_threads()
        return
    threads = torch.get_num_threads()
    numba.get_num_threads()  # public API; it starts the pool (numba's _launch_threads) first
    torch.set_num_threads(threads)


_start_numba_pool_keeping_torch_threads()

# Below this many elements a call's prange kernels run on the calling thread alone. Waking
# numba's pool costs tens of microseconds idle, and on a loaded machine a parallel call waits
# for its slowest thread: a 576 x 2 float64 MXFP4 fake_quantize took 6.4 ms on average with 2
# threads vs 0.16 ms with 1 (2-core VM at load 6). GPTQ/LRC make one such call per weight
# column (~150k per SmolLM2); their column loop relies on this instead of pinning numba itself.
SERIAL_BELOW = 1 << 15


def serial_if_small(run):
    """Decorate a kernel runner whose first argument is the array it works on."""

    @functools.wraps(run)
    def wrapped(x, *args, **kwargs):
        old = numba.get_num_threads()
        if x.size >= SERIAL_BELOW or old == 1:
            return run(x, *args, **kwargs)
        numba.set_num_threads(1)  # this thread's launches only (numba's setting is thread-local)
        try:
            return run(x, *args, **kwargs)
        finally:
            numba.set_num_threads(old)

    return wrapped
