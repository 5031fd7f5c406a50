#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the linters and the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/ibnn -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
echo "[test] ruff check and format"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[test] pytest"
exec .venv/bin/python -m pytest "$@"
