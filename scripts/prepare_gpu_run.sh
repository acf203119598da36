#!/usr/bin/env bash
# Prepare what scripts/gpu_flagship.sh needs on the GPU machine, in ignored folders of the repo:
# .whl (wheels the GPU image lacks) and .devdata (MAESTRO CSV + a tar of the token cache).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: prepare_gpu_run.sh MAESTRO_DIR CACHE_DIR}
cache=${2:?usage: prepare_gpu_run.sh MAESTRO_DIR CACHE_DIR}
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
  -d .whl symusic==0.6.0 miditok==3.1.0 pySmartDL==1.3.4 platformdirs==4.14.8
fp=$(python3 -c "from comagen.music.tokenizer import PianoTokenizer; print(PianoTokenizer().fingerprint())")
mkdir -p .devdata/maestro
cp "$data/maestro-v3.0.0.csv" .devdata/maestro/
tar -czf .devdata/cache.tar.gz -C "$cache" "$fp"
du -sh .whl .devdata
