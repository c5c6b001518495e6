#!/usr/bin/env bash
# One-step setup on a fresh Debian/Ubuntu machine with Python 3.11.
#   bash scripts/setup.sh          runtime: PortAudio, FluidSynth and a GM SoundFont + the package with the MusicGen and evaluation extras
#   bash scripts/setup.sh --test   also the test tools, a null ALSA output and headless Chromium
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS="libportaudio2 libsndfile1 libfluidsynth3 fluid-soundfont-gm"
[ "${1:-}" = "--test" ] && PKGS="$PKGS chromium"
if ! dpkg -s $PKGS >/dev/null 2>&1; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $PKGS >/dev/null
fi
# torch first and pinned: a CPU machine takes the local CPU build instead of several GB of CUDA wheels.
python3 -m pip install -q "torch==2.13.0"
if [ "${1:-}" = "--test" ]; then
  python3 -m pip install -q -e ".[all,test]"
  # axe-core for the page's accessibility test (npm registry; the test skips that check without it)
  if command -v npm >/dev/null && [ ! -f node_modules/axe-core/axe.min.js ]; then
    npm install --no-save --no-audit --no-fund --silent axe-core@4 || echo "setup: axe-core not installed; its check will be skipped"
  fi
else
  python3 -m pip install -q -e ".[all]"
fi
