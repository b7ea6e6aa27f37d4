"""Loading plugins: the core's own, then the ``pixi_pack_ci`` entry-point group.

A plugin that fails to import or register is reported and skipped; it never stops a run.
Plugins can be blocked by name with ``PIXI_PACK_CI_DISABLE_PLUGINS=name,name`` or
``--disable-plugin NAME``, the way pytest's ``-p no:NAME`` blocks plugins. A hook
implementation whose name matches no hook (a misspelling) fails that plugin's loading, through
pluggy's ``check_pending``. The core calls hooks through the typed methods of
:class:`PluginManager`, never through ``hook.*`` directly.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from . import hookspecs

if TYPE_CHECKING:
    from .errors import PixiPackError
    from .fetch_context import FetchContext
    from .model import (
        Artifact,
        ImageLayer,
        ImageOptions,
        ImageResult,
        PackOptions,
        PackPlan,
        PackResult,
        UnpackOptions,
        UnpackResult,
    )

log = logging.getLogger("pixi_pack_ci")

ENTRY_POINT_GROUP = "pixi_pack_ci"
DISABLE_ENV = "PIXI_PACK_CI_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginStatus:
    """What became of one plugin, for ``pixi-pack-ci plugins``."""

    name: str
    state: Literal["loaded", "blocked", "failed"]
    #: Where it comes from (``built-in`` or the entry point's value), or why it failed.
    detail: str


class PluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.statuses: list[PluginStatus] = []

    @property
    def failures(self) -> list[PluginStatus]:
        return [s for s in self.statuses if s.state == "failed"]

    def _register(self, plugin: object, name: str, origin: str) -> None:
        try:
            self.register(plugin, name=name)
        except Exception as exc:  # a broken plugin must not stop the run
            self._failed(name, exc)
            return
        self.statuses.append(PluginStatus(name, "loaded", origin))

    def _failed(self, name: str, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        self.statuses = [s for s in self.statuses if s.name != name]
        self.statuses.append(PluginStatus(name, "failed", reason))
        log.warning("plugin %r could not be loaded and is skipped (%s)", name, reason)

    def drop_unknown_hooks(self) -> None:
        """Once every plugin is in (a plugin may implement hooks another one adds): a hook
        implementation that matches no hook is a misspelling, and its plugin is taken out."""
        while True:
            try:
                self.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.get_name(exc.plugin) or repr(exc.plugin)
                self.unregister(exc.plugin)
                self._failed(name, exc)

    def load_entry_points(self, blocked: set[str] | None = None) -> None:
        """Every plugin of the entry-point group that is not blocked or loaded already."""
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if self.is_blocked(ep.name) or self.has_plugin(ep.name):
                if self.is_blocked(ep.name):
                    self.statuses.append(PluginStatus(ep.name, "blocked", ep.value))
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not stop the run
                self._failed(ep.name, exc)
                continue
            self._register(plugin, ep.name, ep.value)

    # --- the hooks, typed (see hookspecs.py for when each is called) ---------------------------

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        self.hook.pixi_pack_ci_add_arguments(parser=parser, command=command)

    def add_commands(self, subparsers: Any) -> None:
        self.hook.pixi_pack_ci_add_commands(subparsers=subparsers)

    def modify_plan(self, plan: PackPlan, options: PackOptions) -> None:
        self.hook.pixi_pack_ci_modify_plan(plan=plan, options=options)

    def fetch_artifact(
        self, artifact: Artifact, destination: Path, context: FetchContext, attempt: int, url: str
    ) -> object | None:
        return self.hook.pixi_pack_ci_fetch_artifact(  # type: ignore[no-any-return]
            artifact=artifact, destination=destination, context=context, attempt=attempt, url=url
        )

    def packs_written(self, packs: list[PackResult], options: PackOptions) -> None:
        self.hook.pixi_pack_ci_packs_written(packs=packs, options=options)

    def image_layers(self, layers: list[ImageLayer], platform: str, options: ImageOptions) -> None:
        self.hook.pixi_pack_ci_image_layers(layers=layers, platform=platform, options=options)

    def registry_credentials(self, registry: str) -> tuple[str, str] | None:
        answer = self.hook.pixi_pack_ci_registry_credentials(registry=registry)
        return (str(answer[0]), str(answer[1])) if answer else None

    def images_written(self, images: list[ImageResult], options: ImageOptions) -> None:
        self.hook.pixi_pack_ci_images_written(images=images, options=options)

    def before_unpack(self, pack: str, options: UnpackOptions) -> None:
        self.hook.pixi_pack_ci_before_unpack(pack=pack, options=options.args)

    def unpacked(self, result: UnpackResult, options: UnpackOptions) -> None:
        self.hook.pixi_pack_ci_unpacked(result=result, options=options.args)

    def report_error(self, error: PixiPackError, command: str) -> None:
        self.hook.pixi_pack_ci_error(error=error, command=command)


def blocked_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def create_plugin_manager(blocked: set[str] | None = None, *, load_entry_points: bool = True) -> PluginManager:
    """A manager with the core's built-in plugins and, unless told not to, every installed plugin."""
    from . import http_fetcher, inject
    from .fetchers import gcs, oci, s3

    pm = PluginManager()
    # Plugins that define their own hooks get to add them as they register, before anything runs.
    pm.hook.pixi_pack_ci_add_hookspecs.call_historic(kwargs={"pluginmanager": pm})
    blocked = (blocked or set()) | blocked_from_env()
    for name in sorted(blocked):
        pm.set_blocked(name)
    builtins = {
        "http": http_fetcher.HttpFetcherPlugin(),
        "s3": s3.S3FetcherPlugin(),
        "gcs": gcs.GcsFetcherPlugin(),
        "oci": oci.OciFetcherPlugin(),
        "inject": inject.InjectPlugin(),
    }
    for name, plugin in builtins.items():
        if name in blocked:
            pm.statuses.append(PluginStatus(name, "blocked", "built-in"))
        else:
            pm._register(plugin, name, "built-in")
    if load_entry_points:
        pm.load_entry_points(blocked)
    pm.drop_unknown_hooks()
    return pm
