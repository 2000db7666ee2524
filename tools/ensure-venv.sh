#!/usr/bin/env bash
# Create or reuse .venv with the course installed; clear errors for missing prerequisites.
# Used by `make demo` and `make test`, so a fresh clone needs nothing but Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP=$VENV/.installed

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3 python; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

# configurable-http-proxy (npm), the proxy of the JupyterHub that tests/test_hub.py starts: pinned in
# tools/hub/package-lock.json, installed with its own stamp so an up-to-date .venv does not skip it.
# Without npm the hub test skips (and fails under CI) with the reason.
HUB_TOOLS=tools/hub
HUB_STAMP=$HUB_TOOLS/node_modules/.installed
if command -v npm >/dev/null 2>&1; then
  if [ ! -f "$HUB_STAMP" ] || [ "$HUB_TOOLS/package-lock.json" -nt "$HUB_STAMP" ]; then
    echo "Installing configurable-http-proxy into $HUB_TOOLS/node_modules (npm ci) ..."
    if npm ci --prefix "$HUB_TOOLS" --no-audit --no-fund --loglevel=error >/dev/null; then
      touch "$HUB_STAMP"
    else
      echo "warning: npm ci in $HUB_TOOLS failed: the JupyterHub test (tests/test_hub.py) will not run." >&2
    fi
  fi
fi

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  exit 0  # up to date
fi

if [ ! -x "$VENV/bin/python" ]; then
  PY=$(find_python) || {
    echo "error: this course needs Python 3.11 (TensorFlow 2.21 is pinned for it)." >&2
    echo "       Install it (Debian/Ubuntu: apt-get install python3.11 python3.11-venv; macOS: brew install python@3.11)" >&2
    echo "       or point PYTHON at it: make PYTHON=/path/to/python3.11 test" >&2
    exit 1
  }
  free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
  if [ "${free_kb:-0}" -lt 3000000 ]; then
    echo "error: about 3 GB of free disk is needed for the environment (TensorFlow); $((free_kb / 1024)) MB free here." >&2
    exit 1
  fi
  "$PY" -m venv "$VENV" || {
    echo "error: could not create a virtual environment with $PY (Debian/Ubuntu: apt-get install python3.11-venv)." >&2
    exit 1
  }
fi

echo "Installing the course into $VENV (first time: a few minutes) ..."
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
touch "$STAMP"
