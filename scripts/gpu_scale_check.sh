#!/usr/bin/env bash
# Plan against measurement at scale (issue 26), sized to at most 8 minutes on one H200 (or any CUDA GPU):
# the Llama-3-8B-shaped model with all 32 layers, random bf16 weights made on the GPU, SPRINT's first step on the
# largest calibration (n windows of 2048 tokens, n <= 128) whose predicted first step fits FIT_SECONDS (default
# 240 s, leaving room for the benchmark, the model and the plan's own error).  Prints the plan's terms against the
# measured host peak RSS, GPU peak (torch.cuda.max_memory_allocated) and first-step time, and exits non-zero when a
# peak or the step time is off by more than 15%.
#
#   scripts/gpu_scale_check.sh             # on a machine with a GPU
#   scripts/gpu_scale_check.sh --dry-run   # on the CPU with a tiny shape: the mechanics only (reports, exits 0)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 SPRINT_MLFLOW=0
OUT=${OUT:-/tmp}
if [[ "${1:-}" == "--dry-run" ]]; then
    exec timeout 600 "$PY" scripts/plan_check.py --shape tiny --layers 4 --n 4 --seq-len 64 --dtype float32 \
        --device cpu --beta 2 --steps 1 --tolerance 0.15 --report-only --output "$OUT/gpu_scale_check_dry.json"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
exec timeout 470 "$PY" scripts/plan_check.py --shape llama-3-8b --layers 32 --seq-len 2048 --dtype bfloat16 \
    --device cuda --fit-seconds "${FIT_SECONDS:-240}" --steps 1 --tolerance 0.15 --output "$OUT/gpu_scale_check.json"
