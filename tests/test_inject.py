"""--inject: local conda packages and wheels added to the pack, validated first."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from harness import DemoChannel, Project, assert_clean_error, pack_ok, run_cli
from support import PackageSpec, build_package, build_wheel, channel_records, write_lockfile


@pytest.fixture(scope="session")
def extra_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("inject")
    out = base / "out"
    specs = {
        "good": PackageSpec(
            "my-webserver", version="0.1.0", build="pyh4616a5c_0", subdir="noarch", depends=["libgreet >=1", "__unix"]
        ),
        "good-bz2": PackageSpec("my-tool", version="0.2.0", build="h0_0", archive="tar.bz2", depends=["hello-tool"]),
        "broken": PackageSpec(
            "my-webserver-broken", version="0.1.0", build="pyh4616a5c_0", subdir="noarch", depends=["fastapi >=0.112"]
        ),
        "replacement": PackageSpec("libgreet", version="1.3.0", build="h1234_0"),
        "conflicting": PackageSpec("strict", version="1.0", build="0", subdir="noarch", depends=["libgreet <1"]),
    }
    return {key: build_package(spec, out, base / "work") for key, spec in specs.items()}


def _names(pack: Path) -> list[str]:
    with tarfile.open(pack) as tar:
        return tar.getnames()


def test_inject_valid_conda_packages(project: Project, tmp_path: Path, extra_packages: dict[str, Path]) -> None:
    pack = tmp_path / "e.tar"
    pack_ok(project.dir, pack, "--inject", extra_packages["good"], "-i", extra_packages["good-bz2"])
    names = _names(pack)
    assert "channel/noarch/my-webserver-0.1.0-pyh4616a5c_0.conda" in names
    assert "channel/linux-64/my-tool-0.2.0-h0_0.tar.bz2" in names
    with tarfile.open(pack) as tar:
        repodata = json.loads(tar.extractfile("channel/noarch/repodata.json").read())  # type: ignore[union-attr]
        env_yml = tar.extractfile("environment.yml").read().decode()  # type: ignore[union-attr]
    record = repodata["packages.conda"]["my-webserver-0.1.0-pyh4616a5c_0.conda"]
    import hashlib

    assert record["sha256"] == hashlib.sha256(extra_packages["good"].read_bytes()).hexdigest()
    assert record["depends"] == ["libgreet >=1", "__unix"]
    assert env_yml.rstrip().splitlines()[-2:] == ["  - my-webserver=0.1.0=pyh4616a5c_0", "  - my-tool=0.2.0=h0_0"]
    run_cli("unpack", pack, "-o", tmp_path / "deploy", check=True)
    assert (tmp_path / "deploy/env/conda-meta/my-webserver-0.1.0-pyh4616a5c_0.json").is_file()


def test_inject_takes_several_files_per_flag(project: Project, tmp_path: Path, extra_packages: dict[str, Path]) -> None:
    # As pixi-pack: `-i a b`; the same pack as `-i a -i b`, and the manifest path is not swallowed
    # when it comes first.
    one_flag = tmp_path / "one.tar"
    run_cli(
        "pack", project.dir, "-p", "linux-64", "-o", one_flag, "-i", extra_packages["good"], extra_packages["good-bz2"],
        check=True,
    )  # fmt: skip
    repeated = tmp_path / "repeated.tar"
    pack_ok(project.dir, repeated, "-i", extra_packages["good"], "-i", extra_packages["good-bz2"])
    assert one_flag.read_bytes() == repeated.read_bytes()
    assert "channel/linux-64/my-tool-0.2.0-h0_0.tar.bz2" in _names(one_flag)
    assert "channel/noarch/my-webserver-0.1.0-pyh4616a5c_0.conda" in _names(one_flag)


def test_inject_broken_package_names_the_missing_dependency(
    project: Project, tmp_path: Path, extra_packages: dict[str, Path]
) -> None:
    line = assert_clean_error(
        run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "e.tar", "--inject", extra_packages["broken"]),
        code=1,
    )
    assert line == (
        "pixi-pack-ci: error: package 'my-webserver-broken=0.1.0=pyh4616a5c_0' has dependency "
        "'fastapi >=0.112', which is not in the environment"
    )
    assert sum(project.channel.server.requests.values()) == 0  # nothing downloaded
    assert not (tmp_path / "e.tar").exists()
    line = assert_clean_error(
        run_cli("pack", project.dir, "-p", "linux-64", "--dry-run", "--inject", extra_packages["conflicting"]), code=1
    )
    assert "package 'strict=1.0=0' has dependency 'libgreet <1'" in line


def test_inject_replaces_locked_package_and_says_so(
    project: Project, tmp_path: Path, extra_packages: dict[str, Path]
) -> None:
    proc = pack_ok(project.dir, tmp_path / "e.tar", "-i", extra_packages["replacement"])
    assert "injected libgreet=1.3.0=h1234_0 replaces locked libgreet=1.2.3=h1234_0" in proc.stderr.decode()
    names = _names(tmp_path / "e.tar")
    assert "channel/linux-64/libgreet-1.3.0-h1234_0.conda" in names
    assert "channel/linux-64/libgreet-1.2.3-h1234_0.conda" not in names
    assert project.channel.server.requests["/linux-64/libgreet-1.2.3-h1234_0.conda"] == 0


def test_inject_into_a_subdir_with_no_other_package(
    channel: DemoChannel, tmp_path: Path, extra_packages: dict[str, Path]
) -> None:
    records = channel_records(channel.path, channel.url)["linux-64"]
    lock = write_lockfile(tmp_path / "p" / "pixi.lock", {"default": {"linux-64": records}}, channel.url)
    pack = tmp_path / "e.tar"
    pack_ok(lock.parent, pack, "-i", extra_packages["good"])
    names = _names(pack)
    assert "channel/noarch" in names and "channel/noarch/repodata.json" in names
    run_cli("unpack", pack, "-o", tmp_path / "deploy", check=True)
    assert (tmp_path / "deploy/env/conda-meta/my-webserver-0.1.0-pyh4616a5c_0.json").is_file()


def test_inject_wheel(project: Project, tmp_path: Path) -> None:
    # the pack needs a python to put a wheel in; the demo env has none, so this must say so
    wheel = build_wheel(tmp_path / "w", "my-webserver-extra", "0.1.0", {"my_webserver_extra": ""})
    line = assert_clean_error(
        run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "e.tar", "-i", wheel), code=1
    )
    assert "has PyPI wheels but no python conda package" in line


def test_inject_bad_files(project: Project, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    line = assert_clean_error(run_cli("pack", project.dir, "-i", tmp_path / "notes.txt"), code=2)
    assert "only .conda, .tar.bz2 and .whl files can be injected" in line
    line = assert_clean_error(run_cli("pack", project.dir, "-i", tmp_path / "missing.conda"), code=2)
    assert "file to inject does not exist" in line
    (tmp_path / "fake-1.0-0.conda").write_bytes(b"not a zip")
    line = assert_clean_error(
        run_cli("pack", project.dir, "-p", "linux-64", "-i", tmp_path / "fake-1.0-0.conda"), code=1
    )
    assert "cannot read conda package" in line
