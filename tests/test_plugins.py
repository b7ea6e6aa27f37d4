"""The hook API, proven with a third-party plugin installed through a ``pixi_pack_ci`` entry point."""

from __future__ import annotations

import json
import os
import tarfile
import textwrap
from pathlib import Path

import pytest
from harness import Project, run_cli

PLUGIN = """
import json, os, shutil
from pathlib import Path
from pixi_pack_ci.core import hookimpl

def _log(event, **data):
    with open(os.environ["DEMO_LOG"], "a") as fh:
        fh.write(json.dumps({"event": event, **data}) + "\\n")

@hookimpl
def pixi_pack_ci_add_arguments(parser, command):
    if command == "pack":
        parser.add_argument("--demo-drop", action="append", default=[])

@hookimpl
def pixi_pack_ci_add_commands(subparsers):
    p = subparsers.add_parser("demo-hello")
    p.set_defaults(handler=lambda args: print("hello from demo") or 0)

@hookimpl
def pixi_pack_ci_modify_plan(plan, options):
    drop = set(options.args.demo_drop)
    plan.conda = [a for a in plan.conda if a.name not in drop]
    if drop:
        plan.notes.append(f"demo dropped {sorted(drop)}")
    _log("plan", environment=plan.environment, platform=plan.platform, count=len(plan.conda))

@hookimpl(tryfirst=True)
def pixi_pack_ci_fetch_artifact(artifact, destination, context, attempt):
    if artifact.name != "pkg01":
        return None
    shutil.copyfile(Path(os.environ["DEMO_CHANNEL"]) / artifact.subdir / artifact.file_name, destination)
    _log("fetch", name=artifact.name)
    return True

@hookimpl
def pixi_pack_ci_packs_written(packs, options):
    _log("written", packs=[{"path": str(p.path), "sha256": p.sha256, "size": p.size,
                            "environment": p.environment, "platform": p.platform,
                            "names": [x["name"] for x in p.packages]} for p in packs])

@hookimpl
def pixi_pack_ci_unpacked(result, options):
    _log("unpacked", prefix=str(result.prefix), packages=len(result.packages))

@hookimpl
def pixi_pack_ci_error(error, command):
    _log("error", message=str(error), command=command, file=error.file)
"""


def _install_plugin(site: Path, name: str, module: str, source: str) -> None:
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pixi_pack_ci]\n{name} = {module}\n")


@pytest.fixture
def plugin_env(tmp_path: Path, project: Project) -> dict[str, str]:
    site = tmp_path / "site"
    _install_plugin(site, "demo", "demo_plugin", PLUGIN)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "DEMO_LOG": str(tmp_path / "log.jsonl"), "DEMO_CHANNEL": str(project.channel.path)}


