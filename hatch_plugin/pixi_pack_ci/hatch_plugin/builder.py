"""``hatch build -t pixi-pack[:ENV]``: build the project's wheel, inject it into the locked
environment(s), and write packs into ``dist/``. Versions of this target are environments."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.plugin.interface import BuilderInterface

from .packing import inner_build, pack_project
from .settings import PackSettings


class PixiPackBuilder(BuilderInterface[BuilderConfig, Any]):
    PLUGIN_NAME = "pixi-pack"

    @classmethod
    def get_config_class(cls) -> type[BuilderConfig]:
        return BuilderConfig

    def _settings(self) -> PackSettings:
        return PackSettings.from_table(dict(self.target_config), f"[tool.hatch.build.targets.{self.PLUGIN_NAME}]")

    def get_version_api(self) -> dict[str, Callable[..., str]]:
        return {env: self._builder_for(env) for env in self._settings().environments}

    def get_default_versions(self) -> list[str]:
        return self._settings().environments

    def clean(self, directory: str, versions: list[str]) -> None:
        settings = self._settings()
        pattern = settings.output_name.format(name="*", version="*", environment="*", platform="*")
        # Only what this builder writes: packs and their bundles, never wheels or sdists.
        for suffix in (".tar", ".sh", ".ps1"):
            for path in Path(directory).glob(pattern + suffix):
                path.unlink()
                path.with_name(path.name + ".sigstore.json").unlink(missing_ok=True)
        for layout in Path(directory).glob(pattern + ".oci"):
            shutil.rmtree(layout)
            layout.with_name(layout.name + ".sigstore.json").unlink(missing_ok=True)

    def _builder_for(self, environment: str) -> Callable[..., str]:
        def build(directory: str, **build_data: Any) -> str:
            return self._build(environment, Path(directory))

        return build

    def _build(self, environment: str, directory: Path) -> str:
        from hatchling.builders.wheel import WheelBuilder

        settings = self._settings()
        with tempfile.TemporaryDirectory(prefix="pixi-pack-wheel-") as tmp, inner_build():
            wheel_builder = WheelBuilder(
                self.root, plugin_manager=self.plugin_manager, metadata=self.metadata, app=self.app
            )
            wheel = Path(next(iter(wheel_builder.build(directory=tmp, versions=["standard"]))))
            packs = pack_project(
                Path(self.root),
                settings,
                name=self.metadata.core.name,
                version=self.metadata.version,
                wheel=wheel,
                directory=directory,
                environments=[environment],
                say=self.app.display_info,
            )
        # hatch reports one artifact per version; the others are listed by display_info above.
        return str(packs[0])
