#!/usr/bin/env bash
# Install musicmed-stream as a systemd service (run as root from the repository root):
#   sudo bash daemon/install.sh            install or upgrade, enable and start
# Steps and options: docs/daemon.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=/opt/musicmed-stream
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }
apt-get install -y -qq libportaudio2 libsndfile1 python3-venv >/dev/null
mkdir -p "$PREFIX" /etc/musicmed-stream
python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q "torch==2.13.0"
"$PREFIX/venv/bin/pip" install -q ".[all]"
cp -r docs "$PREFIX/"
[ -f /etc/musicmed-stream/config.toml ] || cp config.toml /etc/musicmed-stream/config.toml
if [ ! -f /etc/musicmed-stream/environment ]; then
  install -m 0600 /dev/null /etc/musicmed-stream/environment
  echo "MUSICMED_CONTROL_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')" \
    >/etc/musicmed-stream/environment
fi
install -m 0644 daemon/musicmed-stream.service /etc/systemd/system/musicmed-stream.service
systemctl daemon-reload
systemctl enable --now musicmed-stream.service
systemctl --no-pager status musicmed-stream.service | head -n 5
