"""GPU workers for the sweep: each LocalCluster worker pinned to its own GPU; mistakes refused first."""
import os

import pytest

from experiments.sweep import PinGPU, gpu_ids, run_sweep
from mxsim.errors import UserError


def _visible():
    return os.environ.get("CUDA_VISIBLE_DEVICES")


@pytest.mark.slow  # two worker processes: ~1 min on the shared 2-core machine
def test_pin_gpu_gives_each_worker_process_its_own_device():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        client.register_plugin(PinGPU([3, 5]), name=PinGPU.name)
        seen = client.run(_visible)
    assert sorted(seen.values()) == ["3", "5"]


def test_gpu_mistakes_are_refused_before_work(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="torch sees 0 CUDA device"):
        gpu_ids(1)
    with pytest.raises(UserError, match="positive integer or 'auto'"):
        gpu_ids("two")
    with pytest.raises(UserError, match="with --scheduler"):
        run_sweep(None, tmp_path / "s", scheduler="tcp://127.0.0.1:1", gpus=1, progress=False)
    with pytest.raises(UserError, match="--device must be cuda"):
        run_sweep(None, tmp_path / "s", gpus=1, settings_override={"device": "cpu"}, progress=False)
    assert not (tmp_path / "s").exists()
