#!/usr/bin/env bash
# Set up comagen on a fresh machine: system libraries (FluidSynth, a GM soundfont, and with --dev
# Chromium for the browser tests) where apt is available, then the pinned Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

system_pkgs=(libfluidsynth3 fluid-soundfont-gm)
[ $dev = 1 ] && system_pkgs+=(chromium)
missing=()
for p in "${system_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: please install these system packages yourself: ${missing[*]}" >&2
    echo "  (FluidSynth library for audio, e.g. 'brew install fluid-synth' on macOS; audio is optional)" >&2
  fi
fi

req=requirements.txt
[ $dev = 1 ] && req=requirements-dev.txt
python3 -m pip install -q -r "$req"
if [ $dev = 1 ]; then
  # The transcriber behind the audio codec's note F1 (comagen/training/transcribe.py); its ONNX model is in the
  # wheel. --no-deps: it declares TensorFlow, which its ONNX path never imports (its real needs are pinned
  # in requirements-dev.txt).
  python3 -m pip install -q --no-deps basic-pitch==0.4.0
fi

# The page's live-sound library (studio/browser/package-lock.json), served by the app itself; with --dev
# also the synth the bench compares it with. Without npm the app runs without live sound.
if command -v npm >/dev/null 2>&1; then
  omit=(--omit=dev)
  [ $dev = 1 ] && omit=()
  (cd studio/browser && npm ci --no-audit --no-fund --loglevel=error "${omit[@]}")
else
  echo "warning: npm not found: the app runs without live sound (install Node.js and npm, then rerun this script)" >&2
fi

# The engine's compiled per-token work (comagen/native), built now so the first take does not wait for it.
# Without a C compiler the engine runs its numpy path, a little slower.
python3 -c "from comagen import native; print(native.WHY_NOT or 'compiled engine: ' + str(native.build().name))"
