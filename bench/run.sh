#!/usr/bin/env bash
# Regenerate docs/benchmarks.md and docs/benchmarks.png: installs nginx and curl (Debian) and
# matplotlib (PyPI) if missing, then runs bench/run.py (pass its flags through, e.g. --quick).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="${PIXI_PACK_CI_VENV:-$root/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]" matplotlib
missing=""
for tool in nginx curl; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  apt-get update -qq && apt-get install -y -qq $missing >/dev/null
fi
exec "$venv/bin/python" bench/run.py "$@"
