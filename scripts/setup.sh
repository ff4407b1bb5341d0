#!/usr/bin/env bash
# Set up a fresh machine: PyTorch (CPU build pinned; a CUDA machine keeps its own torch),
# Triton for the interpreter tests, the runtime and test dependencies, the benchmarks' peers,
# then build ebmfast's extension in place. Safe to run again: pip skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! $PY -c "import torch" 2>/dev/null; then
  $PY -m pip install --quiet "torch==2.13.0"
fi
if ! $PY -c "import triton" 2>/dev/null; then
  $PY -m pip install --quiet "triton==3.8.0"
fi
$PY -m pip install --quiet numpy scipy torchdiffeq POT scikit-learn safetensors tqdm matplotlib pyyaml \
  pytest pytest-benchmark ninja "setuptools>=64" wheel
# the peers that the benchmarks compare against: pure Python, needing only torch (torchebm >= 2.10);
# --no-deps so that they can never replace the torch installed above
$PY -m pip install --quiet --no-deps "torchebm==0.8.9" "ebmkit==0.16.0"
MAX_JOBS=${MAX_JOBS:-2} $PY -m pip install --quiet --no-build-isolation --no-deps -e .
$PY -m ebmfast.info | sed -n '1p;/extension/p;/kernels built/p'
