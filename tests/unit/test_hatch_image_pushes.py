"""Where the hatch builder sends each image: placeholders, Linux platforms only, and two images
never sent to one reference (checked before anything is packed)."""

from __future__ import annotations

import re

import pytest
from pixi_pack_ci.hatch_plugin.packing import _image_pushes
from pixi_pack_ci.hatch_plugin.settings import PackSettings, SettingsError

WHERE = "[tool.hatch.build.targets.pixi-pack]"


def settings(**table: object) -> PackSettings:
    return PackSettings.from_table({"image-base": "scratch", **table}, WHERE)


def test_images_only_for_linux_platforms_with_placeholders_filled() -> None:
    chosen = settings(
        environments=["default", "prod"], **{"image-push": ["r.example/{name}/{environment}:{version}-{platform}"]}
    )
    pushes = _image_pushes(chosen, "demo_app", "1.0", ["prod"], ["linux-64", "osx-arm64", "win-64", "linux-aarch64"])
    assert pushes == {
        ("prod", "linux-64"): ["r.example/demo_app/prod:1.0-linux-64"],
        ("prod", "linux-aarch64"): ["r.example/demo_app/prod:1.0-linux-aarch64"],
    }


def test_no_linux_platform_and_shared_references_are_refused() -> None:
    with pytest.raises(
        SettingsError, match=r"`image-base` needs a Linux platform in `platforms`, got osx-arm64, win-64"
    ):
        _image_pushes(settings(), "demo_app", "1.0", ["default"], ["osx-arm64", "win-64"])
    shared = settings(**{"image-push": ["r.example/app:{environment}"]})
    clash = "images of default/linux-64 and default/linux-aarch64 both to r.example/app:default"
    with pytest.raises(SettingsError, match=re.escape(clash)):
        _image_pushes(shared, "demo_app", "1.0", ["default"], ["linux-64", "linux-aarch64"])
    with pytest.raises(SettingsError, match=r"option `image-push` of .* may use \{name\}"):
        settings(**{"image-push": ["r.example/app:{tag}"]})
