# Sourced by the tools/*.sh scripts. Sets REPO (the repository root) and
# PYTHON: $PYTHON when set, else the repository's .venv (made by demo.sh or
# run_tests.sh), else python3 from PATH.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
