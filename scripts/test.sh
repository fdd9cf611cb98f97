#!/usr/bin/env bash
# Run the whole test suite, slow tests included (what CI runs). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` for the fast subset.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then set -- -m "slow or not slow"; fi
.venv/bin/python -m pytest -q "$@"
