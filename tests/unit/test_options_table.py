"""The one table of pack options (core/options.py) against the four places that offer them: the
CLI, the GitHub Action, the GitLab template and the hatch settings. A flag one of them lacks, or
maps to another flag, fails here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from pixi_pack_ci.core.options import PACK_FLAGS, PackFlag, add_pack_flags

REPO = Path(__file__).resolve().parents[2]


def _value(flag: PackFlag, tmp_path: Path) -> str:
    if flag.kind == "switch":
        return "true"
    if flag.kind == "paths":
        target = tmp_path / "extra.conda"
        target.write_bytes(b"")
        return str(target)
    return "some-value"


def test_cli_has_every_flag_of_the_table() -> None:
    parser = argparse.ArgumentParser()
    add_pack_flags(parser)
    known = {s for a in parser._actions for s in a.option_strings}
    for flag in PACK_FLAGS:
        assert flag.flag in known and (not flag.short or flag.short in known)


@pytest.mark.parametrize("flag", [f for f in PACK_FLAGS if f.action], ids=lambda f: f.flag)
def test_action_maps_its_input_to_the_flag(flag: PackFlag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixi_pack_ci.plugins.github import action

    action_yml = (REPO / "action.yml").read_text()
    assert f"INPUT_{flag.action.upper()}:" in action_yml, f"action.yml passes no INPUT_{flag.action.upper()}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(f"INPUT_{flag.action.upper()}", _value(flag, tmp_path))
    argv = action.pack_arguments()
    assert flag.flag in argv or (flag.short and flag.short in argv), argv


def _gitlab_inputs() -> tuple[set[str], str]:
    text = (REPO / "gitlab" / "pixi-pack.yml").read_text()
    spec = text.split("\n---", 1)[0]
    inputs = set(re.findall(r"^    ([a-z][a-z0-9-]*):\s*$", spec, flags=re.MULTILINE))
    return inputs, text


@pytest.mark.parametrize("flag", [f for f in PACK_FLAGS if f.gitlab], ids=lambda f: f.flag)
def test_gitlab_template_offers_the_flag(flag: PackFlag) -> None:
    inputs, text = _gitlab_inputs()
    assert flag.gitlab in inputs, sorted(inputs)
    assert f"$[[ inputs.{flag.gitlab} ]]" in text
    assert flag.flag in text or (flag.short and re.search(rf"\s{re.escape(flag.short)}\s", text))


@pytest.mark.parametrize("flag", [f for f in PACK_FLAGS if f.hatch], ids=lambda f: f.flag)
def test_hatch_settings_offer_the_flag(flag: PackFlag) -> None:
    from pixi_pack_ci.hatch_plugin.settings import PackSettings

    value: object = True if flag.kind == "switch" else ["x"] if flag.kind == "texts" else "x"
    settings = PackSettings.from_table({flag.hatch: value}, "[test]")
    assert settings != PackSettings(), f"hatch setting {flag.hatch} changed nothing"
    packing = (REPO / "hatch_plugin" / "pixi_pack_ci" / "hatch_plugin" / "packing.py").read_text()
    assert f'"{flag.flag}"' in packing or (flag.short and f'"{flag.short}"' in packing)


def test_hatch_image_settings_become_one_image_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pixi_pack_ci.core
    from pixi_pack_ci.hatch_plugin.packing import _image_of
    from pixi_pack_ci.hatch_plugin.settings import PackSettings

    table = {"image-base": "scratch", "image-entrypoint": "python -m app", "image-push": ["ghcr.io/acme/app:1"]}
    settings = PackSettings.from_table(table, "[test]")
    calls: list[list[str]] = []
    monkeypatch.setattr(pixi_pack_ci.core, "main", lambda argv: calls.append(list(argv)) or 0, raising=False)
    layout = _image_of(tmp_path / "app.tar", tmp_path / "app.oci", settings, lambda _: None)
    assert layout == tmp_path / "app.oci"
    assert calls == [[
        "image", "--from-pack", str(tmp_path / "app.tar"), "--base", "scratch", "--output",
        f"oci-layout:{tmp_path / 'app.oci'}", "-q", "--entrypoint", "python -m app", "--push", "ghcr.io/acme/app:1",
    ]]  # fmt: skip
