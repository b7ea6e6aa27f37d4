"""The hatch builder and build hook, through a real `hatch build` and `python -m build` of a
temporary project whose pixi.lock points at the loopback channel and includes python."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from harness import PY, DemoChannel, run_cli
from image_support import docker_registry, need
from support import LockedPypi, build_wheel, channel_records, write_pixi_lock

REPO = Path(__file__).resolve().parent.parent
MODULE = 'GREETING = "hello from demo_app"\n'


def bin_tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is a test dependency (pip install -e '.[test]')"
    return found


@pytest.fixture(scope="session")
def plugin_source(tmp_path_factory: pytest.TempPathFactory) -> str:
    """This repository's package, copied so each session gets a fresh `file://` requirement
    (hatch and pip cache build environments by requirement)."""
    copy = tmp_path_factory.mktemp("pixi-pack-ci-src")
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    shutil.copy(REPO / "README.md", copy / "README.md")
    for root in ("core", "plugins", "hatch_plugin"):
        shutil.copytree(REPO / root, copy / root, ignore=shutil.ignore_patterns("__pycache__"))
    return copy.as_uri()


def make_hatch_project(
    base: Path, channel: DemoChannel, python_channel: Path, plugin_source: str, lock_version: int = 7
) -> Path:
    """A project as ``pixi init --format pyproject`` lays it out (``src/<name>/``, everything in
    pyproject.toml, the project itself an editable path dependency) and its pixi.lock as pixi
    writes it: python from conda, one ordinary wheel, and the project as ``pypi: .`` (v7) or
    ``pypi: ./`` with ``editable: true`` (v6)."""
    project = base / "demo-app"
    (project / "src" / "demo_app").mkdir(parents=True)
    (project / "src" / "demo_app" / "__init__.py").write_text(MODULE + "from extra_lib import EXTRA\n")
    extra = build_wheel(channel.path / "pypi" / "hatch", "extra-lib", "1.1", {"extra_lib": "EXTRA = 'extra'\n"})
    conda = channel_records(channel.path, channel.url)
    py = channel_records(python_channel, channel.url + "py/")["linux-64"]
    hello = [r for r in conda["linux-64"] if r.name.normalized in ("hello-tool", "libgreet")]
    wheel = LockedPypi(
        f"{channel.url}pypi/hatch/{extra.name}", "extra-lib", "1.1", hashlib.sha256(extra.read_bytes()).hexdigest()
    )
    self_entry = LockedPypi("." if lock_version >= 7 else "./", "demo-app", "0.3.0", "5" * 64, editable=True)
    write_pixi_lock(
        project / "pixi.lock",
        lock_version,
        channel.url,
        {"linux-64": conda["noarch"] + py + hello},
        {"linux-64": [wheel, self_entry]},
    )
    (project / "pyproject.toml").write_text(
        f"""\
[project]
authors = [{{name = "Demo", email = "demo@example.org"}}]
dependencies = ["extra-lib"]
name = "demo-app"
requires-python = ">= 3.8"
version = "0.3.0"

[build-system]
build-backend = "hatchling.build"
requires = ["hatchling>=1.26", "pixi-pack-ci @ {plugin_source}"]

[tool.pixi.workspace]
channels = ["{channel.url}"]
platforms = ["linux-64"]

[tool.pixi.pypi-dependencies]
demo_app = {{ path = ".", editable = true }}

[tool.pixi.tasks]

[tool.hatch.build.targets.pixi-pack]
environments = ["default"]
platforms = ["linux-64"]

