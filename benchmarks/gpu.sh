#!/usr/bin/env bash
# The benchmark suite on a CUDA GPU: the same comparisons, floor, scaling and speed-ups with
# --device cuda. Writes benchmarks/results-cuda.json (results-full-cuda.json with --full) and
# regenerates BENCHMARKS.md with a section for it. Extra arguments pass through, e.g.
#   benchmarks/gpu.sh --full
#   benchmarks/gpu.sh --sections floor scaling
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: benchmarks/gpu.sh needs a GPU")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PYTHON" benchmarks/run.py --device cuda "$@"
