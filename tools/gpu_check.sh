#!/usr/bin/env bash
# The GPU check from a fresh clone: make .venv as the README does (tools/setup_env.sh;
# on a GPU machine pip's default torch==2.13.0 wheel is the CUDA build), then run
# tools/gpu_check.py with the given arguments (e.g. --cpu-dry-run).
# Writes results/gpu_check.json and results/gpu_check.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(tools/setup_env.sh requirements.txt requirements-detector.txt)
exec "$python" tools/gpu_check.py "$@"
