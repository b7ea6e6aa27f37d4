#!/usr/bin/env bash
# Set up a venv with pixi-pack-ci and its test tools, then lint, type-check and run the tests.
# Offline-safe: everything comes from PyPI. Extra pytest arguments are passed through.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
# Build backends for the tests that build PyPI sources: served during the tests by a local index on
# 127.0.0.1, so no build reaches the internet. Downloaded once per machine.
wheelhouse=.cache/wheelhouse
if [ ! -f "$wheelhouse/.complete" ]; then
  "$venv/bin/python" -m pip download -q --disable-pip-version-check --only-binary :all: -d "$wheelhouse" \
    hatchling setuptools flit-core
  touch "$wheelhouse/.complete"
fi
# Node.js for sigstore-js (the provenance tests' independent verifier, Node >= 20.17) and
# gitlab-ci-local; shellcheck (actionlint checks the workflows' scripts with it); rsync (gitlab-ci-local).
apt_install_missing npm=nodejs,npm
apt_install_missing shellcheck rsync || echo "(could not install shellcheck or rsync)"
# The image tests' real components: a registry (distribution), skopeo, umoci and runc, a static
# busybox for the base image they build, and podman (podman load and run of an archive; ~12 MB,
# ~15 s once). Without recommends: podman's (buildah, fuse-overlayfs, slirp4netns, ...) and runc's
# (criu) are not needed. Without root or apt those tests skip, naming the tool.
apt_install_missing --no-install-recommends docker-registry skopeo umoci runc busybox=busybox-static podman ||
  { echo "scripts/test.sh: error: cannot install docker-registry skopeo umoci runc busybox-static podman (Debian)" >&2; exit 1; }
if [ ! -d tests/js/node_modules/@sigstore/verify ] || [ ! -x tests/js/node_modules/.bin/gitlab-ci-local ]; then
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
fi
bash scripts/tools.sh  # cosign and sigstore-go from Debian trixie, the verifier tests' 5th and 6th verifiers
echo "== ruff"
"$venv/bin/ruff" check core plugins hatch_plugin tests examples bench
"$venv/bin/ruff" format --check core plugins hatch_plugin tests examples bench
# Once per target system: typeshed declares POSIX-only functions (os.pwrite, os.fchmod, ...) only
# where they exist, and mypy follows sys.platform checks, so the Windows and macOS code paths are
# checked on any machine. A cache per platform keeps the reruns fast.
roots=(core/pixi_pack_ci/core plugins/pixi_pack_ci/plugins hatch_plugin/pixi_pack_ci/hatch_plugin)
for platform in linux win32 darwin; do
  echo "== mypy --strict --platform $platform core plugins hatch_plugin"
  "$venv/bin/mypy" --strict --platform "$platform" --cache-dir ".mypy_cache/$platform" "${roots[@]}"
done
echo "== lint-imports (the core never imports a plugin; plugins use only pixi_pack_ci.core; no cycles)"
"$venv/bin/lint-imports"
# The action and the GitLab template install only requirements/action.txt: it must still be what
# pyproject.toml's dependencies resolve to, with wheels for every runner system and Python.
echo "== action lock (python scripts/action_lock.py --check)"
"$venv/bin/python" scripts/action_lock.py --check
echo "== pytest"
# One worker per CPU: most of the time is spent waiting on subprocesses and loopback servers.
PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -n auto "$@"
