#!/usr/bin/env bash
# The LRC(1) rows of docs/results/formats_w4.csv with MXFP4 and NVFP4 weights at W4A4 and W4A8,
# on one CUDA GPU; one process per setting, one after another: four in parallel on one GPU ran
# past 520 s without a row, alone each takes 60-82 s on an H200 (GPTQ's column loop is many tiny
# launches; docs/formats.md). The same evaluation as the table's other rows (bench_lrc
# defaults: 8 windows x 512 tokens, calibration 16 x 512):
#   MXLAB_DATA=... bash benchmarks/gpu_formats_w4.sh OUT
# then, on the checkout, put the rows in (device cuda) and regenerate the CSV and meta:
#   python -c "from experiments.results import add_formats_w4_rows as a; print(a(['OUT/formats_w4_lrc.jsonl'], 'cuda'))"
# and quote them in docs/formats.md (tests/experiments/test_formats_w4.py names each cell).
set -u
OUT=${1:-.}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
LIMIT=${LIMIT:-300}
for s in W4A4-MXFP4 W4A4-NVFP4 W4A8-MXFP4 W4A8-NVFP4; do
  OMP_NUM_THREADS=2 timeout "$LIMIT" python3 benchmarks/bench_lrc.py model --device cuda --threads 2 \
      --rotation none --tasks "$s:lrc1@0.1" > "$OUT/lrc_$s.log" 2>&1
done
grep -h '"ppl"' "$OUT"/lrc_*.log > "$OUT/formats_w4_lrc.jsonl"
cat "$OUT/formats_w4_lrc.jsonl"
