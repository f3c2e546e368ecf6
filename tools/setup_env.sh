#!/usr/bin/env bash
# Create ./.venv (once) and install the given requirement files into it, only
# when they changed since the last install. Prints the venv's python path.
# Usage: tools/setup_env.sh requirements.txt [more requirement files...]
# PYTHON selects the interpreter that creates the venv (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  # --system-site-packages: reuse a matching torch already installed on the machine
  "${PYTHON:-python3}" -m venv --system-site-packages "$venv" >&2
fi
stamp="$venv/.installed-$(cat "$@" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing $* into $venv ..." >&2
  "$venv/bin/python" -m pip install -q $(printf -- '-r %s ' "$@") >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
