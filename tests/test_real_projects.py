"""What real pixi projects hold and our own fixtures did not: the project itself as a ``pypi: .``
entry, v7 platform names that are not subdirs, empty environments. Lockfiles are written as pixi
writes them (``support.write_pixi_lock``) or read from ``../shared/reference/realworld-lockfiles``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import rattler
from harness import PY, DemoChannel, assert_clean_error, pack_ok, run_cli
from support import LockedPypi, build_wheel, channel_records, write_pixi_lock

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "realworld-lockfiles"


def _pack_names(pack: Path) -> list[str]:
    with tarfile.open(pack) as tar:
        return tar.getnames()


def _metadata(pack: Path) -> dict[str, str]:
    with tarfile.open(pack) as tar:
        member = tar.extractfile("pixi-pack.json")
        assert member is not None
        return json.loads(member.read())  # type: ignore[no-any-return]


# --- the project itself as a PyPI path entry -------------------------------------------------


@pytest.fixture
def self_project(tmp_path: Path, channel: DemoChannel, python_channel: Path) -> tuple[Path, Path, DemoChannel]:
    """A project whose lockfile holds python, one wheel from an index and, as pixi writes it for
    ``pixi init --format pyproject``, the project itself (``pypi: .``) and a local sub-package."""
    extra = build_wheel(channel.path / "pypi" / "self", "extra-lib", "1.1", {"extra_lib": "EXTRA = 'extra'\n"})
    built = build_wheel(
        tmp_path / "dist", "demo-app", "0.3.0", {"demo_app": "from extra_lib import EXTRA\nGREETING = 'hi ' + EXTRA\n"}
    )
    project = tmp_path / "demo-app"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "demo-app"\nversion = "0.3.0"\n')
    conda = channel_records(channel.path, channel.url)
    py = channel_records(python_channel, channel.url + "py/")["linux-64"]
    wheel = LockedPypi(
        f"{channel.url}pypi/self/{extra.name}", "extra-lib", "1.1", hashlib.sha256(extra.read_bytes()).hexdigest()
    )
    write_pixi_lock(
        project / "pixi.lock",
        7,
        channel.url,
        {"linux-64": conda["noarch"] + py},
        {"linux-64": [wheel, LockedPypi(".", "demo-app", editable=True)]},
    )
    return project, built, channel


def test_injected_wheel_replaces_the_locked_project_entry_and_says_so(
    self_project: tuple[Path, Path, DemoChannel], tmp_path: Path
) -> None:
    project, built, _ = self_project
    # With --no-build and without the wheel, the entry stops the pack and the hint names the way out
    # (without --no-build it would be built: test_pypi_build.py).
    line = assert_clean_error(
        run_cli("pack", project, "-p", "linux-64", "-o", tmp_path / "no.tar", "--no-build"), code=1
    )
    assert "PyPI package demo-app is not a wheel (.)" in line and "--inject" in line
    assert not (tmp_path / "no.tar").exists()

    pack = tmp_path / "app.tar"
    proc = pack_ok(project, pack, "-i", built)
    assert "injected wheel demo-app==0.3.0 replaces locked demo-app (.)" in proc.stderr.decode()
    names = _pack_names(pack)
    assert sorted(n for n in names if n.startswith("pypi/")) == [
        "pypi/demo_app-0.3.0-py3-none-any.whl",
        "pypi/extra_lib-1.1-py3-none-any.whl",
    ]
    target = tmp_path / "deploy"
    run_cli("unpack", pack, "-o", target, check=True)
    python = target / "env" / "bin" / f"python{PY}"
    out = subprocess.run(
        [str(python), "-c", "import demo_app; print(demo_app.GREETING, demo_app.__file__)"],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, check=True,
    ).stdout.split()  # fmt: skip
    assert out[:2] == ["hi", "extra"]
    assert Path(out[2]).is_relative_to(target / "env" / "lib" / f"python{PY}" / "site-packages")


def test_other_path_entries_follow_no_build_and_ignore_pypi_non_wheel(
    self_project: tuple[Path, Path, DemoChannel], tmp_path: Path
) -> None:
    project, built, _ = self_project
    lock = project / "pixi.lock"
    text = lock.read_text()
    # A local sub-package beside the project itself, as `pixi add --pypi --editable ./libs/sub` locks it.
    text = text.replace("      - pypi: .\n", "      - pypi: .\n      - pypi: ./libs/sub\n")
    text += "- pypi: ./libs/sub\n  name: sub-lib\n  requires_python: '>=3.8'\n"
    lock.write_text(text)
    no_build = run_cli("pack", project, "-p", "linux-64", "-o", tmp_path / "x.tar", "--no-build", "-i", built)
    assert "PyPI package sub-lib is not a wheel (./libs/sub)" in assert_clean_error(no_build)
    pack = tmp_path / "ok.tar"
    proc = pack_ok(project, pack, "-i", built, "--ignore-pypi-non-wheel")
    assert "skipped PyPI package sub-lib: not a wheel (./libs/sub)" in proc.stderr.decode()
    assert "pypi/demo_app-0.3.0-py3-none-any.whl" in _pack_names(pack)


# --- lockfile v7 platform names --------------------------------------------------------------


def _named_platforms_lock(directory: Path, channel: DemoChannel, names: dict[str, str]) -> Path:
    """A v7 lockfile whose platforms are ``names`` (name → subdir); each gets the linux-64 and
    noarch packages, and a name other than its subdir gets hello-tool's dependencies only (as a
    platform with its own virtual packages would resolve differently)."""
    records = channel_records(channel.path, channel.url)
    full = records["linux-64"] + records["noarch"]
    small = [r for r in full if r.name.normalized in ("hello-tool", "libgreet")]
    conda = {name: (full if name == subdir else small) for name, subdir in names.items()}
    subdirs = {name: subdir for name, subdir in names.items() if name != subdir}
    return write_pixi_lock(directory / "pixi.lock", 7, channel.url, conda, platform_subdirs=subdirs)


def test_v7_platform_names_pack_for_their_subdir(channel: DemoChannel, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    lock = _named_platforms_lock(project, channel, {"linux-64": "linux-64", "linux-64-cuda": "linux-64"})
    assert "- name: linux-64-cuda\n  subdir: linux-64\n" in lock.read_text()

    pack = tmp_path / "cuda.tar"
    pack_ok(project, pack, platform="linux-64-cuda")
    assert _metadata(pack)["platform"] == "linux-64"
    assert sorted(n.rsplit("/", 1)[-1].split("-")[0] for n in _pack_names(pack) if n.endswith(".conda")) == [
        "hello", "libgreet",
    ]  # fmt: skip

    # Two names on one subdir: two packs with distinct default names.
    out = tmp_path / "packs"
    proc = run_cli("pack", project, "-p", "linux-64", "-p", "linux-64-cuda", "--output-dir", out, "--json", check=True)
    packs = json.loads(proc.stdout)["packs"]
    assert sorted(Path(p["path"]).name for p in packs) == ["default-linux-64-cuda.tar", "default-linux-64.tar"]
    assert {p["platform_name"]: p["platform"] for p in packs} == {"linux-64": "linux-64", "linux-64-cuda": "linux-64"}
    assert (out / "default-linux-64-cuda.tar").read_bytes() == pack.read_bytes()

    line = assert_clean_error(run_cli("pack", project, "-p", "linux-64-rocm"), code=2)
    assert "platform 'linux-64-rocm' not found" in line and "linux-64, linux-64-cuda (linux-64)" in line


def test_subdir_picks_the_one_platform_name_on_it(channel: DemoChannel, tmp_path: Path) -> None:
    one = tmp_path / "one"
    _named_platforms_lock(one, channel, {"p1": "linux-64"})
    pack = tmp_path / "p1.tar"
    pack_ok(one, pack, platform="linux-64")
    assert _metadata(pack)["platform"] == "linux-64"
    assert run_cli("pack", one, "-p", "linux-64", "--dry-run", "--json", check=True).stdout.count(b'"p1"') == 1

    two = tmp_path / "two"
    _named_platforms_lock(two, channel, {"p1": "linux-64", "p2": "linux-64"})
    line = assert_clean_error(run_cli("pack", two, "-p", "linux-64", "-o", tmp_path / "x.tar"), code=2)
    assert "'linux-64' is ambiguous" in line and "p1, p2" in line
    assert not (tmp_path / "x.tar").exists()


def test_realworld_platform_names_plan(tmp_path: Path) -> None:
    # robotology-superbuild's lockfile names p1 (linux-64) and p2 (linux-aarch64) beside the subdirs.
    lock = REALWORLD / "robotology__robotology-superbuild" / "pixi.lock"
    assert lock.is_file(), "../shared/reference/realworld-lockfiles is part of the test data"
    env = rattler.LockFile.from_path(lock).environment("default")
    assert env is not None
    assert {"p1", "p2"} <= {p.name for p in env.platforms()}
    project = tmp_path / "robotology"
    project.mkdir()
    (project / "pixi.lock").write_bytes(lock.read_bytes())
    for name in ("p1", "p2"):
        proc = run_cli("pack", project, "-p", name, "--dry-run", "--json", check=True)
        plan = json.loads(proc.stdout)["packs"][0]
        assert plan["platform_name"] == name
        assert plan["platform"] == {"p1": "linux-64", "p2": "linux-aarch64"}[name]
        assert plan["packages"], "a real environment has packages"


# --- empty environments ----------------------------------------------------------------------


def _empty_lock(directory: Path, version: int) -> Path:
    """An environment with no packages, as pixi writes it: v7 lists the workspace's platforms,
    v6 has nothing but the channel."""
    directory.mkdir(parents=True)
    platforms = "platforms:\n- name: linux-64\n- name: win-64\n" if version >= 7 else ""
    text = (
        f"version: {version}\n{platforms}environments:\n  default:\n    channels:\n"
        "    - url: https://conda.anaconda.org/conda-forge/\n    packages: {}\npackages: []\n"
    )
    (directory / "pixi.lock").write_text(text)
    return directory


@pytest.mark.parametrize("version", [6, 7])
def test_empty_environment_packs_and_unpacks(version: int, tmp_path: Path) -> None:
    project = _empty_lock(tmp_path / "empty", version)
    pack = tmp_path / "empty.tar"
    proc = pack_ok(project, pack, "--json")
    assert json.loads(proc.stdout)["packs"][0]["package_count"] == 0
    assert _pack_names(pack) == ["channel", "environment.yml", "pixi-pack.json"]
    inspected = json.loads(run_cli("inspect", pack, "--json", check=True).stdout)
    assert inspected["platform"] == "linux-64" and inspected["packages"] == []

    target = tmp_path / "deploy"
    run_cli("unpack", pack, "-o", target, check=True)
    assert (target / "env" / "conda-meta").is_dir()
    assert not list((target / "env" / "conda-meta").glob("*.json"))
    prefix = subprocess.run(
        ["bash", "-c", f'source "{target / "activate.sh"}" && echo "$CONDA_PREFIX"'],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert prefix == str(target / "env")
    if version >= 7:  # v7 declares the platforms; v6 holds none, so any platform is the same empty one
        line = assert_clean_error(run_cli("pack", project, "-p", "osx-arm64"), code=2)
        assert "platform 'osx-arm64' not found" in line and "linux-64, win-64" in line
    else:
        pack_ok(project, tmp_path / "osx.tar", platform="osx-arm64")
