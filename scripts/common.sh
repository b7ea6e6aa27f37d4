# shellcheck shell=bash
# Sourced by scripts/test.sh, scripts/lint-workflows.sh and bench/run.sh: run from the repository
# root, with a venv ($PIXI_PACK_CI_VENV, default .venv), and Debian packages for missing commands.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
venv="${PIXI_PACK_CI_VENV:-$root/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"

# as_root COMMAND...: run it as root, or through sudo without a password (GitHub's Ubuntu runners);
# fails when neither is possible.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

# apt_install_missing [--no-install-recommends] COMMAND[=PACKAGE,PACKAGE]...: install the Debian
# packages of the commands not on PATH (the package is the command's name unless given). Needs
# apt-get and root (or sudo without a password); else does nothing.
apt_install_missing() {
  local wanted="" spec options=()
  if [ "${1:-}" = --no-install-recommends ]; then
    options=("$1")
    shift
  fi
  for spec in "$@"; do
    command -v "${spec%%=*}" >/dev/null 2>&1 && continue
    if [[ "$spec" == *=* ]]; then wanted="$wanted ${spec#*=}"; else wanted="$wanted $spec"; fi
  done
  wanted=${wanted//,/ }
  [ -n "$wanted" ] && command -v apt-get >/dev/null 2>&1 && as_root true || return 0
  echo "== installing$wanted (Debian)"
  # shellcheck disable=SC2086  # a list of package names
  (as_root apt-get update -qq && as_root apt-get install -y -qq "${options[@]}" $wanted) >/dev/null 2>&1
}
