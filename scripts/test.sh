#!/usr/bin/env bash
# Set up a venv with pixi-pack-ci and its test tools, then lint, type-check and run the tests.
# Offline-safe: everything comes from PyPI. Extra pytest arguments are passed through.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="${PIXI_PACK_CI_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
# sigstore-js, the provenance tests' independent verifier (Node >= 20.17).
if ! command -v npm >/dev/null 2>&1; then
  echo "== installing Node.js and npm (Debian)"
  (apt-get update -qq && apt-get install -y -qq nodejs npm) >/dev/null
fi
# Debian tools: shellcheck (actionlint checks the workflows' scripts with it), rsync (gitlab-ci-local).
missing=""
for tool in shellcheck rsync; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "== installing$missing (Debian)"
  (apt-get update -qq && apt-get install -y -qq $missing) >/dev/null 2>&1 || echo "(could not install$missing)"
fi
if [ ! -d tests/js/node_modules/@sigstore/verify ] || [ ! -x tests/js/node_modules/.bin/gitlab-ci-local ]; then
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
fi
echo "== ruff"
"$venv/bin/ruff" check core plugins hatch_plugin tests examples bench
echo "== mypy --strict core plugins hatch_plugin"
"$venv/bin/mypy" --strict core/pixi_pack_ci/core
"$venv/bin/mypy" --strict plugins/pixi_pack_ci/plugins
"$venv/bin/mypy" --strict hatch_plugin/pixi_pack_ci/hatch_plugin
echo "== pytest"
PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -q "$@"