def _events(env: dict[str, str]) -> list[dict]:  # type: ignore[type-arg]
    path = Path(env["DEMO_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_plugin_hooks_through_entry_point(project: Project, tmp_path: Path, plugin_env: dict[str, str]) -> None:
    pack = tmp_path / "e.tar"
    proc = run_cli(
        "pack", project.dir, "-p", "linux-64", "-o", pack, "--demo-drop", "pkg12", env=plugin_env, check=True
    )
    assert "demo dropped ['pkg12']" in proc.stderr.decode()
    events = _events(plugin_env)
    assert [e["event"] for e in events] == ["plan", "fetch", "written"]
    assert events[0]["count"] == len(project.linux_packages) - 1
    # the fetch hook served pkg01; the built-in HTTP fetcher never asked the server for it
    assert project.channel.server.requests["/linux-64/pkg01-0.1-h0001_0.conda"] == 0
    written = events[2]["packs"][0]
    assert written["path"] == str(pack) and written["size"] == pack.stat().st_size
    import hashlib

    assert written["sha256"] == hashlib.sha256(pack.read_bytes()).hexdigest()
    assert "pkg12" not in written["names"] and "pkg01" in written["names"]
    with tarfile.open(pack) as tar:
        assert not any("pkg12" in n for n in tar.getnames())

    run_cli("unpack", pack, "-o", tmp_path / "deploy", env=plugin_env, check=True)
    assert _events(plugin_env)[-1] == {
        "event": "unpacked",
        "prefix": str(tmp_path / "deploy" / "env"),
        "packages": len(project.linux_packages) - 1,
    }
    assert run_cli("demo-hello", env=plugin_env, check=True).stdout == b"hello from demo\n"


def test_plugin_sees_errors(project: Project, plugin_env: dict[str, str]) -> None:
    proc = run_cli("pack", project.dir, "-e", "nope", env=plugin_env)
    assert proc.returncode == 2
    (event,) = _events(plugin_env)
    assert event["event"] == "error" and event["command"] == "pack" and event["file"].endswith("pixi.lock")


def test_dry_run_applies_plan_hooks_without_downloading(project: Project, plugin_env: dict[str, str]) -> None:
    proc = run_cli(
        "pack", project.dir, "-p", "linux-64", "--dry-run", "--json", "--demo-drop", "pkg02", env=plugin_env, check=True
    )
    data = json.loads(proc.stdout)
    names = {p["name"] for p in data["packs"][0]["packages"]}
    assert "pkg02" not in names and "hello-tool" in names
    assert sum(project.channel.server.requests.values()) == 0
    assert [e["event"] for e in _events(plugin_env)] == ["plan"]


def test_broken_plugin_is_reported_not_fatal(project: Project, tmp_path: Path, plugin_env: dict[str, str]) -> None:
    site = Path(plugin_env["PYTHONPATH"].split(os.pathsep)[0])
    _install_plugin(site, "broken", "broken_plugin", "raise ImportError('missing dependency xyz')\n")
    proc = run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "e.tar", env=plugin_env, check=True)
    err = proc.stderr.decode()
    assert "plugin 'broken' could not be loaded and is skipped (ImportError: missing dependency xyz)" in err
    assert "Traceback" not in err
    assert (tmp_path / "e.tar").is_file()
    assert [e["event"] for e in _events(plugin_env)] == ["plan", "fetch", "written"]


def test_plugin_can_be_blocked(project: Project, tmp_path: Path, plugin_env: dict[str, str]) -> None:
    run_cli(
        "pack",
        project.dir,
        "-p",
        "linux-64",
        "-o",
        tmp_path / "a.tar",
        env={**plugin_env, "PIXI_PACK_CI_DISABLE_PLUGINS": "demo"},
        check=True,
    )
    run_cli(
        "--disable-plugin",
        "demo",
        "pack",
        project.dir,
        "-p",
        "linux-64",
        "-o",
        tmp_path / "b.tar",
        env=plugin_env,
        check=True,
    )
    assert _events(plugin_env) == []
    assert project.channel.server.requests["/linux-64/pkg01-0.1-h0001_0.conda"] == 2


def test_hookspecs_are_documented() -> None:
    from pixi_pack_ci.core import hookspecs

    specs = [name for name in dir(hookspecs) if name.startswith("pixi_pack_ci_")]
    assert len(specs) >= 6
    for name in specs:
        doc = textwrap.dedent(getattr(hookspecs, name).__doc__ or "")
        assert "Called" in doc or "called" in doc, name


MISSPELLED = """
from pixi_pack_ci.core import hookimpl

@hookimpl
def pixi_pack_ci_modify_plans(plan, options):  # one letter off pixi_pack_ci_modify_plan
    raise AssertionError("never called")
"""

MIRROR_FETCHER = """
import os, shutil
from pathlib import Path
from pixi_pack_ci.core import hookimpl

@hookimpl
def pixi_pack_ci_fetch_artifact(artifact, destination, context, attempt, url):
    if not url.startswith("demo://"):
        return None
    with open(os.environ["DEMO_LOG"], "a") as fh:
        fh.write(url + "\\n")
    shutil.copyfile(Path(os.environ["DEMO_CHANNEL"]) / url[len("demo://mirror/"):], destination)
    return True
"""


def test_misspelled_hook_fails_its_plugin_at_load_and_plugins_lists_why(
    project: Project, tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    _install_plugin(tmp_path / "site", "typo", "typo_plugin", MISSPELLED)
    env = {**plugin_env, "PIXI_PACK_CI_DISABLE_PLUGINS": "gitlab"}
    proc = run_cli("plugins", "--json", env=env, check=True)
    states = {p["name"]: (p["state"], p["detail"]) for p in json.loads(proc.stdout)}
    assert states["typo"][0] == "failed" and "pixi_pack_ci_modify_plans" in states["typo"][1]
    assert states["demo"] == ("loaded", "demo_plugin")
    assert states["gitlab"][0] == "blocked" and states["http"] == ("loaded", "built-in")
    # The run goes on without it, and says so once.
    packed = run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "e.tar", env=env, check=True)
    assert packed.stderr.decode().count("plugin 'typo' could not be loaded") == 1


def test_core_applies_mirrors_for_a_plugin_fetcher(
    project: Project, tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    # The plugin only knows demo:// URLs; the config mirrors the channel there, and the core hands
    # the plugin each attempt's mirrored URL.
    _install_plugin(tmp_path / "site", "mirror", "mirror_plugin", MIRROR_FETCHER)
    config = tmp_path / "config.toml"
    config.write_text(f'[mirrors]\n"{project.channel.url}" = ["demo://mirror/"]\n')
    env = {**plugin_env, "PIXI_PACK_CI_DISABLE_PLUGINS": "demo"}
    pack = tmp_path / "e.tar"
    run_cli("pack", project.dir, "-p", "linux-64", "-o", pack, "-c", config, env=env, check=True)
    urls = Path(env["DEMO_LOG"]).read_text().splitlines()
    assert len(urls) == len(project.linux_packages) and all(u.startswith("demo://mirror/") for u in urls)
    assert sum(project.channel.server.requests.values()) == 0
