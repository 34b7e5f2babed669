#!/usr/bin/env bash
# Every GPU figure of the many-seeds-per-process work, in a few minutes on one GPU:
#   seed-updates/s of every method for K = 1, 4, 10 seeds in one process at the mini, paper and
#   CORL sizes (`harness.bench`), then the wall time of a short AntMaze-size Cal-QL job with
#   K = 10 against K = 1 (target: within 1.5x). Run from the repository root:
#     bash scripts/gpu_check.sh [SECONDS_PER_FIGURE=2] [JOB_UPDATES=1000]
set -euo pipefail
secs=${1:-2}; updates=${2:-1000}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv,noheader || true
python -m harness.bench --devices cuda --seconds "$secs" --sets mini,paper,corl --seeds 1,4,10 \
    --job-updates "$updates"
