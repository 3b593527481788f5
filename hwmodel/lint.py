"""Verilator lint of every module in ``hwmodel/rtl`` (``verilator --lint-only -Wall``).

    python -m hwmodel.lint            # every module at the parameters it is used with

Each target is one top module at one parameter set, with the source files it needs
(``synth.MODULE_FILES`` plus ``PIPE_FILES``); any warning is a :class:`LintError` carrying
Verilator's messages. A missing Verilator is a :class:`LintError` with the install command.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from . import synth

RTL_DIR = synth.RTL_DIR

# module -> parameter sets to lint it at ({} = its defaults); every module of MODULE_FILES is linted
EXTRA_PARAMS = {
    "int_mul": [{"A": 4, "B": 8}],
    "adder_tree": [{"W": 11, "N": 16}, {"W": 15, "N": 32}, {"W": 8, "N": 5}],
    "max_tree": [{"W": 8, "N": 32}, {"W": 5, "N": 3}],
    "mx_dot": [{"A": 4, "B": 8, "K": 16, "QSUM": -8}, {"A": 6, "B": 8, "K": 32, "QSUM": -10}],
    "mx_acc_fixed": [{"SW": 20, "W": 12, "F": 2, "SAT": 0}, {"SW": 20, "W": 16, "F": 8, "SAT": 1}],
    "mx_acc_fp32": [{"SW": 16}, {"SW": 26}],
    "int_to_fp16": [{"A": 4}, {"A": 32}],
    "fp16_to_int": [{"A": 4}, {"A": 16}],
    "paper_llm_int": [{"LB": 8}],
    "paper_awq": [{"WB": 2}],
    "mx_dot_pipe": [{"A": 4, "B": 8, "K": 16, "QSUM": -8, "STAGES": 0}, {"STAGES": 1}, {"STAGES": 4}],
    "mx_acc_pipe": [{"FP32": 1, "STAGES": 0}, {"FP32": 0, "W": 12, "F": 2, "SAT": 0, "STAGES": 3}],
    "pipe_delay": [{"STAGES": 0}, {"STAGES": 3}],
    "mx_quant16": [{"LB": 4}],
    "paper_lqer_lowrank": [{"XB": 6}],
    "mx_dot_accs_pipe": [{"DOT_STAGES": 0, "ACC_STAGES": 0}, {"A": 4, "B": 8, "K": 16, "W1": 12, "F1": 2, "DOT_STAGES": 1, "ACC_STAGES": 3}],
}


class LintError(RuntimeError):
    """Verilator is missing, or a module has lint warnings."""


def verilator_path() -> str:
    path = shutil.which("verilator")
    if path is None:
        raise LintError("verilator not found on PATH: install it (Debian/Ubuntu: "
                        "`apt-get install -y --no-install-recommends verilator`; scripts/bootstrap.sh does)")
    return path


def targets() -> list[tuple[str, dict]]:
    out = []
    for module in sorted(synth.MODULE_FILES):
        out.append((module, {}))
        out += [(module, p) for p in EXTRA_PARAMS.get(module, [])]
    return out


def lint(module: str, params: dict | None = None, timeout: float = 120, files: list | None = None) -> None:
    """Lint one module at ``params`` (``files``: other Verilog files instead of the module's own);
    LintError with Verilator's output on any warning."""
    params = synth.check_params(params)
    files = [str(p) for p in (files if files is not None else synth.module_files(module))]
    cmd = [verilator_path(), "--lint-only", "-Wall", "--top-module", module]
    cmd += [f"-G{k}={v}" for k, v in sorted(params.items())] + files
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=RTL_DIR)
    msgs = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "%Warning" in msgs or "%Error" in msgs:
        raise LintError(f"verilator --lint-only -Wall: {module} {params or '(defaults)'}:\n{msgs[-4000:]}")


def lint_all(log=print) -> int:
    errors = []
    for module, params in targets():
        try:
            lint(module, params)
        except LintError as exc:
            errors.append(str(exc))
    if errors:
        raise LintError("\n\n".join(errors))
    if log:
        log(f"verilator --lint-only -Wall: {len(targets())} module/parameter sets clean")
    return len(targets())


def main(argv=None) -> int:
    from mxsim.errors import ArgumentParser

    ArgumentParser(prog="hwmodel lint", description="verilator --lint-only -Wall on every module of "
                   "hwmodel/rtl at the parameter sets it is used with").parse_args(argv)
    try:
        lint_all()
    except LintError as exc:
        print(f"hwmodel lint: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
