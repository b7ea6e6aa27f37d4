"""The contract between the core and its plugins.

Every hook is prefixed ``pixi_pack_ci_``. Built-in features (the HTTP fetcher, and the CI,
build-tool and provenance integrations shipped in ``pixi_pack_ci.plugins``) implement the same
hooks a third-party plugin would. Plugins load from the ``pixi_pack_ci`` entry-point group.

Hooks are called in pluggy's order: last registered first, ``tryfirst``/``trylast`` respected.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .errors import PixiPackError
    from .fetch_context import FetchContext
    from .model import Artifact, ImageLayer, ImageOptions, ImageResult, PackOptions, PackPlan, PackResult, UnpackResult

PROJECT_NAME = "pixi_pack_ci"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec(historic=True)
def pixi_pack_ci_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Add a plugin's own hook specifications, so other plugins can extend it.

    Called once for every plugin as it is registered, before any other hook (a historic hook, like
    pytest's ``pytest_addhooks``). Call ``pluginmanager.add_hookspecs(module)``; implementations of
    those hooks registered earlier are checked then. Return value is ignored.
    """


@hookspec
def pixi_pack_ci_add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add command-line flags to one subcommand.

    Called once for each of the core's subcommands (``command`` is ``"pack"``, ``"unpack"`` or
    ``"inspect"``) while the CLI is built, before arguments are parsed. The parsed values reach
    the other hooks through ``options.args``. Return value is ignored.
    """


@hookspec
def pixi_pack_ci_add_commands(subparsers: Any) -> None:
    """Register new subcommands (e.g. ``attest``, ``verify``).

    Called once while the CLI is built, after the core's own subcommands exist.
    ``subparsers`` is the ``argparse`` sub-parser action. A plugin adds its parser and sets
    ``handler=callable(args) -> int`` with ``set_defaults``; the CLI calls it and uses the
    returned int as exit code. Raise :class:`~pixi_pack_ci.core.errors.PixiPackError` for a
    clean one-line failure. Return value is ignored.
    """


@hookspec
def pixi_pack_ci_modify_plan(plan: PackPlan, options: PackOptions) -> None:
    """Change what one pack will contain, before anything is downloaded.

    Called once per environment and platform after the lockfile is read, and also for
    ``--dry-run``. Mutate ``plan`` in place: add, remove or replace entries of ``plan.conda`` and
    ``plan.pypi`` and append user-facing messages to ``plan.notes``. Raise ``PixiPackError`` to
    stop the pack with a one-line message. Return value is ignored.
    """


@hookspec(firstresult=True)
def pixi_pack_ci_fetch_artifact(
    artifact: Artifact, destination: Path, context: FetchContext, attempt: int, url: str
) -> object | None:
    """Fetch one artifact's bytes from ``url`` into ``destination`` (a temporary file path).

    Called for every artifact that is not already in the cache, once per attempt (``attempt``
    counts from 0). ``url`` is the attempt's URL: the core has applied the configured mirrors and
    moves to the next mirror on each retry, so a fetcher for a new scheme answers for the
    ``url`` schemes it knows (it may ignore ``artifact.url``). The first implementation that
    returns something other than ``None`` wins: ``True``, or a
    :class:`~pixi_pack_ci.core.Digests` of the bytes it wrote, which spares the core reading the
    file again. Return ``None`` to let the next one try. The built-in HTTP fetcher (httpx,
    credentials) runs last. The core verifies the hash afterwards, retries on
    :class:`~pixi_pack_ci.core.TransientFetchError` and mismatches, and moves the file into place
    atomically, so an implementation only has to write bytes.

    Writing through ``context.open_destination(artifact, destination)`` instead of opening
    ``destination`` lets the core place the bytes straight into a pack that is being written in
    place (one write instead of two); writing to ``destination`` always works too.
    """


@hookspec
def pixi_pack_ci_packs_written(packs: list[PackResult], options: PackOptions) -> None:
    """Called once after every pack of a run has been written (not for ``--dry-run``).

    ``packs`` lists each pack's path, sha256, size, environment, platform and packages. CI
    plugins publish outputs here; the provenance plugin signs. Return value is ignored; raise
    ``PixiPackError`` to fail the run (the packs stay on disk).
    """


@hookspec
def pixi_pack_ci_image_layers(layers: list[ImageLayer], platform: str, options: ImageOptions) -> None:
    """Called per platform of ``image`` once the environment is installed and split into layers
    (``--layers``), before any layer is written; change ``layers`` in place (merge, split,
    reorder). The top layer (files of no single package) is the last. Every path must stay in
    exactly one layer, and the image within 100 layers, or the run stops. When ``--use-cache``
    holds the environment already, it is called with the layers recorded then, without an
    install; the cached layers are used only if the plugins lay them out as they did then
    (else the environment is installed and written afresh). Once per platform and run either way."""


@hookspec(firstresult=True)
def pixi_pack_ci_registry_credentials(registry: str) -> tuple[str, str] | None:
    """Called once per container registry (``host[:port]``) that ``image`` reads or pushes to,
    after ``PIXI_PACK_CI_REGISTRY_USERNAME``/``_PASSWORD`` and before Docker's ``config.json``
    (first result wins). Return ``(username, password)`` or None: a CI plugin answers for its own
    registry (a job token). The password is registered as a secret, so it is never printed."""


@hookspec
def pixi_pack_ci_images_written(images: list[ImageResult], options: ImageOptions) -> None:
    """Called once after ``image`` wrote and pushed its image (one per run: several platforms
    make one index). The provenance plugin signs ``image.digest`` and attaches the bundle to the
    pushed image with ``image.attach``. Raise ``PixiPackError`` to fail the run (what was
    written and pushed stays)."""


@hookspec
def pixi_pack_ci_before_unpack(pack: str, options: argparse.Namespace) -> None:
    """Called before a pack is read for ``unpack``; raise ``PixiPackError`` to refuse it.

    ``pack`` is the path as given on the command line (``-`` for standard input). The provenance
    plugin verifies a signature here. Nothing has been extracted yet. Return value is ignored.
    """


@hookspec
def pixi_pack_ci_unpacked(result: UnpackResult, options: argparse.Namespace) -> None:
    """Called after an environment has been created and its activation script written."""


@hookspec
def pixi_pack_ci_error(error: PixiPackError, command: str) -> None:
    """Called when a command stops with a user-facing error, before the CLI prints it.

    CI plugins turn ``error.file``/``error.line`` into annotations. Return value is ignored;
    exceptions raised here are reported and swallowed.
    """
