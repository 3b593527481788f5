"""Design-space sweep on Dask: one task per design point, one cached JSON file per point.

Each point's result lands in ``<out>/points/<key>.json`` (written atomically, key = hash of the
point and of the evaluation settings), so an interrupted sweep resumes without redoing finished
points. A point that raises is recorded with ``status = "error"`` and its message; the others
go on. ``--retry-failed`` re-runs recorded failures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import traceback
from pathlib import Path

import pandas as pd

from mxsim.errors import UserError, user_input
from mxsim.files import atomic_files, check_output
from mxsim.files import write_json as write_json_atomic

from .grid import DesignPoint, check_settings, load_grid
from .util import stable_hash

CACHE_VERSION = 1
RESULT_COLUMNS = ["key", "label", "method", "w_bits", "a_bits", "block", "rank", "scale_rule", "accumulator", "status",
                  "perplexity", "bits_per_weight", "area", "area_unit", "seconds", "error"]


def point_key(point: DesignPoint, settings: dict) -> str:
    return stable_hash({"v": CACHE_VERSION, "point": point.to_dict(), "settings": settings})


def run_point(point_dict: dict, settings: dict, cache_file: str | None, threads: int | None = None) -> dict:
    """The Dask task: evaluate one design point; never raises (errors are returned as records)."""
    t0 = time.perf_counter()
    point = DesignPoint(**point_dict)
    rec = {"key": Path(cache_file).stem if cache_file else None, "label": point.label, **point.to_dict(),
           "scale_rule": point.scale_rule, "accumulator": point.accumulator, "settings": settings, "host": os.uname().nodename, "pid": os.getpid()}
    try:
        from .util import set_threads

        set_threads(threads)  # None: auto (1 thread on a busy machine)
        from .evaluate import evaluate_point

        rec.update(evaluate_point(point, settings))
        rec["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - a failing point must not kill the sweep
        rec.update(status="error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    rec["seconds"] = time.perf_counter() - t0
    if cache_file:
        try:
            write_json_atomic(Path(cache_file), rec)
        except OSError:  # a remote worker may not see the driver's disk; the driver writes it too
            pass
    return rec


def _worker_plugin_base():
    from distributed.diagnostics.plugin import WorkerPlugin

    return WorkerPlugin


class PinGPU(_worker_plugin_base()):
    """Dask worker plugin: worker ``name`` i of a LocalCluster sees only GPU ``gpus[i % len]``
    (CUDA_VISIBLE_DEVICES set in the worker process before any task touches CUDA; the scheduler
    re-runs it on a restarted worker). Each point then runs on ``cuda`` = its worker's GPU."""

    name = "mxlab-pin-gpu"

    def __init__(self, gpus):
        self.gpus = [str(g) for g in gpus]

    def setup(self, worker):
        try:
            i = int(worker.name)
        except (TypeError, ValueError):
            i = abs(hash(worker.name))
        os.environ["CUDA_VISIBLE_DEVICES"] = self.gpus[i % len(self.gpus)]


def gpu_ids(gpus) -> list[int]:
    """--gpus N (the first N GPUs) or "auto" (all) -> GPU indices; UserError if there are not so many."""
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == "auto":
        n = have
    else:
        try:
            n = int(gpus)
        except (TypeError, ValueError):
            raise UserError(f"--gpus must be a positive integer or 'auto', got {gpus!r}") from None
        if n < 1:
            raise UserError(f"--gpus must be a positive integer or 'auto', got {gpus!r}")
    if n < 1 or n > have:
        raise UserError(f"--gpus {gpus} asks for {n} GPU worker(s) but torch sees {have} CUDA device(s)")
    return list(range(n))


