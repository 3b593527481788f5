"""The emulator-validation counts the README quotes (``mxlab reproduce validation``): mxsim's
numba kernels against the pure-torch referee, value by value (mxsim.validate.run_validation),
once with its defaults (the README's "values compared" count) and once as the report's
section 6 runs it (experiments.analysis.validation, the report's own count). Both runs are
deterministic (fixed seeds), so the file regenerates byte for byte in under a minute."""

from __future__ import annotations

from pathlib import Path

from .provenance import commit

VALIDATION_COLUMNS = ["run", "call", "cases", "values", "mismatches"]
RUNS = (("mxsim", "mxsim.validate.run_validation()"),
        ("report", "experiments.analysis.validation(quick=False)"))


def validation(out: Path, rerun: bool) -> None:
    import pandas as pd

    from mxsim.files import write_json, write_text
    from mxsim.validate import run_validation

    from .analysis import validation as report_validation

    rows = []
    for run, call in RUNS:
        df = run_validation() if run == "mxsim" else report_validation(quick=False)
        rows.append({"run": run, "call": call, "cases": len(df), "values": int(df.n_values.sum()),
                     "mismatches": int(df.n_mismatch.sum())})
    write_text(out / "validation.csv", pd.DataFrame(rows, columns=VALIDATION_COLUMNS).to_csv(index=False))
    write_json(out / "validation.meta.json", {
        "result": "validation", "command": "mxlab reproduce validation", "written_at_commit": commit(),
        "measured_by": "mxsim.validate.run_validation (numba kernels vs mxsim.reference, bit for bit: codes, "
                       "scales, float bit patterns, NaN positions, signed zeros; and every matmul accumulator)",
        "configs": {run: call for run, call in RUNS}})
