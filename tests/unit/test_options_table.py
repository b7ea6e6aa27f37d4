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
    signing = ["--sign-key", "site.key"]
    layout = _image_of(
        tmp_path / "app.tar", tmp_path / "app.oci", settings, settings.image_push, signing, lambda _: None
    )
    assert layout == tmp_path / "app.oci"
    assert calls == [[
        "image", "--from-pack", str(tmp_path / "app.tar"), "--base", "scratch", "--output",
        f"oci-layout:{tmp_path / 'app.oci'}", "-q", "--entrypoint", "python -m app", "--push", "ghcr.io/acme/app:1",
        "--sign-key", "site.key",
    ]]  # fmt: skip


def _gitlab_image_job_variables() -> dict[str, list[str]]:
    """GitLab input → the variables of the template's image job that carry it."""
    text = (REPO / "gitlab" / "pixi-pack.yml").read_text()
    job = text.split('\n"$[[ inputs.job-prefix ]]-image":\n', 1)[1].split("\n\n", 1)[0]
    found: dict[str, list[str]] = {}
    for variable, name in re.findall(r'(PIXI_PACK_[A-Z_]+): "?\$\[\[ inputs\.([a-z0-9-]+) \]\]"?$', job, re.MULTILINE):
        found.setdefault(name, []).append(variable)
    return found


def _image_flags() -> set[str]:
    from pixi_pack_ci.core.cli import build_parser
    from pixi_pack_ci.core.plugin_manager import create_plugin_manager

    parser = build_parser(create_plugin_manager())
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {s for a in subparsers.choices["image"]._actions for s in a.option_strings}


_IMAGE_JOB_ENV = {"PIXI_PACK_IMAGE_BASE": "scratch", "PIXI_PACK_IMAGE_PUSH": "false"}


@pytest.mark.parametrize("flag", [f for f in PACK_FLAGS if f.gitlab and f.flag in _image_flags()], ids=lambda f: f.flag)
def test_gitlab_image_job_passes_the_pack_flags_image_takes(flag: PackFlag, tmp_path: Path) -> None:
    """An input of the pack jobs that ``image`` takes too reaches the image job's command: the
    image is of the same environment as the packs."""
    from pixi_pack_ci.plugins.gitlab.image import image_arguments

    variables = _gitlab_image_job_variables().get(flag.gitlab)
    assert variables, f"the image job has no variable for input {flag.gitlab}"
    value = _value(flag, tmp_path)
    argv = image_arguments({**_IMAGE_JOB_ENV, **dict.fromkeys(variables, value)})
    names = [n for n in (flag.flag, flag.short) if n]
    if flag.kind == "switch":
        assert set(names) & set(argv), argv
    else:
        assert any(argv[i - 1] in names for i, a in enumerate(argv) if a == value), argv


def test_gitlab_image_inputs_reach_the_image_command() -> None:
    from pixi_pack_ci.plugins.gitlab.image import image_arguments

    variables = _gitlab_image_job_variables()
    inputs, text = _gitlab_inputs()
    image_inputs = {"build-image", "image-base", "image-tags", "image-push", "image-args"}
    assert image_inputs <= inputs and image_inputs <= set(variables), sorted(variables)
    env = {
        variables["environments"][0]: "prod", variables["image-base"][0]: "registry.example/base:1",
        variables["image-tags"][0]: '["registry.example/app/{environment}:1"]', variables["image-push"][0]: "true",
        variables["image-args"][0]: "--entrypoint 'app --serve' --compression zstd",
        variables["output-dir"][0]: "out",
    }  # fmt: skip
    argv = image_arguments(env)
    assert argv[argv.index("--base") + 1] == "registry.example/base:1"
    assert argv[argv.index("--push") + 1] == "registry.example/app/prod:1"
    assert argv[argv.index("--output") + 1] == "oci-archive:out/prod-image.tar:registry.example/app/prod:1"
    assert argv[-4:] == ["--entrypoint", "app --serve", "--compression", "zstd"]
    assert "--push" not in image_arguments({**env, variables["image-push"][0]: "false"})
    assert 'if: $PIXI_PACK_BUILD_IMAGE != "true"' in text and variables["build-image"] == ["PIXI_PACK_BUILD_IMAGE"]