def _client(scheduler: str | None, workers: int, processes: bool, gpus=None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as e:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                           dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    if gpus:
        client.register_plugin(PinGPU(gpus), name=PinGPU.name)
    return client, cluster


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored while worker processes start (they keep it ignored: a Ctrl-C in the terminal
    reaches the whole process group, and each worker would print its own traceback)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def run_sweep(grid: str | Path | None = None, out: str | Path = "reports/sweep", *, scheduler: str | None = None,
              workers: int = 1, processes: bool = True, retry_failed: bool = False, progress: bool = True,
              settings_override: dict | None = None, gpus=None, log=print) -> pd.DataFrame:
    """Run (or resume) a sweep; returns one row per design point. Writes results.csv, pareto.*.

    ``gpus``: None, a count or "auto": a LocalCluster of one worker process per GPU, each pinned
    to its GPU (PinGPU), points on ``device = "cuda"``. With ``scheduler`` the remote workers
    must be pinned when started (one ``CUDA_VISIBLE_DEVICES=i dask worker ... --nworkers 1``
    per GPU, or ``dask cuda worker``); see docs/experiments.md."""
    from tqdm.auto import tqdm

    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if gpus is not None:
        if scheduler:
            raise UserError("--gpus starts local GPU workers; with --scheduler start the cluster's workers pinned "
                            "to one GPU each instead (docs/experiments.md)")
        if not processes:
            raise UserError("--gpus needs worker processes (one per GPU); drop --threads")
        if (settings_override or {}).get("device") not in (None, "cuda"):
            raise UserError(f"--gpus runs every point on its worker's GPU: --device must be cuda, "
                            f"got {settings_override['device']!r}")
        gpus = gpu_ids(gpus)
        workers = len(gpus)
        settings_override = {**(settings_override or {}), "device": "cuda"}
    out = check_output(out, "--out", "dir")
    settings, points = load_grid(grid)
    if settings_override:
        settings.update({k: v for k, v in settings_override.items() if v is not None})
        check_settings(settings, "command line")
    if not scheduler:  # a remote cluster's workers may see paths the driver does not
        from lqer.model import resolve_model_path

        with user_input("settings.model (--model)"):
            resolve_model_path(settings["model"])
        from .hardware import sweep_shape

        sweep_shape(settings)  # the shape the areas price, before any point runs
    cache_dir = out / "points"
    cache_dir.mkdir(parents=True, exist_ok=True)

    records: dict[str, dict] = {}
    todo: list[tuple[str, DesignPoint]] = []
    for p in points:
        key = point_key(p, settings)
        f = cache_dir / f"{key}.json"
        if f.is_file():
            try:
                rec = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                rec = None
            if rec is not None and (rec.get("status") == "ok" or not retry_failed):
                rec["cached"] = True
                records[key] = rec
                continue
        todo.append((key, p))
    log(f"sweep: {len(points)} design points, {len(points) - len(todo)} cached, {len(todo)} to run -> {out}")

    if todo:
        from dask.distributed import as_completed

        threads = None
        if not scheduler and workers > 1:
            threads = max(1, (os.cpu_count() or 1) // workers)
        with _sigint_ignored():  # worker processes inherit it: Ctrl-C stops the driver only, quietly
            client, cluster = _client(scheduler, workers, processes, gpus)
        try:
            futs = {}
            for key, p in todo:
                fut = client.submit(run_point, p.to_dict(), settings, str(cache_dir / f"{key}.json"), threads,
                                    key=f"point-{key}", pure=False)
                futs[fut] = (key, p)
            bar = tqdm(total=len(futs), desc="design points", unit="pt", disable=not progress)
            for fut in as_completed(futs):
                key, p = futs[fut]
                try:
                    rec = fut.result()
                except Exception as e:  # noqa: BLE001 - a dead worker, a lost task
                    rec = {"key": key, "label": p.label, **p.to_dict(), "status": "error",
                           "error": f"{type(e).__name__}: {e}"}
                else:
                    write_json_atomic(cache_dir / f"{key}.json", rec)
                rec["cached"] = False
                records[key] = rec
                bar.set_postfix_str(f"{p.label}: {rec['status']}")
                bar.update(1)
                if rec["status"] != "ok":
                    log(f"sweep: point {p.label} failed: {rec.get('error')}")
            bar.close()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    rows = []
    for p in points:
        rec = records[point_key(p, settings)]
        row = {c: rec.get(c) for c in RESULT_COLUMNS}
        row["key"] = point_key(p, settings)
        row["scale_rule"] = p.scale_rule  # records cached before scale rules existed have none
        row["accumulator"] = p.accumulator  # nor before the accumulator axis
        row["cached"] = rec.get("cached", False)
        rows.append(row)
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS + ["cached"])
    df["pareto"] = pareto_mask(df)
    write_outputs(df, out, settings)
    return df


def pareto_mask(df: pd.DataFrame, x: str = "area", y: str = "perplexity") -> pd.Series:
    """True for successful points that no other point beats on both x and y (lower is better)."""
    ok = df[(df["status"] == "ok") & df[x].notna() & df[y].notna()]
    mask = pd.Series(False, index=df.index)
    for i, r in ok.iterrows():
        dominated = ((ok[x] <= r[x]) & (ok[y] <= r[y]) & ((ok[x] < r[x]) | (ok[y] < r[y]))).any()
        mask[i] = not dominated
    return mask


def write_outputs(df: pd.DataFrame, out: Path, settings: dict) -> None:
    """results.csv, pareto.png and sweep.md beside points/, each replaced atomically."""
    from .figures import pareto_plot

    out = Path(out)
    with atomic_files(out) as tmp:
        df.to_csv(tmp / "results.csv", index=False)
        ok = df[df["status"] == "ok"]
        png = None
        if len(ok):
            png = "pareto.png"
            pareto_plot(df, tmp / png, tech=settings.get("tech"))
        lines = ["# Design-space sweep", "",
                 f"Settings: `{json.dumps(settings, sort_keys=True)}`", "",
                 f"{len(df)} design points: {int((df.status == 'ok').sum())} ok, "
                 f"{int((df.status != 'ok').sum())} failed, {int(df.cached.sum())} taken from the cache.", ""]
        if png:
            lines += [f"![Pareto front]({png})", "",
                      "*Perplexity against hardware area (hwmodel: one unit time-shared over every linear layer of `hw_shape`); the line joins the Pareto-"
                      "optimal designs — look for the points nearest the lower-left corner.*", ""]
        show = df[["label", "status", "perplexity", "bits_per_weight", "area", "pareto", "error"]].copy()
        lines += [show.to_markdown(index=False, floatfmt=".4g"), ""]
        (tmp / "sweep.md").write_text("\n".join(lines))
