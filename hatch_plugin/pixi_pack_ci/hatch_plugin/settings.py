"""The ``[tool.hatch.build.targets.pixi-pack]`` (and build hook) table, validated with clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Default pack file name (without the extension, which follows the target platform).
DEFAULT_OUTPUT_NAME = "{name}-{version}-{environment}-{platform}"


class SettingsError(ValueError):
    """A hatch configuration value has the wrong type or an unknown placeholder."""


def _strings(table: dict[str, Any], key: str, where: str, default: list[str]) -> list[str]:
    value = table.get(key, default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f"option `{key}` of {where} must be an array of strings")
    return list(value)


def _bool(table: dict[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise SettingsError(f"option `{key}` of {where} must be true or false")
    return value


def _string(table: dict[str, Any], key: str, where: str, default: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise SettingsError(f"option `{key}` of {where} must be a string")
    return value


@dataclass(frozen=True)
class PackSettings:
    manifest_path: str = "."
    environments: list[str] = field(default_factory=lambda: ["default"])
    #: Empty: the building machine's platform.
    platforms: list[str] = field(default_factory=list)
    create_executable: bool = False
    ignore_pypi_non_wheel: bool = False
    no_build: bool = False
    output_name: str = DEFAULT_OUTPUT_NAME
    attest: bool = False
    sign_key: str = ""
    cache_dir: str = ""
    #: With a base (``scratch``, ``oci-layout:DIR[:TAG]`` or a registry image), each pack also
    #: becomes an OCI image layout ``<output-name>.oci/`` (``pixi-pack-ci image --from-pack``).
    image_base: str = ""
    image_entrypoint: str = ""
    #: ``REGISTRY/REPO[:TAG]`` to push each image to, with ``output-name``'s placeholders (one
    #: image per environment and Linux platform: each must name its own reference).
    image_push: list[str] = field(default_factory=list)

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str) -> PackSettings:
        settings = cls(
            manifest_path=_string(table, "manifest-path", where, "."),
            environments=_strings(table, "environments", where, ["default"]),
            platforms=_strings(table, "platforms", where, []),
            create_executable=_bool(table, "create-executable", where),
            ignore_pypi_non_wheel=_bool(table, "ignore-pypi-non-wheel", where),
            no_build=_bool(table, "no-build", where),
            output_name=_string(table, "output-name", where, DEFAULT_OUTPUT_NAME),
            attest=_bool(table, "attest", where),
            sign_key=_string(table, "sign-key", where),
            cache_dir=_string(table, "cache-dir", where),
            image_base=_string(table, "image-base", where),
            image_entrypoint=_string(table, "image-entrypoint", where),
            image_push=_strings(table, "image-push", where, []),
        )
        for key, value in [("output-name", settings.output_name), *(("image-push", v) for v in settings.image_push)]:
            try:
                value.format(name="n", version="v", environment="e", platform="p")
            except (KeyError, IndexError, ValueError) as exc:
                raise SettingsError(
                    f"option `{key}` of {where} may use {{name}}, {{version}}, {{environment}}, {{platform}} "
                    f"only ({exc})"
                ) from None
        return settings
