"""Writing results: check output locations before work, write files and directories atomically.

The one implementation used by every package (saved models, report directories, sweep point
files, CSVs, plots, caches):

- ``check_output(path, what, kind)``: before any work starts, the location must be usable:
  an existing file/directory of the right kind, or creatable (its nearest existing ancestor is
  a writable directory, probed by really creating and removing a file, so read-only mounts and
  ACLs count). Nothing is created. Raises UserError naming ``what``.
- ``atomic_write(path)`` yields a temp path beside ``path``; on success it is renamed over
  ``path`` in one step, on failure removed. ``atomic_dir(path)`` does the same for a directory
  (the old directory, if any, is replaced as a whole); ``atomic_files(dest)`` stages several
  files and moves each into ``dest``.
- Modes follow the umask like ``open()``/``mkdir()``: files 0666 & ~umask, directories
  0777 & ~umask (tempfile's private 0600/0700 would make a team's results unreadable to it).
- Temp names carry host and pid: ``.<name>.<host>-<pid>-<random>.tmp``. Before writing, temp
  siblings of the same target left by a dead process on this host (a SIGKILLed run) are removed;
  those of live processes or other hosts (a shared file system) are left alone unless older
  than a day.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from .errors import UserError

STALE_FOREIGN_S = 24 * 3600  # temp files of another host's process: removed after a day


def umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and racy with threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    m = os.umask(0o022)
    os.umask(m)
    return m


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


# ----------------------------------------------------------------------------- checks before work
def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink():
        if p.parent == p:
            break
        p = p.parent
    return p


def _probe_writable(directory: Path) -> str | None:
    """None if a file can be created in ``directory``, else why not."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-probe.", dir=directory)
    except OSError as e:
        return e.strerror or type(e).__name__
    os.close(fd)
    os.unlink(tmp)
    return None


def check_output(path, what: str, kind: str = "file") -> Path:
    """``path`` as a Path if a ``kind`` ('file' or 'dir') can be written there; else UserError naming ``what``.

    Creates nothing (a failed command leaves no empty directories behind)."""
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    if path is None or str(path) == "":
        raise UserError(f"{what}: an output path is required, got {path!r}")
    path = Path(path).expanduser()
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise UserError(f"{what} {str(path)!r} exists and is not a directory")
        if kind == "file" and path.is_dir():
            raise UserError(f"{what} {str(path)!r} is a directory; give a file name")
        where = path if kind == "dir" else path.parent
    else:
        where = _nearest_existing(path.parent)
        if not where.is_dir():
            raise UserError(f"{what} {str(path)!r} cannot be created: {str(where)!r} is not a directory")
    why = _probe_writable(where)
    if why is not None:
        raise UserError(f"{what} {str(path)!r} is not writable ({str(where)!r}: {why})")
    return path


# ----------------------------------------------------------------------------- temp names
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname() or "host")


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(target) -> list[Path]:
    """Remove temp siblings of ``target`` left by dead processes (see the module doc); returns them."""
    target = Path(target)
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    me = _host()
    for p in entries:
        m = _TMP.match(p.name)
        if m is None or m["name"] != target.name:
            continue
        pid = int(m["pid"])
        if m["host"] == me:
            stale = pid != os.getpid() and not _alive(pid)
        else:
            try:
                stale = time.time() - p.lstat().st_mtime > STALE_FOREIGN_S
            except OSError:
                continue
        if stale:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


# ----------------------------------------------------------------------------- atomic writes
def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


@contextlib.contextmanager
def atomic_write(path):
    """``with atomic_write(p) as tmp: write tmp`` -> ``p`` appears whole (mode 0666 & ~umask) or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    fd, name = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def write_text(path, text: str) -> Path:
    with atomic_write(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final):
    """Yield a temp directory beside ``final``; on success it replaces ``final`` as a whole.

    On failure the temp directory is removed and any earlier ``final`` stays untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(final)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(final), suffix=".tmp", dir=final.parent))
    try:
        os.chmod(tmp, dir_mode())
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        # a temp name too, so that a kill between the two renames leaves something cleanable
        old = final.parent / (_tmp_prefix(final) + "old.tmp")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        _remove(old)


@contextlib.contextmanager
def atomic_files(dest):
    """Yield a staging directory; on success each file in it is moved into ``dest`` (each whole or
    not at all; other files in ``dest`` stay). Files keep the modes ``open()`` gave them."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / ".staging"
    clean_stale_temps(staging)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(staging), suffix=".tmp", dir=dest))
    try:
        yield tmp
        for f in sorted(tmp.iterdir()):
            os.replace(f, dest / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
