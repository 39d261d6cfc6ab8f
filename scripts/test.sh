#!/usr/bin/env bash
# Tests: set up .venv, lint with ruff, run pytest. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
