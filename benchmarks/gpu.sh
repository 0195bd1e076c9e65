#!/usr/bin/env bash
# GPU speed of every training and inference path (benchmarks/bench_gpu.py), within 8 minutes on one GPU.
# Usage: bash benchmarks/gpu.sh [extra bench_gpu.py options]; exits 0 with a message where there is no CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu.sh: no CUDA device (or no CUDA build of torch) here; nothing to measure."
  echo "        The same measurements run on a CPU in miniature: $PYTHON benchmarks/bench_gpu.py --device cpu --tiny"
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 480 "$PYTHON" benchmarks/bench_gpu.py --device cuda --budget 420 "$@"
