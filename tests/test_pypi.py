"""PyPI wheels: packed from index URLs, direct URLs and relative paths, verified, installed offline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import rattler
from harness import DemoChannel, assert_clean_error, pack_ok, run_cli
from support import add_pypi_hashes, build_wheel, channel_records

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def wheel_project(tmp_path: Path, channel: DemoChannel, python_channel: Path) -> tuple[Path, dict[str, Path]]:
    wheels_dir = channel.path / "pypi"
    alpha = build_wheel(
        wheels_dir / "files",
        "alpha-tool",
        "1.0",
        {"alpha_tool": "def main():\n    print('alpha ok')\n"},
        {"alpha-tool": "alpha_tool:main"},
    )
    beta = build_wheel(wheels_dir / "direct", "beta-lib", "2.0", {"beta_lib": "VALUE = 42\n"})
    project = tmp_path / "project"
    gamma = build_wheel(
        project / "wheels", "gamma", "0.1", {"gamma": "from beta_lib import VALUE\nDOUBLE = 2 * VALUE\n"}
    )
    conda = channel_records(channel.path, channel.url)
    py = channel_records(python_channel, channel.url + "py/")["linux-64"]
    lock = rattler.LockFile([rattler.LockPlatform("linux-64")])
    lock.set_channels("default", [rattler.LockChannel(channel.url)])
    for record in conda["linux-64"] + conda["noarch"] + py:
        lock.add_conda_package("default", rattler.LockPlatform("linux-64"), record)
    locations = {
        f"{channel.url}pypi/files/{alpha.name}": alpha,
        f"direct+{channel.url}pypi/direct/{beta.name}": beta,
        f"./wheels/{gamma.name}": gamma,
    }
    for location, wheel in locations.items():
        name, version = wheel.name.split("-")[:2]
        lock.add_pypi_package("default", rattler.LockPlatform("linux-64"), name, version, location)
    lock.to_path(project / "pixi.lock")
    add_pypi_hashes(
        project / "pixi.lock", {loc: hashlib.sha256(w.read_bytes()).hexdigest() for loc, w in locations.items()}
    )
    return project, {"alpha": alpha, "beta": beta, "gamma": gamma}


@pytest.mark.posix  # runs a console script by its shebang, and bash with a POSIX PATH
def test_wheels_pack_and_install(wheel_project: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    project, wheels = wheel_project
    cache = tmp_path / "cache"
    pack = tmp_path / "e.tar"
    pack_ok(project, pack, "--use-cache", cache)
    assert sorted(p.name for p in (cache / "pypi").iterdir()) == sorted(w.name for w in wheels.values())
    with tarfile.open(pack) as tar:
        names = tar.getnames()
        env_yml = tar.extractfile("environment.yml").read().decode()  # type: ignore[union-attr]
    expected = ["pypi", *sorted(f"pypi/{w.name}" for w in wheels.values())]
    assert sorted(n for n in names if n.startswith("pypi")) == expected
    assert "  - pip:\n    - --no-index\n    - --find-links ./pypi\n" in env_yml
    assert "    - alpha-tool==1.0\n" in env_yml and "    - gamma==0.1\n" in env_yml

    target = tmp_path / "deploy"
    run_cli("unpack", pack, "-o", target, check=True)
    prefix = target / "env"
    site = prefix / f"lib/python{PY}/site-packages"
    for dist in ("alpha_tool-1.0", "beta_lib-2.0", "gamma-0.1"):
        info = site / f"{dist}.dist-info"
        assert (info / "INSTALLER").read_text() == "pixi-pack-ci\n"
        record = (info / "RECORD").read_text()
        for line in record.splitlines():
            path, digest, _size = line.rsplit(",", 2)
            if digest:  # every recorded file exists with the recorded hash
                import base64

                data = (
                    (site / path).read_bytes() if not path.startswith("../") else (site / path).resolve().read_bytes()
                )
                algo, value = digest.split("=", 1)
                assert base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=").decode() == value, path
    # import with a Python pointed at the env's site-packages
    out = subprocess.run(
        [sys.executable, "-c", "import gamma, alpha_tool; print(gamma.DOUBLE)"],
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "84\n"
    # the console script points at the env's interpreter and runs
    script = prefix / "bin" / "alpha-tool"
    assert script.read_text().splitlines()[0] == f"#!{prefix}/bin/python{PY}"
    assert subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout == "alpha ok\n"
    activated = subprocess.run(
        ["bash", "-c", f"source {target}/activate.sh && alpha-tool"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert activated.stdout == "alpha ok\n"


@pytest.mark.posix  # packs are written in place only with positioned I/O (pwrite/preadv): not on Windows
def test_wheels_are_appended_to_a_pack_written_in_place(
    wheel_project: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    """Lockfiles give no wheel sizes, so wheels follow the packages' slots: the bytes are those of
    the streamed tar, without a cache, through a cold and a warm cache, and when a cached wheel
    went bad (it is checked while appended, dropped and downloaded again)."""
    project, wheels = wheel_project
    cache = tmp_path / "cache"
    streamed = run_cli("pack", project, "-p", "linux-64", "-o", "-", "-q", check=True).stdout
    for name, extra in [("direct", []), ("cold", ["--use-cache", cache]), ("warm", ["--use-cache", cache])]:
        err = pack_ok(project, tmp_path / f"{name}.tar", *extra, "-v").stderr.decode()
        assert ("in place" in err) == (name != "warm"), err
        assert (tmp_path / f"{name}.tar").read_bytes() == streamed, name
    cached = cache / "pypi" / wheels["beta"].name
    (cache / ".verified" / "pypi" / cached.name).unlink()
    cached.write_bytes(cached.read_bytes()[:-1] + b"!")
    err = pack_ok(project, tmp_path / "mended.tar", "--use-cache", cache, "-v").stderr.decode()
    assert f"cached {cached.name} does not match the lockfile" in err, err
    assert (tmp_path / "mended.tar").read_bytes() == streamed
    assert cached.read_bytes() == wheels["beta"].read_bytes()


def test_wheel_with_wrong_hash_fails_and_leaves_nothing(
    wheel_project: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    project, wheels = wheel_project
    lock = project / "pixi.lock"
    good = hashlib.sha256(wheels["beta"].read_bytes()).hexdigest()
    lock.write_text(lock.read_text().replace(good, "f" * 64))
    out = tmp_path / "out"
    out.mkdir()
    line = assert_clean_error(run_cli("pack", project, "-p", "linux-64", "-o", out / "e.tar"), code=1)
    assert f"checksum mismatch for {wheels['beta'].name}" in line
    assert list(out.iterdir()) == []


def test_sdist_is_built_refused_or_left_out(wheel_project: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    # Building is tested in test_pypi_build.py; here the sdist is missing, so the build cannot start.
    project, _ = wheel_project
    lock = project / "pixi.lock"
    text = lock.read_text().replace(
        "      - pypi: ./wheels/", "      - pypi: ./sdists/delta-3.0.tar.gz\n      - pypi: ./wheels/"
    )
    text += "- pypi: ./sdists/delta-3.0.tar.gz\n  name: delta\n  version: '3.0'\n"
    lock.write_text(text)
    line = assert_clean_error(run_cli("pack", project, "-p", "linux-64", "-o", tmp_path / "e.tar"), code=1)
    assert f"the locked sdist {project / 'sdists' / 'delta-3.0.tar.gz'} does not exist" in line
    line = assert_clean_error(run_cli("pack", project, "-p", "linux-64", "-o", tmp_path / "e.tar", "--no-build"))
    assert "PyPI package delta is not a wheel" in line and "--ignore-pypi-non-wheel" in line
    assert not (tmp_path / "e.tar").exists()
    proc = pack_ok(project, tmp_path / "e.tar", "--ignore-pypi-non-wheel")
    assert "skipped PyPI package delta 3.0: not a wheel" in proc.stderr.decode()
    data = json.loads(run_cli("inspect", tmp_path / "e.tar", "--json", check=True).stdout)
    assert not any("delta" in p["file_name"] for p in data["packages"])


def test_wheel_that_does_not_fit_is_refused_at_pack_time(
    wheel_project: tuple[Path, dict[str, Path]], tmp_path: Path, channel: DemoChannel
) -> None:
    project, _ = wheel_project
    other = build_wheel(channel.path / "pypi" / "files", "winonly", "1.0", {"winonly": ""}, tag="cp311-cp311-win_amd64")
    lock = project / "pixi.lock"
    loc = f"{channel.url}pypi/files/{other.name}"
    text = lock.read_text().replace("      - pypi: ./wheels/", f"      - pypi: {loc}\n      - pypi: ./wheels/")
    text += f"- pypi: {loc}\n  name: winonly\n  version: '1.0'\n"
    lock.write_text(text)
    line = assert_clean_error(run_cli("pack", project, "-p", "linux-64", "-o", tmp_path / "e.tar"), code=1)
    assert f"wheel {other.name} does not fit the environment's Python {PY} on linux-64" in line
    assert sum(channel.server.requests.values()) == 0  # refused before any download


def test_inject_wheel(wheel_project: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    project, _ = wheel_project
    extra = build_wheel(tmp_path / "w", "delta-extra", "0.3", {"delta_extra": "NAME = 'delta'\n"})
    pack = tmp_path / "e.tar"
    proc = pack_ok(project, pack, "-i", extra)
    assert f"dependencies of injected wheel {extra.name} were not checked" in proc.stderr.decode()
    with tarfile.open(pack) as tar:
        assert f"pypi/{extra.name}" in tar.getnames()
        assert "    - delta-extra==0.3\n" in tar.extractfile("environment.yml").read().decode()  # type: ignore[union-attr]
    run_cli("unpack", pack, "-o", tmp_path / "deploy", check=True)
    assert (tmp_path / f"deploy/env/lib/python{PY}/site-packages/delta_extra.py").is_file()

    clash = build_wheel(tmp_path / "w", "libgreet", "9.0", {"libgreet": ""})
    line = assert_clean_error(run_cli("pack", project, "-p", "linux-64", "-o", tmp_path / "c.tar", "-i", clash), code=1)
    assert f"injected wheel {clash.name} clashes with conda package libgreet=1.2.3=h1234_0" in line
    wrong = build_wheel(tmp_path / "w", "winwheel", "1.0", {"winwheel": ""}, tag="cp311-cp311-win_amd64")
    line = assert_clean_error(run_cli("pack", project, "-p", "linux-64", "-o", tmp_path / "d.tar", "-i", wrong), code=1)
    assert f"wheel {wrong.name} does not fit" in line
