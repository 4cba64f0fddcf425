#!/usr/bin/env bash
# One prepared GPU run: a stage of the general reader on a bare GPU machine (the device tool), in one call.
#   python bench/gpu_fonts.py pack .gpu/fonts && tar -cJf .gpu/fonts.tar.xz -C .gpu fonts    (here, once)
#   bash bench/gpu_reader.sh [extra `captcha pretrain` flags]     (there; carry .gpu/fonts.tar.xz)
# A machine without the pretraining faces gets the carried ones (fonts it has of its own are set aside, so the
# synthesis draws from exactly the packed faces). The reader comes back under $OUT in parts under 16 MB
# (cat reader.pt.part-* > reader.pt), with its card and the log.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu-reader}"
minutes="${MINUTES:-7}"
mkdir -p "$out" /tmp/gpu-reader
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'gpu:', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
faces() { python3 -c "from captcha.data.fonts import pretraining_faces; print(len(pretraining_faces()))"; }
packed=0
if [ -f .gpu/fonts.tar.xz ]; then
  tar -xJf .gpu/fonts.tar.xz -C /tmp/gpu-reader
  packed=$(python3 -c "import json; print(len(json.load(open('/tmp/gpu-reader/fonts/manifest.json'))))")
fi
if [ "$(faces)" -lt "$packed" ]; then
  [ -d /usr/share/fonts ] && mv /usr/share/fonts /usr/share/fonts.own
  export PYTHONPATH="$PYTHONPATH:/tmp/gpu-reader/fonts/pypi"
  python3 bench/gpu_fonts.py unpack /tmp/gpu-reader/fonts || exit 1
fi
echo "pretraining faces: $(faces)"
start=$(date +%s)
# the budget's end leaves time to order the channels, check int8 and copy the file back
timeout $(( ${minutes%.*} * 60 + 150 )) python3 -m captcha pretrain --source captchas --device cuda \
  --minutes "$minutes" --workers "$(( $(nproc) - 2 ))" --out /tmp/gpu-reader/reader.pt "$@" 2>&1 | tee "$out/log"
echo "pretrain exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"
if [ -f /tmp/gpu-reader/reader.pt ]; then
  split -b 15M /tmp/gpu-reader/reader.pt "$out/reader.pt.part-"
  cp /tmp/gpu-reader/reader.md "$out/" 2>/dev/null
  sha256sum /tmp/gpu-reader/reader.pt | tee "$out/reader.pt.sha256"
fi
