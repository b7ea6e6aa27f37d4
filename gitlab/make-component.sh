#!/usr/bin/env bash
# Write the CI/CD component layout of the GitLab mirror into DIR: templates/pixi-pack.yml + README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: make-component.sh DIR}
mkdir -p "$out/templates"
cp "$here/pixi-pack.yml" "$out/templates/pixi-pack.yml"
cp "$here/README.md" "$out/README.md"
echo "component layout written to $out"
