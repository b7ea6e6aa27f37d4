"""Entry point of the composite action: ``python -m pixi_pack_ci.plugins.github.action [cache-key]``.

Inputs arrive as ``INPUT_<NAME>`` variables that ``action.yml`` maps through ``env:`` (composite
actions get none automatically, and inputs must never be expanded inside ``run:``). They become a
``pixi-pack-ci pack`` command line; the GitHub plugin writes outputs and the summary from the
core's hooks during that run.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import github_action_utils as gha
from pixi_pack_ci.core import main as pixi_pack_ci_main

from .plugin import SUMMARY_SWITCH_ENV

LOG_LEVELS = {"error": ["-q"], "warning": [], "info": ["-v"], "debug": ["-vv"]}


class InputError(Exception):
    """An action input has a value we cannot use."""


def _text(name: str, default: str = "") -> str:
    value = gha.get_user_input(name, trim_whitespace=True)
    return value if value else default


def _words(name: str) -> list[str]:
    # Lists may be newline- or whitespace-separated, as setup-pixi and zizmor-action accept.
    return (gha.get_user_input(name) or "").split()


def _flag(name: str, default: bool = False) -> bool:
    if not (gha.get_user_input(name) or "").strip():
        return default
    try:
        return bool(gha.get_boolean_input(name))
    except ValueError:
        raise InputError(f"input {name} must be true or false, got {gha.get_user_input(name)!r}") from None


def pack_arguments() -> list[str]:
    """The ``pixi-pack-ci`` command line the inputs ask for."""
    argv = ["pack", _text("manifest-path", ".")]
    for environment in _words("environments") or ["default"]:
        argv += ["-e", environment]
    for platform in _words("platforms"):
        argv += ["-p", platform]
    argv += ["--output-dir", _text("output-dir", "pixi-packs")]
    if _flag("create-executable"):
        argv.append("--create-executable")
    if source := _text("pixi-unpack-source"):
        argv += ["--pixi-unpack-source", source]
    for pattern in gha.get_multiline_input("inject"):
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise InputError(f"input inject: {pattern!r} matches no file")
        for match in matches:
            argv += ["--inject", match]
    if _flag("ignore-pypi-non-wheel"):
        argv.append("--ignore-pypi-non-wheel")
    if _flag("no-build"):
        argv.append("--no-build")
    if _flag("directory-only"):
        argv.append("--directory-only")
    if config := _text("config"):
        argv += ["--config", config]
    if auth_file := _text("auth-file"):
        argv += ["--auth-file", auth_file]
    if cache_dir := _text("cache-dir"):
        argv += ["--use-cache", cache_dir]
    if _flag("attest"):
        argv.append("--attest")
        if trust := _text("sigstore-trust-config"):
            argv += ["--sigstore-trust-config", trust]
    level = _text("log-level", "info").lower()
    if level not in LOG_LEVELS:
        raise InputError(f"input log-level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return argv + LOG_LEVELS[level]


def cache_key() -> str:
    """``pixi-pack-ci-v1-<os>-<lockfile digest>-<environments and platforms digest>``."""
    manifest = Path(_text("manifest-path", "."))
    lock = (manifest if manifest.is_dir() else manifest.parent) / "pixi.lock"
    lock_digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:20] if lock.is_file() else "no-lockfile"
    selection = " ".join(["-e", *(_words("environments") or ["default"]), "-p", *_words("platforms")])
    selection_digest = hashlib.sha256(selection.encode()).hexdigest()[:8]
    return f"{cache_key_prefix()}{lock_digest}-{selection_digest}"


def cache_key_prefix() -> str:
    return f"pixi-pack-ci-v1-{os.environ.get('RUNNER_OS', sys.platform)}-{os.environ.get('RUNNER_ARCH', '')}-"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args == ["cache-key"]:
            gha.set_output("key", cache_key())
            gha.set_output("restore-prefix", cache_key_prefix())
            return 0
        os.environ[SUMMARY_SWITCH_ENV] = "true" if _flag("job-summary", default=True) else "false"
        command = pack_arguments()
    except InputError as exc:
        gha.error(str(exc), title="pixi-pack-ci")
        print(f"pixi-pack-ci: error: {exc}", file=sys.stderr)
        return 2
    with gha.group("pixi-pack-ci " + shlex.join(command)):
        code = pixi_pack_ci_main(command)
    return code


if __name__ == "__main__":
    sys.exit(main())
