#!/usr/bin/env bash
# Issue 15's full accumulator table on the whole WikiText-2 test split, on one GPU, timed:
#   bash benchmarks/gpu_datapath_table.sh GGUF OUT
# One process per (setting, block) column, all four sharing the GPU, each with the full
# accumulator list (its float row first: the logit-difference reference), then joined by
# --combine into OUT/all. Prints the wall time from the first process's start to the last's end
# (the target: <= 10 minutes). LIMIT (default 540 s) stops a process that runs past it; the rows
# it finished stay (written after every row).
set -u
G=$1; OUT=$2
export MXLAB_CACHE=${MXLAB_CACHE:-/root/cache} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$OUT/runs"
python3 -c "from lqer.model import load_model; load_model('$G')" > "$OUT/runs/cache.log" 2>&1  # dequantize once
T0=$(date +%s)
for s in W4A8-L2QER W8A8-MXINT8; do
  for b in 16 32; do
    OMP_NUM_THREADS=${THREADS:-4} timeout "${LIMIT:-540}" python3 -m experiments.datapath_table --model "$G" \
        --windows 0 --seq-len 1024 --calib 8 --batch 16 --device cuda --settings "$s" --blocks "$b" --full \
        --out "$OUT/runs/dt_${s}_$b" > "$OUT/runs/dt_${s}_$b.log" 2>&1 &
  done
done
wait
echo "four processes done in $(( $(date +%s) - T0 )) s (wall, one GPU)"
for f in "$OUT"/runs/dt_*.log; do echo "$f: $(grep -c '"status"' "$f") rows"; done
python3 -m experiments.datapath_table --combine "$OUT"/runs/dt_*/ --out "$OUT/all"
python3 -m experiments.datapath_table --tables "$OUT/all"
