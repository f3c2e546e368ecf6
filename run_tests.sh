#!/usr/bin/env bash
# Set up ./.venv (first run only) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
python=$(bash tools/setup_env.sh requirements.txt requirements-dev.txt)
exec "$python" -m pytest -q tests "$@"
