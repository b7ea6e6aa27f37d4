#!/usr/bin/env bash
# Regenerate docs/benchmarks.md and docs/benchmarks.png: installs nginx and curl (Debian) and
# matplotlib (PyPI) if missing, then runs bench/run.py (pass its flags through, e.g. --quick).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/../scripts/common.sh"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]" matplotlib
apt_install_missing nginx curl
exec "$venv/bin/python" bench/run.py "$@"
