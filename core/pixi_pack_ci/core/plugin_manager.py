"""Loading plugins: the core's own, then the ``pixi_pack_ci`` entry-point group.

A plugin that fails to import or register is reported and skipped; it never stops a run.
Plugins can be blocked by name with ``PIXI_PACK_CI_DISABLE_PLUGINS=name,name`` or
``--disable-plugin NAME``, the way pytest's ``-p no:NAME`` blocks plugins.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

from . import hookspecs

log = logging.getLogger("pixi_pack_ci")

ENTRY_POINT_GROUP = "pixi_pack_ci"
DISABLE_ENV = "PIXI_PACK_CI_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    reason: str


class PluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []

    def load_entry_points(self, blocked: set[str] | None = None) -> None:
        blocked = set(blocked or ())
        for name in blocked:
            self.set_blocked(name)  # also unregisters it if a built-in of that name is present
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if self.is_blocked(ep.name) or self.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name)
            except Exception as exc:  # a broken third-party plugin must not stop the run
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self.failures.append(PluginFailure(ep.name, reason))
                log.warning("plugin %r could not be loaded and is skipped (%s)", ep.name, reason)


def blocked_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def create_plugin_manager(blocked: set[str] | None = None, *, load_entry_points: bool = True) -> PluginManager:
    """A manager with the core's built-in plugins and, unless told not to, every installed plugin."""
    from . import fetch, inject

    pm = PluginManager()
    # Plugins that define their own hooks get to add them as they register, before anything runs.
    pm.hook.pixi_pack_ci_add_hookspecs.call_historic(kwargs={"pluginmanager": pm})
    blocked = (blocked or set()) | blocked_from_env()
    builtins = {"http": fetch.HttpFetcherPlugin(), "inject": inject.InjectPlugin()}
    for name, plugin in builtins.items():
        if name not in blocked:
            pm.register(plugin, name=name)
    if load_entry_points:
        pm.load_entry_points(blocked)
    return pm
