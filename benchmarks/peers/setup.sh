#!/usr/bin/env bash
# Virtual environments for the peer tools, kept apart from SAC's own (never dependencies of SAC,
# never installed by the README's two commands). Usage:
#   bash benchmarks/peers/setup.sh [ENV_ROOT]     (default: ../peers next to the checkout)
# Creates ENV_ROOT/stardist (StarDist 0.9.2 on tensorflow-cpu 2.21) and ENV_ROOT/cellpose
# (cellpose 3.1.x on the CPU build of torch; cellpose 4 needs torchvision, which cannot be
# installed next to the CPU torch here). Re-running it keeps environments that already work.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${1:-$here/../../../peers}"
mkdir -p "$root"
root="$(cd "$root" && pwd)"
python="${PYTHON:-python3}"

make_env() {  # name, check, packages...
  local name="$1" check="$2"
  shift 2
  local env="$root/$name"
  if [ -x "$env/bin/python" ] && "$env/bin/python" -c "$check" 2>/dev/null; then
    echo "$name: $env is ready"
    return
  fi
  "$python" -m venv "$env"
  "$env/bin/python" -m pip install --quiet --upgrade pip
  "$env/bin/python" -m pip install --quiet "$@"
  "$env/bin/python" -c "$check"
  echo "$name: installed into $env"
}

make_env stardist "import stardist, tensorflow, tifffile" \
  "tensorflow-cpu==2.21.*" "stardist==0.9.2" "tifffile" "imagecodecs"
# the CPU torch first, so that cellpose does not pull in a CUDA build
make_env cellpose "import cellpose, torch, tifffile; assert cellpose.version.startswith('3.')" \
  "torch==2.13.0" "cellpose>=3.1,<4" "tifffile" "imagecodecs"
