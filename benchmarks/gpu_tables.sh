#!/usr/bin/env bash
# The CUDA runs behind the README's GPU tables, as run on the lent H100 (16 CPU cores):
#   bash benchmarks/gpu_tables.sh GGUF OUT
# 1. the full-split WikiText-2 table (issue: experiments), one process per preset;
# 2. the LRC comparison table (W4A4/W4A8 x rotation none/auto, every method), one process
#    per group of tasks, all sharing the GPU. Logs and JSON lines end up in OUT/gpu_runs.tgz.
set -u
G=$1; OUT=$2
export MXLAB_CACHE=${MXLAB_CACHE:-/root/cache} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# the WikiText-2 files: ../shared/data where it exists, else $MXLAB_DATA (a copy carried along)
W=$(mktemp -d)
python3 -c "from lqer.model import load_model; load_model('$G')" > "$W/cache.log" 2>&1  # dequantize once
LIMIT=${LIMIT:-500}
job() { local name=$1; shift; OMP_NUM_THREADS=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout "$LIMIT" "$@" > "$W/$name.log" 2>&1 & }
for c in W4A8 W3A8; do
  job "table_$c" python3 -m experiments.cli table --configs "$c" --full --device cuda --model "$G" \
      --out "$W/table_$c" --no-progress --torch-threads 1
done
B="python3 benchmarks/bench_lrc.py model --model $G --device cuda --threads 1"
# The rows the CPU runs of docs/lrc.md could not finish; one setting per process (each holds
# that setting's float64 covariances, ~2.4 GB on the GPU). A first try with all 16 groups at
# once ran the 80 GB H100 out of memory.
job lrc5_W4A4_01 $B --rotation none --tasks "W4A4:lrc5@0.1"
job lrc5_W4A4_03 $B --rotation none --tasks "W4A4:lrc5@0.3"
job lrc5_W4A8_01 $B --rotation none --tasks "W4A8:lrc5@0.1"
job lrc5_W4A8_03 $B --rotation none --tasks "W4A8:lrc5@0.3"
job lrc1_W4A8_01 $B --rotation none --tasks "W4A8:lrc1@0.1"
job rot_W4A4 $B --rotation auto --tasks "W4A4:lrc1@0.3,lqer@0.1,l2qer@0.1,qera@0.1,lqer@0.3,l2qer@0.3,qera@0.3"
wait
nvidia-smi --query-gpu=name,memory.used --format=csv > "$W/gpu.txt" 2>&1
grep -h '"ppl"' "$W"/lrc*.log "$W"/rot*.log > "$OUT/lrc_rows.jsonl"
cat "$W"/table_*/table.md > "$OUT/tables.md" 2>/dev/null
tar czf "$OUT/gpu_runs.tgz" -C "$W" .
