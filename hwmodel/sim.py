"""Simulate the RTL in ``hwmodel/rtl`` with cocotb on Icarus Verilog; the testbenches
(``hwmodel/tb/*.py``) drive the DUT and score it against reference values computed here by
mxsim (MX paths) or numpy (FP16/FP32 paths) before the simulation starts.

:func:`run` builds one top module at one parameter set, hands the testbench its vectors and
expected values in an ``.npz`` file, runs it and returns the testbench's summary (vectors,
mismatches, latencies seen). A failed test is a :class:`SimError` carrying the testbench's
first mismatches and the tail of the simulator log.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import synth

RTL_DIR = synth.RTL_DIR
ROOT = Path(__file__).resolve().parent.parent
TIMESCALE = ("1ns", "1ps")


class SimError(RuntimeError):
    """Icarus or cocotb is missing, or a build, a run or a scoreboard check failed."""


def tools() -> tuple[str, str]:
    iv, vvp = shutil.which("iverilog"), shutil.which("vvp")
    if iv is None or vvp is None:
        raise SimError(
            "Icarus Verilog (iverilog, vvp) not found on PATH: install it (Debian/Ubuntu: "
            "`apt-get install -y --no-install-recommends iverilog`)")
    try:
        import cocotb  # noqa: F401
        import cocotb_tools.runner  # noqa: F401
    except ImportError as exc:
        raise SimError(f"cocotb is not installed ({exc}): `pip install 'cocotb>=2.0,<3'` "
                       "(it is in the project's dev extra)") from exc
    return iv, vvp


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def run(toplevel: str, parameters: dict, testbench: str, data: dict, meta: dict,
        timeout: float = 900) -> dict:
    """Build ``toplevel`` with ``parameters`` (Icarus), run the cocotb ``testbench`` module
    (``hwmodel.tb.<name>``) on ``data`` (arrays) and ``meta`` (JSON), return its summary."""
    tools()
    from cocotb_tools.runner import get_results, get_runner

    sources = [str(p) for p in synth.module_files(toplevel)]
    params = synth.check_params(parameters)
    with tempfile.TemporaryDirectory(prefix="hwsim_") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "vectors.npz", **data)
        (tmp / "meta.json").write_text(json.dumps(meta))
        runner = get_runner("icarus")
        try:
            runner.build(sources=sources, hdl_toplevel=toplevel, parameters=params, build_dir=tmp / "build",
                         timescale=TIMESCALE, log_file=tmp / "build.log")
        except (Exception, SystemExit) as exc:   # the runner exits on a failed compile
            raise SimError(f"iverilog could not build {toplevel} {params}: {exc}\n{_tail(tmp / 'build.log')}") from None
        env = {"HWMODEL_TB_DIR": str(tmp),
               "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        try:
            results = runner.test(test_module=f"hwmodel.tb.{testbench}", hdl_toplevel=toplevel, build_dir=tmp / "build",
                                  test_dir=tmp, extra_env=env, log_file=tmp / "sim.log",
                                  results_xml=str(tmp / "results.xml"), timescale=TIMESCALE)
            _, failed = get_results(results)
        except (Exception, SystemExit) as exc:
            raise SimError(f"cocotb run of {toplevel} {params} failed: {exc}\n{_tail(tmp / 'sim.log')}") from None
        summary_path = tmp / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        if failed or summary is None:
            raise SimError(f"{testbench} on {toplevel} {params}: {summary}\n{_tail(tmp / 'sim.log')}")
    return summary
