#!/usr/bin/env bash
# Sets up (see setup.sh), then runs the linters, the type checker and the test suite.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
