#!/usr/bin/env bash
# flagship v2 in one call on a lent GPU (issue 13): smoke-check speed, train with the compiled path
# for max_minutes, evaluate on test (10 x 4,096 tokens), and bring the bundle back through $OUT
# (bf16 weights split in <16 MiB parts; join with `cat weights.part* > model.safetensors`).
#   on the GPU machine:  bash scripts/gpu_flagship_v2.sh            (after scripts/prepare_gpu_run.sh here)
#   here, at tiny size:  OUT=/tmp/v2 bash scripts/gpu_flagship_v2.sh tiny
# Sizing from the CPU scaling plan (training/scaling.py, docs/results.md): 11.0 M parameters (as
# flagship, 13 tokens a parameter at 339k tokens/s for 7 minutes; the fit favours tokens over size
# in this range), 2k context, windows 64/256/1024, one residual stream (four were launch-bound).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-gpu}
: "${OUT:?set OUT to a folder for the results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ "$mode" = tiny ]; then
  config=tests/configs/tiny.json
  data=${COMAGEN_MAESTRO_DIR:-../shared/data/maestro}
  cache=/tmp/v2cache
  train_extra=(device='"cpu"' max_steps=4 max_minutes=null eval_every=2 compile=true loader_workers=1
               save_dtype='"bfloat16"')
  bench=(echo "tiny mode: no GPU bench")
  eval_extra=(--max-files 2 --max-tokens 256)
else
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
  fp=$(python3 -c "from comagen.music.tokenizer import PianoTokenizer; print(PianoTokenizer().fingerprint())")
  mkdir -p /tmp/cache && tar -xzf .devdata/cache.tar.gz -C /tmp/cache
  [ -d "/tmp/cache/$fp" ] || mv /tmp/cache/* "/tmp/cache/$fp"
  config=training/configs/flagship_v2.json
  data=.devdata/maestro
  cache=/tmp/cache
  train_extra=()
  bench=(timeout 120 python3 bench/train_gpu.py --steps 5 --compile --json)
  eval_extra=(--max-files 10 --max-tokens 4096)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/bench_gpu.txt"
fi
"${bench[@]}" 2>&1 | tail -20 | tee -a "$OUT/bench_gpu.txt" || echo "bench failed or timed out" | tee -a "$OUT/bench_gpu.txt"
python3 training/train.py --config "$config" --data "$data" --out /tmp/flagship_v2 --fresh --json \
  cache="\"$cache\"" progress=false "${train_extra[@]}" 2>&1 | tee "$OUT/train.log"
best=/tmp/flagship_v2/best
python3 -m comagen evaluate --checkpoint "$best" --data "$data" --split test --cache "$cache" "${eval_extra[@]}" \
  --json 2>&1 | tail -1 | tee "$OUT/test_eval.json"
tar -cf "$OUT/bundle_meta.tar" -C "$best" config.json tokenizer.json composers.json MODEL_CARD.md \
  -C /tmp/flagship_v2 tensorboard
split -b 15M -d "$best/model.safetensors" "$OUT/weights.part"
ls -la "$OUT"
