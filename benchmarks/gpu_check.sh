#!/usr/bin/env bash
# One prepared GPU check (≤ 8 minutes on one CUDA device), for the day a GPU is lent. NOT YET RUN: no GPU was
# available when it was written (docs/performance.md). Run from the repository root:
#     bash benchmarks/gpu_check.sh [OUT_DIR]
# It runs the CUDA variants of the sparse-path and rational-kernel tests (they parametrise over "cuda" when a
# device is present), then the train-step benchmark on cuda in float32 and with bf16 autocast, and writes every
# output under OUT_DIR (default benchmarks/results/gpu).
set -euo pipefail
out="${1:-benchmarks/results/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  | tee "$out/device.txt"
timeout 180 python3 -m pytest -q tests/rsae/test_sparse.py tests/rsae/test_rational.py tests/rsae/test_relu_l1.py -k cuda 2>&1 | tee "$out/tests.txt"
timeout 120 python3 benchmarks/bench_train_step.py --device cuda --repeats 10 --warmup 3 --dense \
  --json "$out/train_step_cuda.json" 2>&1 | tee "$out/train_step_cuda.txt"
timeout 90 python3 benchmarks/bench_train_step.py --device cuda --repeats 10 --warmup 3 --autocast-bf16 \
  --json "$out/train_step_cuda_bf16.json" 2>&1 | tee "$out/train_step_cuda_bf16.txt"
timeout 90 python3 benchmarks/bench_train_step.py --device cuda --d-sae 16384 --repeats 5 --warmup 2 \
  --only relu topk batchtopk rational/topk-gate --json "$out/train_step_cuda_16k.json" 2>&1 \
  | tee "$out/train_step_cuda_16k.txt"
