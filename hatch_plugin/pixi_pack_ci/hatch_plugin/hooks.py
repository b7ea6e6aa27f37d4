"""hatch's entry point (group ``hatch``, name ``pixi-pack``): registers the builder and the build hook.

Only hatchling's interfaces are imported here; pixi-pack-ci's core loads when a pack is made.
"""

from __future__ import annotations

from hatchling.plugin import hookimpl

from .builder import PixiPackBuilder
from .hook import PixiPackBuildHook


@hookimpl
def hatch_register_builder() -> type[PixiPackBuilder]:
    return PixiPackBuilder


@hookimpl
def hatch_register_build_hook() -> type[PixiPackBuildHook]:
    return PixiPackBuildHook
