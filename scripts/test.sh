#!/usr/bin/env bash
# Tests: set up .venv, lint with ruff, build the docs strictly, run pytest. Extra arguments go
# to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy  # src/sac at the strictness pyproject.toml sets (mypy pinned there)
# the documentation site: strict, so a broken link or a failing docstring fails the tests
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
exec .venv/bin/python -m pytest "$@"
