#!/usr/bin/env bash
# issue 14's CUDA checks in one command (one device call, ~5-8 min incl. Triton compiles):
#   bash benchmarks/gpu_mxsim.sh OUT
# the Triton path vs the referee and numba bit for bit (tests/mxsim/test_gpu.py), then the
# CUDA rows of bench_quantize (clone() bandwidth, torchao if installed) and bench_matmul
# (torch._int_mm). Logs in OUT.
set -u
OUT=${1:-.}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, numba; print('torch', torch.__version__, 'triton', triton.__version__, 'numba', numba.__version__)" | tee -a "$OUT/gpu.txt"
timeout 420 python3 -m pytest -q -p no:cacheprovider tests/mxsim/test_gpu.py tests/mxsim/test_scale_rules.py tests/mxsim/test_element_tables.py 2>&1 | tail -40 | tee "$OUT/test_gpu.log"
timeout 120 python3 benchmarks/bench_quantize.py --device cuda 2>&1 | tee "$OUT/bench_quantize_cuda.log"
timeout 240 python3 benchmarks/bench_matmul.py --device cuda 2>&1 | tee "$OUT/bench_matmul_cuda.log"
