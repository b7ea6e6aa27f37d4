#!/usr/bin/env bash
# Programs the tests run, from Debian trixie's packages: cosign 2.5.0 and sigstore-go 0.7.1
# (sigstore-go-verification), the provenance tests' verifiers, and docker-registry 2.8.3 (the
# distribution registry), the OCI channel tests' registry. No registry ships them as wheels or npm
# packages, and trixie's builds need only libc >= 2.34, so they run on Debian 12 too.
#
# The system's apt sources, lists and package cache are never touched: a private apt state folder
# lists trixie, `apt-get download` fetches the two .debs (checked by apt against trixie's signed
# InRelease), and `dpkg-deb -x` unpacks them into .tools/debian of this checkout (git-ignored).
# The .debs stay in ~/.cache/pixi-pack-ci/debian (or $PIXI_PACK_CI_TOOLS_CACHE) with their sha256,
# so later runs, and fresh clones on the same machine, need no network.
#
# Usage: bash scripts/tools.sh   (prints where the programs are; on failure one line, exit 1)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools/debian"
cache="${PIXI_PACK_CI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pixi-pack-ci/debian}"
mirror="${PIXI_PACK_CI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
# package=upstream version: the tests know these versions' behaviour (cosign <= 2.5.0 rejects a
# transparency-log entry at index 0, cosign < 3.0.4 needs --trusted-root even for keys).
wanted=(cosign=2.5.0 sigstore-go=0.7.1 docker-registry=2.8.3+ds1)

fail() {
  echo "scripts/tools.sh: error: $*" >&2
  exit 1
}

if [ "$(uname -s)" != Linux ]; then
  # Debian's binaries are Linux programs; tests/test_verifiers.py runs on Linux only.
  echo "== cosign, sigstore-go: Debian packages run on Linux only, not on $(uname -s)"
  exit 0
fi

stamp() { printf '%s\n' "${wanted[@]}"; }
if [ -x "$tools/usr/bin/cosign" ] && [ -x "$tools/usr/bin/sigstore-go-verification" ] && [ -x "$tools/usr/bin/docker-registry" ] &&
  [ "$(cat "$tools/VERSIONS" 2>/dev/null)" = "$(stamp)" ]; then
  echo "== cosign, sigstore-go, docker-registry: $tools/usr/bin"
  exit 0
fi

if ! command -v dpkg-deb >/dev/null || ! command -v apt-get >/dev/null; then
  fail "cosign and sigstore-go come from Debian trixie packages: this system has no apt-get and dpkg-deb"
fi
arch=$(dpkg --print-architecture)
mkdir -p "$cache" || fail "cannot create the download cache $cache"

# cached_deb PACKAGE VERSION: the cached .deb of that upstream version whose sha256 still matches.
cached_deb() {
  local deb
  for deb in "$cache/$1_$2"-*"_$arch.deb"; do
    if [ ! -f "$deb" ] || [ ! -f "$deb.sha256" ]; then continue; fi
    (cd "$cache" && sha256sum --status -c "$(basename "$deb").sha256") && { echo "$deb"; return 0; }
  done
  return 1
}

missing=()
for spec in "${wanted[@]}"; do
  cached_deb "${spec%%=*}" "${spec#*=}" >/dev/null || missing+=("$spec")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ ! -r "$keyring" ]; then
    # Ubuntu (GitHub's runners) packages Debian's keyring too; root or password-less sudo installs it.
    if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo -n); fi
    { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq debian-archive-keyring; } >/dev/null 2>&1 || true
  fi
  [ -r "$keyring" ] || fail "cannot check Debian trixie's signature: $keyring is missing (apt-get install debian-archive-keyring)"
  state="$cache/apt"
  mkdir -p "$state/sources.list.d" "$state/lists/partial" "$state/archives/partial"
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$mirror" "$keyring" \
    >"$state/sources.list.d/trixie.sources"
  # Only this folder's lists and archives: the system's sources, lists and cache stay as they are.
  # The sandbox user is root because _apt cannot write into a folder under a user's home.
  apt=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$state/sources.list.d"
    -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state" -o "Dir::Cache::Archives=$state/archives"
    -o "APT::Sandbox::User=$(id -un)")
  log="$state/apt.log"
  echo "== downloading ${missing[*]} (Debian trixie, $mirror)"
  # --error-on=any: an unreachable mirror is otherwise only a warning, and the lists stay empty.
  apt-get "${apt[@]}" --error-on=any update >"$log" 2>&1 ||
    fail "cannot read Debian trixie's package lists from $mirror: $(grep -E '^(E|W):' "$log" | head -n1 || tail -n1 "$log")"
  for spec in "${missing[@]}"; do
    package=${spec%%=*} upstream=${spec#*=}
    version=$(apt-cache "${apt[@]}" show --no-all-versions "$package" 2>/dev/null | sed -n 's/^Version: //p' | head -n1 || true)
    [ -n "$version" ] || fail "Debian trixie has no package $package for $arch"
    [[ "$version" == "$upstream"-* ]] ||
      fail "Debian trixie now has $package $version, the tests expect $upstream: check them against it and update scripts/tools.sh"
    sha=$(apt-cache "${apt[@]}" show --no-all-versions "$package" | sed -n 's/^SHA256: //p' | head -n1 || true)
    (cd "$state/archives/partial" && apt-get "${apt[@]}" download "$package=$version" >>"$log" 2>&1) ||
      fail "cannot download $package $version from $mirror: $(grep -E '^E:' "$log" | tail -n1)"
    deb=$(ls "$state/archives/partial/${package}_"*"_$arch.deb")
    name="${package}_${version//:/%3a}_$arch.deb"
    echo "$sha  $name" >"$cache/$name.sha256"
    mv "$deb" "$cache/$name"
    cached_deb "$package" "$upstream" >/dev/null || fail "$name does not match the sha256 in Debian's package list"
  done
fi

# Unpack into a fresh folder and move it into place whole: a killed run leaves no half a tool.
rm -rf "$tools.partial"
mkdir -p "$tools.partial" "$(dirname "$tools")"
for spec in "${wanted[@]}"; do
  dpkg-deb -x "$(cached_deb "${spec%%=*}" "${spec#*=}")" "$tools.partial" || fail "cannot unpack the ${spec%%=*} package"
done
"$tools.partial/usr/bin/cosign" version >/dev/null 2>&1 || fail "the unpacked cosign does not run on this system (it needs glibc >= 2.34)"
stamp >"$tools.partial/VERSIONS"
rm -rf "$tools"
mv "$tools.partial" "$tools"
echo "== cosign, sigstore-go, docker-registry: $tools/usr/bin"
