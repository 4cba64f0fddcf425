#!/usr/bin/env bash
# One prepared GPU check (issue 8): synthetic data -> train on CUDA (bf16, channels-last) -> eval ->
# CIFAR-10 warm-up at a GPU-sized setting. Meant to finish in under 5 minutes on one modern GPU.
#   bash bench/gpu_check.sh            (writes under $OUT, or runs/gpu-check)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu-check}"
mkdir -p "$out"
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("gpu:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
python -m pip install -q -e . --no-deps 2>/dev/null || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
python -m captcha data synth --out "$out/data"
python -m captcha train --data "$out/data" --out "$out/model.pt" --device cuda --batch-size 256 | tee "$out/train.log"
python -m captcha eval --val --checkpoint "$out/model.pt" --data "$out/data" --json > "$out/eval.json"
cifar=../shared/datasets/cifar10/cifar10-jpg.tar.gz
if [ -f "$cifar" ]; then
  python -m captcha bench cifar10 --data "$cifar" --subset 0 --epochs 2 --size 64 --batch-size 256 \
    --out "$out/cifar10" | tee "$out/cifar10.log"
fi
echo "gpu check done in $(( $(date +%s) - start )) s; results in $out"
