#!/usr/bin/env bash
# Install everything (idempotent) and run the whole CPU test suite: lint, then pytest.
#   bash tools/run_tests.sh [extra pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/install.sh"
cd "$ROOT"
echo "[tests] ruff check"
.venv/bin/ruff check .
echo "[tests] pytest"
# pytest exits 5 when it collects no test; with `set -e` that fails the run, as it should.
.venv/bin/python -m pytest tests "$@"
