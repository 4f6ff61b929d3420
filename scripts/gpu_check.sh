#!/usr/bin/env bash
# CUDA paths on a tiny model, in a few minutes: profile (CUDA event timing), prune on cuda in fp32 and bf16, save,
# load with device_map="auto", generate, evaluate -- each compared with the same step on the CPU.
# Exit 0: all agree within dtype tolerance; 1: a difference (details printed); 3: no CUDA device.
# GPU_CHECK_DEVICE=cpu runs the same comparisons CPU against CPU (a dry run of this script; profile skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export SPRINT_MLFLOW=0 HF_HUB_OFFLINE=1
if [ "${GPU_CHECK_DEVICE:-cuda}" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False): nothing checked" >&2
    exit 3
fi
exec "$PY" scripts/gpu_check.py
