#!/usr/bin/env bash
# Set up pixi-pack-ci in a venv, pack this demo from its pixi.lock, unpack it, and run it; then build
# the same lockfile into an OCI image (no daemon) and print its digest. Offline.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="${PIXI_PACK_CI_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/pixi-pack-ci" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root"
fi
out="$here/out"
rm -rf "$out"
"$venv/bin/pixi-pack-ci" pack "$here" --use-cache "$out/cache" -o "$out/environment.tar"
"$venv/bin/pixi-pack-ci" inspect "$out/environment.tar"
"$venv/bin/pixi-pack-ci" unpack "$out/environment.tar" -o "$out/deploy"
env -i HOME="$HOME" PATH=/usr/bin:/bin bash -c "source '$out/deploy/activate.sh' && demo-hello"
# An OCI image of the same lockfile, into a layout folder (copy it anywhere with skopeo); prints
# oci-layout:<folder>@sha256:<digest>, the same digest wherever the same zlib compresses it.
"$venv/bin/pixi-pack-ci" image "$here" -p linux-64 --use-cache "$out/cache" --base scratch --output "oci-layout:$out/image"
