#!/usr/bin/env bash
# Run the whole case matrix on a CUDA machine whose python3 already holds torch.
# Needs only torch, NumPy and PyYAML there: the plan (build/plan.json, made on the
# host by `python -m harness plan`) carries every input, so no case file is read.
#   usage: OUT=dir scripts/cuda_matrix.sh      -> dir/cuda.jsonl, dir/cpu.jsonl, dir/env.txt
set -uo pipefail
OUT=${OUT:-build/cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0], 'gpu', torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/env.txt"
export PYTHONUNBUFFERED=1
"$PY" -m harness run --plan build/plan.json --device cuda --out "$OUT/{device}.jsonl" --timeout 120
"$PY" -m harness run --plan build/plan.json --device cpu --out "$OUT/{device}.jsonl" --timeout 120 --quiet
