"""Small helpers shared by the report and the sweep: hashing, devices, timing (atomic writes and
UserError come from mxsim.files / mxsim.errors, re-exported here)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time

from mxsim.errors import UserError  # noqa: F401 - re-exported: experiments raise it
from mxsim.files import atomic_dir, atomic_files  # noqa: F401 - the one atomic-write implementation
from mxsim.files import write_json as write_json_atomic  # noqa: F401


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a CUDA device is present, else 'cpu'; 'cuda' without one is an error."""
    import torch

    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise UserError(f"--device must be auto, cpu or cuda (got {device!r})")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked for but torch sees no CUDA device")
    return device


def stable_hash(obj, n: int = 16) -> str:
    """Hash of a JSON-able object that does not depend on dict order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


class Timer:
    """Records named wall-clock sections: ``with timer("calibration"): ...``."""

    def __init__(self):
        self.sections: dict[str, float] = {}
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.sections[name] = self.sections.get(name, 0.0) + time.perf_counter() - t

    @property
    def total(self) -> float:
        return time.perf_counter() - self.t0


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (also mxsim.matmul's strip workers) and numba's (the quantize
    kernels), numba's capped at the pool it was started with; None = auto: all cores on an idle
    machine, ONE thread when the load average already reaches the core count (on a shared 2-core
    box, a 2-thread SVD was measured 30x slower than a 1-thread one: OpenMP threads spin waiting
    for each other). Returns torch's thread count."""
    import numba
    import torch

    cores = os.cpu_count() or 1
    if threads is None:
        try:
            busy = os.getloadavg()[0] >= cores
        except OSError:
            busy = False
        threads = 1 if busy else cores
    if threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return threads