# The hook packs only when PIXI_PACK_CI_PACK=1 or HATCH_BUILD_HOOKS_ENABLE=1 at build time.
[tool.hatch.build.targets.wheel.hooks.pixi-pack]
platforms = ["linux-64"]
output-name = "{{name}}-{{version}}-hook-{{platform}}"
"""
    )
    return project


def hatch_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATCH_", "PIXI_PACK_CI_", "VIRTUAL_ENV"))}
    return {**env, "HATCH_DATA_DIR": str(tmp_path / "hatch-data"), "HATCH_CACHE_DIR": str(tmp_path / "hatch-cache")}


def hatch_build(project: Path, tmp_path: Path, *settings: str) -> subprocess.CompletedProcess[str]:
    """``hatch build -t pixi-pack`` of ``project``, with ``settings`` (TOML lines) added to its
    ``[tool.hatch.build.targets.pixi-pack]`` table first."""
    if settings:
        pyproject = project / "pyproject.toml"
        table = "[tool.hatch.build.targets.pixi-pack]\n"
        pyproject.write_text(pyproject.read_text().replace(table, table + "".join(f"{line}\n" for line in settings)))
    return subprocess.run(
        [bin_tool("hatch"), "build", "-t", "pixi-pack"], cwd=project, capture_output=True, text=True,
        env=hatch_env(tmp_path), timeout=900,
    )  # fmt: skip


def unpack_and_import(pack: Path, target: Path) -> str:
    run_cli("unpack", pack, "-o", target, check=True)
    python = target / "env" / "bin" / f"python{PY}"
    proc = subprocess.run(
        [str(python), "-c", "import demo_app; print(demo_app.GREETING); print(demo_app.__file__)"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert proc.returncode == 0, proc.stderr
    greeting, module_file = proc.stdout.splitlines()
    assert greeting == "hello from demo_app"
    site = target / "env" / "lib" / f"python{PY}" / "site-packages"
    assert Path(module_file).is_relative_to(site)
    # A real install of the wheel, not pixi's editable one: no .pth pointing back at the sources,
    # no editable hooks, and a RECORD that names the package's files.
    leftovers = [p.name for p in site.iterdir() if p.suffix == ".pth" or "editable" in p.name.lower()]
    assert leftovers == []
    record = (site / "demo_app-0.3.0.dist-info" / "RECORD").read_text()
    assert "demo_app/__init__.py," in record
    assert not (site / "demo_app-0.3.0.dist-info" / "direct_url.json").exists()
    return module_file


@pytest.mark.parametrize("lock_version", [6, 7])
def test_hatch_build_target_packs_the_project_wheel(
    tmp_path: Path, channel: DemoChannel, python_channel: Path, plugin_source: str, lock_version: int
) -> None:
    project = make_hatch_project(tmp_path, channel, python_channel, plugin_source, lock_version)
    proc = hatch_build(project, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pack = project / "dist" / "demo_app-0.3.0-default-linux-64.tar"
    assert pack.is_file(), sorted(p.name for p in (project / "dist").iterdir())
    assert not list((project / "dist").glob("*.whl")), "the builder's own wheel is an input, not an output"
    with tarfile.open(pack) as tar:
        names = tar.getnames()
    assert "pypi/demo_app-0.3.0-py3-none-any.whl" in names and "pypi/extra_lib-1.1-py3-none-any.whl" in names
    assert any(n.startswith("channel/linux-64/python-") for n in names)
    unpack_and_import(pack, tmp_path / "deploy")

    # A wrong option type is one clear error, not a traceback.
    bad = hatch_build(project, tmp_path, 'create-executable = "yes"')
    assert bad.returncode != 0
    assert "option `create-executable` of [tool.hatch.build.targets.pixi-pack] must be true or false" in (
        bad.stdout + bad.stderr
    )


def test_wheel_hook_packs_only_when_enabled(
    tmp_path: Path, channel: DemoChannel, python_channel: Path, plugin_source: str
) -> None:
    project = make_hatch_project(tmp_path, channel, python_channel, plugin_source)
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", "dist"]
    env = hatch_env(tmp_path)

    off = subprocess.run([*build, "--wheel"], cwd=project, capture_output=True, text=True, env=env, timeout=600)
    assert off.returncode == 0, off.stderr[-3000:]
    assert sorted(p.name for p in (project / "dist").iterdir()) == ["demo_app-0.3.0-py3-none-any.whl"]

    # python -m build: sdist, then the wheel from the unpacked sdist, where the hook packs.
    on = subprocess.run(
        build, cwd=project, capture_output=True, text=True, env={**env, "PIXI_PACK_CI_PACK": "1"}, timeout=600
    )
    assert on.returncode == 0, on.stdout[-3000:] + on.stderr[-3000:]
    dist = sorted(p.name for p in (project / "dist").iterdir())
    assert dist == ["demo_app-0.3.0-hook-linux-64.tar", "demo_app-0.3.0-py3-none-any.whl", "demo_app-0.3.0.tar.gz"]
    pack = project / "dist" / "demo_app-0.3.0-hook-linux-64.tar"
    with tarfile.open(pack) as tar:
        wheel_in_pack = tar.extractfile("pypi/demo_app-0.3.0-py3-none-any.whl")
        assert wheel_in_pack is not None
        assert wheel_in_pack.read() == (project / "dist" / "demo_app-0.3.0-py3-none-any.whl").read_bytes()
    unpack_and_import(pack, tmp_path / "deploy")
    inspected = json.loads(run_cli("inspect", pack, "--json", check=True).stdout)
    assert inspected["platform"] == "linux-64"


def test_builder_and_hook_register_with_hatchling() -> None:
    from hatchling.plugin.manager import PluginManager
    from pixi_pack_ci.hatch_plugin.builder import PixiPackBuilder
    from pixi_pack_ci.hatch_plugin.hook import PixiPackBuildHook

    manager = PluginManager()
    assert manager.builder.get("pixi-pack") is PixiPackBuilder
    assert manager.build_hook.get("pixi-pack") is PixiPackBuildHook
    # Registering must stay cheap: hatchling imports every hatch plugin into every build.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, pixi_pack_ci.hatch_plugin.hooks; "
         "print(sorted(m for m in ('rattler', 'httpx', 'sigstore') if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]"


def test_hatch_builder_makes_an_image_of_the_pack(
    tmp_path: Path, channel: DemoChannel, python_channel: Path, plugin_source: str
) -> None:
    """With `image-base`, each pack also becomes an OCI image layout in dist/, holding the project's
    own wheel installed in the environment's site-packages, pushed to `image-push` (placeholders
    filled in) and signed with the packs' `sign-key`."""
    need("docker-registry", "skopeo")
    run_cli("keygen", "--output-prefix", tmp_path / "site", "--no-passphrase", check=True)
    project = make_hatch_project(tmp_path, channel, python_channel, plugin_source)
    with docker_registry(tmp_path / "registry") as registry:
        proc = hatch_build(
            project, tmp_path, 'image-base = "scratch"', 'image-entrypoint = "python3"',
            f'sign-key = "{tmp_path / "site.key"}"',
            f'image-push = ["{registry.host}/acme/{{environment}}-{{platform}}:{{version}}"]',
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        layout = project / "dist" / "demo_app-0.3.0-default-linux-64.oci"
        index = json.loads((layout / "index.json").read_text())
        (manifest_ref,) = index["manifests"]
        pushed = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/acme/default-linux-64:0.3.0"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert json.loads(pushed.stdout)["Digest"] == manifest_ref["digest"]
    bundle = layout.with_name(layout.name + ".sigstore.json")
    envelope = json.loads(bundle.read_text())["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert {s["digest"]["sha256"] for s in statement["subject"]} == {manifest_ref["digest"].split(":")[1]}
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / manifest_ref["digest"].split(":")[1]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_text())
    assert config["config"]["Entrypoint"] == ["python3"]
    names: list[str] = []
    for layer in manifest["layers"]:
        with tarfile.open(blobs / layer["digest"].split(":")[1]) as tar:
            names += tar.getnames()
    assert any(n.endswith(f"lib/python{PY}/site-packages/demo_app/__init__.py") for n in names), names[:20]
    # hatch clean removes the image with the packs.
    clean = subprocess.run([bin_tool("hatch"), "clean", "-t", "pixi-pack"], cwd=project, capture_output=True,
                           text=True, env=hatch_env(tmp_path), timeout=300)  # fmt: skip
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert not layout.exists() and not bundle.exists()


def test_hatch_refuses_two_images_pushed_to_one_reference(
    tmp_path: Path, channel: DemoChannel, python_channel: Path, plugin_source: str
) -> None:
    """Two environments, one `image-push` without `{environment}`: the second image would replace
    the first, so the build stops before packing anything."""
    project = make_hatch_project(tmp_path, channel, python_channel, plugin_source)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('environments = ["default"]', 'environments = ["default", "prod"]')
    )
    proc = hatch_build(
        project, tmp_path, 'image-base = "scratch"', 'image-push = ["127.0.0.1:5000/acme/app:{version}"]'
    )
    assert proc.returncode != 0
    assert (
        "option `image-push` sends the images of default/linux-64 and prod/linux-64 both to "
        "127.0.0.1:5000/acme/app:0.3.0: add {environment} or {platform} to it"
    ) in proc.stdout + proc.stderr
    assert not list((project / "dist").glob("*.tar")) and not list((project / "dist").glob("*.oci"))
