#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install the project with the extras given as $1
# (default "test"). Reinstalls only when setup.py or the extras change, so a second
# run costs a second. Needs only PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3 python; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 14) else 1)'; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 to 3.13 is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  python=$(find_python)
  echo "Creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$( (cat setup.py; echo "$extras") | sha1sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing yuqing[$extras] into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
