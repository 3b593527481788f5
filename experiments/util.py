"""Small helpers shared by the report and the sweep: atomic writes, hashing, devices, timing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


class UserError(Exception):
    """Bad input from the user (CLI flags, grid files): printed without a traceback."""


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


def write_json_atomic(path: Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a temp directory beside ``final``; on success it replaces ``final`` in one rename.

    On failure the temp directory is removed and any earlier ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old.{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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


@contextlib.contextmanager
def atomic_files(dest: Path):
    """Yield a temp directory; on success each file in it is moved into ``dest`` with os.replace.

    Each file appears whole or not at all (unlike atomic_dir, other files in ``dest`` stay).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging.", dir=dest))
    try:
        yield tmp
        for f in sorted(tmp.iterdir()):
            os.replace(f, dest / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads; None = auto: all cores on an idle machine, ONE thread when
    the load average already reaches the core count (on a shared 2-core box, a 2-thread SVD was
    measured 30x slower than a 1-thread one: OpenMP threads spin waiting for each other)."""
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
    return threads
