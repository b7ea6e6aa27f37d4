"""The wheel build hook ``pixi-pack``: after ``hatch build -t wheel`` (or ``python -m build``),
pack the locked environment(s) with the fresh wheel injected, into the same ``dist/``.

Off unless asked for at build time, so ``pip install`` of an sdist never packs: configured, it
packs only when ``PIXI_PACK_CI_PACK=1`` or hatch's ``HATCH_BUILD_HOOKS_ENABLE=1`` is set. (Do not
add ``enable-by-default = false``: hatch would then skip it even with ``PIXI_PACK_CI_PACK=1``; and
hatch's per-hook ``HATCH_BUILD_HOOK_ENABLE_PIXI-PACK`` does not survive every shell, for its hyphen.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

from .packing import INNER_BUILD_ENV, pack_project
from .settings import PackSettings

ENABLE_ENV = "PIXI_PACK_CI_PACK"
_TRUE = ("1", "true")


def hook_enabled(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    if env.get(INNER_BUILD_ENV):
        return False  # the pixi-pack builder is building the wheel it will inject itself
    return env.get(ENABLE_ENV, "").lower() in _TRUE or env.get("HATCH_BUILD_HOOKS_ENABLE", "").lower() in _TRUE


class PixiPackBuildHook(BuildHookInterface[Any]):
    PLUGIN_NAME = "pixi-pack"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self.target_name != "wheel" or version != "standard" or not hook_enabled():
            return
        settings = PackSettings.from_table(
            dict(self.config), f"[tool.hatch.build.targets.{self.target_name}.hooks.{self.PLUGIN_NAME}]"
        )
        pack_project(
            Path(self.root),
            settings,
            name=self.metadata.core.name,
            version=self.metadata.version,
            wheel=Path(artifact_path),
            directory=Path(self.directory),
            environments=settings.environments,
            say=self.app.display_info,
        )
