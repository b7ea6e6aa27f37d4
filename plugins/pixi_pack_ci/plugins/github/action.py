"""Entry point of the composite action: ``python -m pixi_pack_ci.plugins.github.action [cache-key]``.

Inputs arrive as ``INPUT_<NAME>`` variables that ``action.yml`` maps through ``env:`` (composite
actions get none automatically, and inputs must never be expanded inside ``run:``). They become a
``pixi-pack-ci pack`` command line and, with build-image, one ``pixi-pack-ci image`` per
environment, run in this process one after the other; the GitHub plugin writes outputs and the
summary from the core's hooks during those runs.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import github_action_utils as gha
from pixi_pack_ci.core import image_platforms
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


def pack_arguments(cache_dir: str = "") -> list[str]:
    """The ``pixi-pack-ci pack`` command line the inputs ask for."""
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
    if _flag("directory-only"):
        argv.append("--directory-only")
    return argv + _source_arguments(cache_dir or _text("cache-dir")) + _signing_arguments() + _log_arguments()


def image_commands(cache_dir: str = "") -> list[list[str]]:
    """One ``pixi-pack-ci image`` command line per environment; none without build-image."""
    if not _flag("build-image"):
        return []
    base = _text("image-base")
    if not base:
        raise InputError("input image-base is required with build-image: a registry reference, oci-layout:DIR, scratch")
    environments = _words("environments") or ["default"]
    push = _flag("image-push", default=True)
    tags = _words("image-tags")
    if push and not tags:
        raise InputError("input image-tags is empty: give REGISTRY/REPO[:TAG] to push to, or set image-push to false")
    if len(environments) > 1:
        # Pushed to every tag; without push the archive is named after the first.
        for tag in tags if push else tags[:1]:
            if "{environment}" not in tag:
                raise InputError(f"input image-tags: {tag!r} needs {{environment}}: several environments are built")
    try:
        extra = shlex.split(_text("image-args"))
    except ValueError as exc:
        raise InputError(f"input image-args: {exc}") from None
    requested = _words("platforms")
    platforms = image_platforms(requested)
    if requested and not platforms:
        raise InputError(f"input build-image needs a Linux platform in platforms, got {' '.join(requested)}")
    output_dir = Path(_text("output-dir", "pixi-packs"))
    commands = []
    for environment in environments:
        argv = ["image", _text("manifest-path", "."), "-e", environment, "--base", base]
        for platform in platforms:
            argv += ["-p", platform]
        if push:
            for tag in tags:
                argv += ["--push", tag.replace("{environment}", environment)]
        else:
            # Named after the first tag, so that docker load and podman load give the image that name.
            name = f":{tags[0].replace('{environment}', environment)}" if tags else ""
            argv += ["--output", f"oci-archive:{output_dir / f'{environment}-image.tar'}{name}"]
        argv += _source_arguments(cache_dir or _text("cache-dir")) + _signing_arguments()
        # The user's flags last, so that they win over ours (argparse keeps the last value).
        commands.append(argv + _log_arguments() + extra)
    return commands


def _source_arguments(cache_dir: str) -> list[str]:
    """Flags pack and image share: what goes into the environment, and where packages come from."""
    argv: list[str] = []
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
    if config := _text("config"):
        argv += ["--config", config]
    if auth_file := _text("auth-file"):
        argv += ["--auth-file", auth_file]
    if cache_dir:
        argv += ["--use-cache", cache_dir]
    return argv


def _signing_arguments() -> list[str]:
    if not _flag("attest"):
        return []
    trust = _text("sigstore-trust-config")
    return ["--attest", *(["--sigstore-trust-config", trust] if trust else [])]


def _log_arguments() -> list[str]:
    level = _text("log-level", "info").lower()
    if level not in LOG_LEVELS:
        raise InputError(f"input log-level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return LOG_LEVELS[level]


def _run_cache_dir() -> str:
    """The package cache both commands share: the restored one, or (cache off) one for this run
    only, so that the image does not download what the pack just did."""
    if cached := _text("cache-dir"):
        return cached
    if not _flag("build-image"):
        return ""
    return tempfile.mkdtemp(prefix="pixi-pack-ci-run-cache-", dir=os.environ.get("RUNNER_TEMP") or None)


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
        # Every input is checked before anything runs: a bad image input fails before the packs.
        image_commands()
        cache_dir = _run_cache_dir()
        commands = [pack_arguments(cache_dir), *image_commands(cache_dir)]
    except InputError as exc:
        gha.error(str(exc), title="pixi-pack-ci")
        print(f"pixi-pack-ci: error: {exc}", file=sys.stderr)
        return 2
    for command in commands:
        with gha.group("pixi-pack-ci " + shlex.join(command)):
            code = pixi_pack_ci_main(command)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
