"""Packing the locked environment with the project's wheel injected, through the pixi-pack-ci CLI.

The CLI (``pixi_pack_ci.core.main``) is imported here, lazily: hatchling imports every plugin
of its ``hatch`` entry-point group into every build environment, so the module that registers us
must not pull in py-rattler or httpx.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from .settings import PackSettings, SettingsError

#: Set while the builder builds the project's wheel, so our own wheel hook does not pack again.
INNER_BUILD_ENV = "PIXI_PACK_CI_HATCH_INNER_BUILD"


class PackFailedError(RuntimeError):
    """pixi-pack-ci stopped; its one-line error has been printed already."""


@contextlib.contextmanager
def inner_build() -> Iterator[None]:
    previous = os.environ.get(INNER_BUILD_ENV)
    os.environ[INNER_BUILD_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(INNER_BUILD_ENV, None)
        else:
            os.environ[INNER_BUILD_ENV] = previous


def _file_component(value: str) -> str:
    # As in wheel and sdist file names: runs of -, _ and . become one _.
    return re.sub(r"[-_.]+", "_", re.sub(r"[^\w.+-]+", "_", value))


def _image_of(
    pack: Path, layout: Path, settings: PackSettings, pushes: list[str], signing: list[str], say: Callable[[str], None]
) -> Path:
    """The pack as an OCI image layout (and pushed to ``pushes``, signed as the packs are), with
    no second download."""
    from pixi_pack_ci.core import main as pixi_pack_ci_main

    argv = ["image", "--from-pack", str(pack), "--base", settings.image_base, "--output", f"oci-layout:{layout}", "-q"]
    if settings.image_entrypoint:
        argv += ["--entrypoint", settings.image_entrypoint]
    for target in pushes:
        argv += ["--push", target]
    if pixi_pack_ci_main(argv + signing) != 0:
        raise PackFailedError(f"pixi-pack-ci could not build an image of {pack.name}")
    say(f"pixi-pack: {layout.name} (OCI image layout of {pack.name})")
    return layout


def pack_project(
    root: Path,
    settings: PackSettings,
    *,
    name: str,
    version: str,
    wheel: Path,
    directory: Path,
    environments: list[str],
    say: Callable[[str], None],
) -> list[Path]:
    """One pack per environment and platform, each with ``wheel`` injected; returns their paths."""
    from pixi_pack_ci.core import main as pixi_pack_ci_main
    from rattler.platform import Subdir

    manifest = (root / settings.manifest_path).resolve()
    platforms = settings.platforms or [str(Subdir.current())]
    pushes = _image_pushes(settings, name, version, environments, platforms) if settings.image_base else {}
    directory.mkdir(parents=True, exist_ok=True)
    cache = Path(settings.cache_dir) if settings.cache_dir else root / ".pixi-pack-cache"
    packs: list[Path] = []
    for environment in environments:
        for platform in platforms:
            stem = settings.output_name.format(
                name=_file_component(name), version=version, environment=environment, platform=platform
            )
            output = directory / (stem + ".tar")
            argv = ["pack", str(manifest), "-e", environment, "-p", platform, "-o", str(output)]
            argv += ["--inject", str(wheel), "--use-cache", str(cache), "-q"]
            if settings.create_executable:
                argv.append("--create-executable")
            if settings.ignore_pypi_non_wheel:
                argv.append("--ignore-pypi-non-wheel")
            if settings.no_build:
                argv.append("--no-build")
            signing = (
                ["--sign-key", str(root / settings.sign_key)] if settings.sign_key
                else ["--attest"] if settings.attest else []
            )  # fmt: skip
            if pixi_pack_ci_main(argv + signing) != 0:
                raise PackFailedError(f"pixi-pack-ci could not pack {environment} for {platform}")
            # With --create-executable the extension follows the platform (.sh or .ps1).
            written = next(p for p in sorted(directory.glob(stem + ".*")) if not p.name.endswith(".sigstore.json"))
            say(f"pixi-pack: {written.name} ({environment}, {platform}, with {wheel.name})")
            packs.append(written)
            if (environment, platform) in pushes:
                layout = directory / (stem + ".oci")
                packs.append(_image_of(written, layout, settings, pushes[environment, platform], signing, say))
    return packs


def _image_pushes(
    settings: PackSettings, name: str, version: str, environments: list[str], platforms: list[str]
) -> dict[tuple[str, str], list[str]]:
    """Where each image goes, by (environment, platform), for the platforms that have images
    (Linux: the packs of the others are written, without an image). Checked before anything is
    packed: two images pushed to one reference would leave only the last there."""
    from pixi_pack_ci.core import image_platforms

    linux = image_platforms(platforms)
    if not linux:
        raise SettingsError(f"option `image-base` needs a Linux platform in `platforms`, got {', '.join(platforms)}")
    # hatch builds one environment per call: the others' references count too.
    every = dict.fromkeys([*environments, *settings.environments])
    pushes = {
        (environment, platform): [
            target.format(name=name, version=version, environment=environment, platform=platform)
            for target in settings.image_push
        ]
        for environment in every
        for platform in linux
    }
    seen: dict[str, tuple[str, str]] = {}
    for key, targets in pushes.items():
        for target in targets:
            if target in seen:
                raise SettingsError(
                    f"option `image-push` sends the images of {'/'.join(seen[target])} and {'/'.join(key)} both to "
                    f"{target}: add {{environment}} or {{platform}} to it"
                )
            seen[target] = key
    return {key: targets for key, targets in pushes.items() if key[0] in environments}
