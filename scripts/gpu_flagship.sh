#!/usr/bin/env bash
# Run on the lent GPU machine (one H100/H200): measure training speed, then train the flagship
# from a carried token cache and bring the bundle back through $OUT (weights split in <16 MiB parts).
# Carried: .whl (symusic, miditok wheels for the GPU image's Python) and .devdata (MAESTRO CSV +
# token cache), both made by scripts/prepare_gpu_run.sh.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
fp=$(python3 -c "from comagen.music.tokenizer import PianoTokenizer; print(PianoTokenizer().fingerprint())")
mkdir -p /tmp/cache && tar -xzf .devdata/cache.tar.gz -C /tmp/cache
[ -d /tmp/cache/$fp ] || mv /tmp/cache/* /tmp/cache/$fp
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/bench_gpu.txt"
timeout 150 python3 bench/train_gpu.py --json 2>&1 | tee -a "$OUT/bench_gpu.txt" || echo "bench failed or timed out" | tee -a "$OUT/bench_gpu.txt"
python3 training/train.py --config training/configs/flagship.json --data .devdata/maestro --out /tmp/flagship \
  cache='"/tmp/cache"' progress=false --json 2>&1 | tee "$OUT/train.log"
best=/tmp/flagship/best
tar -cf "$OUT/bundle_meta.tar" -C "$best" config.json tokenizer.json composers.json MODEL_CARD.md \
  -C /tmp/flagship tensorboard
split -b 15M -d "$best/model.safetensors" "$OUT/weights.part"
ls -la "$OUT"
