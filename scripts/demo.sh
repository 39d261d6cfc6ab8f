#!/usr/bin/env bash
# Main job: set up .venv, then segment a real sample image and write labels + an overlay.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec .venv/bin/sac demo "$@"
