"""Self-extracting packs: structure, streaming extraction, truncation, platform checks, reproducibility."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from harness import DemoChannel, Project, assert_clean_error, pack_ok, run_cli
from support import PackageSpec, build_channel, channel_records, write_lockfile


@pytest.fixture(scope="session")
def stand_in_unpacker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stands in for the pixi-unpack binary: forwards to ``pixi-pack-ci unpack`` with the same options."""
    path = tmp_path_factory.mktemp("unpacker") / "pixi-unpack"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pixi_pack_ci.core unpack "$@"\n')
    path.chmod(0o755)
    return path


def _pack_exe(
    project: Project, output: Path, unpacker: Path | str, *extra: str | Path, platform: str = "linux-64"
) -> None:
    pack_ok(project.dir, output, "--create-executable", "--pixi-unpack-source", unpacker, *extra, platform=platform)


def _header_numbers(data: bytes) -> dict[str, int]:
    text = data[:8192].decode("utf-8", errors="replace")
    return {
        k: int(v)
        for k, v in re.findall(r"^\$?(\w+_BYTES|\w+Bytes|\w+Raw)\s*=\s*(?:\[long\])?\"?(\d{20})\"?", text, re.M)
    }


@pytest.mark.posix  # the executable bit, and a script run by its shebang
def test_sh_structure_and_run(project: Project, tmp_path: Path, stand_in_unpacker: Path) -> None:
    out = tmp_path / "env.tar"  # the extension is replaced by .sh, as pixi-pack does
    _pack_exe(project, out, stand_in_unpacker)
    script = tmp_path / "env.sh"
    assert script.is_file() and not out.exists() and os.access(script, os.X_OK)
    data = script.read_bytes()
    assert data.startswith(b"#!/usr/bin/env bash\n") and b"\r\n" not in data[:4096]
    nums = _header_numbers(data)
    header, unpacker, archive = nums["HEADER_BYTES"], nums["UNPACKER_BYTES"], nums["ARCHIVE_BYTES"]
    assert len(data) == header + unpacker + archive
    assert data[header : header + unpacker] == stand_in_unpacker.read_bytes()
    # the archive is raw bytes (no base64), identical to the plain tar of the same inputs
    pack_ok(project.dir, tmp_path / "plain.tar")
    assert data[header + unpacker :] == (tmp_path / "plain.tar").read_bytes()

    proc = subprocess.run(["bash", str(script), "-o", str(tmp_path / "deploy"), "-e", "app"], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "deploy/app/bin/hello-tool").exists() and (tmp_path / "deploy/activate.sh").exists()
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "-o, --output-directory" in proc.stdout
    leftovers = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("pixi-pack-ci.*")]
    assert not leftovers


def test_truncated_executable_fails_clearly(project: Project, tmp_path: Path, stand_in_unpacker: Path) -> None:
    _pack_exe(project, tmp_path / "env.sh", stand_in_unpacker)
    data = (tmp_path / "env.sh").read_bytes()
    (tmp_path / "cut.sh").write_bytes(data[:-1])
    proc = subprocess.run(
        ["bash", str(tmp_path / "cut.sh"), "-o", str(tmp_path / "deploy")],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 1
    assert f"is incomplete or damaged ({len(data) - 1} of {len(data)} bytes)" in proc.stderr
    assert not (tmp_path / "deploy").exists()
    assert not list(tmp_path.glob("pixi-pack-ci.*"))


@pytest.mark.posix  # the .sh runs the unpacker by its executable bit and shebang
def test_wrong_platform_and_failed_unpack_clean_up(project: Project, tmp_path: Path, stand_in_unpacker: Path) -> None:
    _pack_exe(project, tmp_path / "mac.sh", stand_in_unpacker, platform="osx-arm64")
    proc = subprocess.run(["bash", str(tmp_path / "mac.sh")], capture_output=True, text=True)
    assert proc.returncode == 1 and "this pack is for osx-arm64, but this machine is linux-64" in proc.stderr
    # an unpacker failure (existing target) is reported and the temp folder is removed
    _pack_exe(project, tmp_path / "env.sh", stand_in_unpacker)
    (tmp_path / "deploy" / "env").mkdir(parents=True)
    (tmp_path / "deploy" / "env" / "x").write_text("x")
    proc = subprocess.run(
        ["bash", str(tmp_path / "env.sh"), "-o", str(tmp_path / "deploy")],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 1 and "already exists" in proc.stderr and "ERROR: unpacking failed" in proc.stderr
    assert not list(tmp_path.glob("pixi-pack-ci.*"))


@pytest.mark.posix  # a POSIX PATH; the unpacker runs by its executable bit and shebang
def test_no_embedded_unpacker_uses_path(project: Project, tmp_path: Path, stand_in_unpacker: Path) -> None:
    _pack_exe(project, tmp_path / "env.sh", "none")
    nums = _header_numbers((tmp_path / "env.sh").read_bytes())
    assert nums["UNPACKER_BYTES"] == 0
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(tmp_path / "env.sh")], capture_output=True, text=True, env=bare)
    assert proc.returncode == 1 and "no unpacker inside and none is on PATH" in proc.stderr
    proc = subprocess.run(
        ["bash", str(tmp_path / "env.sh"), "-o", str(tmp_path / "deploy")],
        capture_output=True,
        text=True,
        env={**bare, "PATH": f"{stand_in_unpacker.parent}:/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "deploy/env/bin/hello-tool").exists()


def test_executables_are_reproducible(project: Project, tmp_path: Path, stand_in_unpacker: Path) -> None:
    for name in ("a", "b"):
        _pack_exe(project, tmp_path / name / "env.sh", stand_in_unpacker)
    assert (tmp_path / "a/env.sh").read_bytes() == (tmp_path / "b/env.sh").read_bytes()


def test_ps1_structure(project: Project, tmp_path: Path, stand_in_unpacker: Path) -> None:
    fake_exe = tmp_path / "pixi-unpack.exe"
    fake_exe.write_bytes(b"MZ" + os.urandom(5000))
    _pack_exe(project, tmp_path / "win", fake_exe, platform="win-64")
    script = tmp_path / "win.ps1"
    data = script.read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    nums = _header_numbers(data)
    header, unpacker, archive, trailer = (
        nums["HeaderBytes"],
        nums["UnpackerBytes"],
        nums["ArchiveBytes"],
        nums["TrailerBytes"],
    )
    assert len(data) == header + unpacker + archive + trailer
    assert data[:header].endswith(b"<#\r\n") and data[-trailer:] == b"#>\r\n"
    assert b"#>" not in data[header : header + unpacker + archive]  # the payload cannot end the comment early
    assert base64.b64decode(data[header : header + unpacker]) == fake_exe.read_bytes()
    assert nums["UnpackerRaw"] == fake_exe.stat().st_size
    tar_bytes = base64.b64decode(data[header + unpacker : header + unpacker + archive])
    assert len(tar_bytes) == nums["ArchiveRaw"]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        assert "channel/win-64/winpkg-1.0-0.conda" in tar.getnames()
    for line in data[header : header + unpacker + archive].split(b"\r\n")[:-1]:
        assert len(line) <= 76
    text = data[:header].decode()
    assert '$PackPlatform = "win-64"' in text and "FromBase64Transform" in text and "Remove-Item -Recurse" in text


def test_executable_flag_errors(project: Project, tmp_path: Path) -> None:
    line = assert_clean_error(run_cli("pack", project.dir, "--create-executable", "--directory-only"), code=2)
    assert "cannot be combined" in line
    line = assert_clean_error(run_cli("pack", project.dir, "--pixi-unpack-source", "x"), code=2)
    assert "needs --create-executable" in line
    line = assert_clean_error(
        run_cli(
            "pack",
            project.dir,
            "-p",
            "linux-64",
            "--create-executable",
            "--pixi-unpack-source",
            tmp_path / "missing",
            "-o",
            tmp_path / "e.sh",
        ),
        code=2,
    )
    assert "unpacker to embed does not exist" in line
    assert not (tmp_path / "e.sh").exists()


@pytest.mark.posix  # the resource module
def test_big_pack_unpacks_with_flat_memory(channel: DemoChannel, tmp_path: Path, stand_in_unpacker: Path) -> None:
    """A pack of more than 200 MB unpacks from the .sh with a peak RSS under 100 MB in every process."""
    big = tmp_path / "big-channel"
    specs = [
        PackageSpec(f"blob{i}", files={f"share/blob{i}/readme.txt": "blob\n"}, payload_size=70 * 1024 * 1024)
        for i in range(3)
    ]
    build_channel(big, specs, tmp_path / "work")
    records = channel_records(big, big.as_uri() + "/")
    lock = write_lockfile(tmp_path / "p" / "pixi.lock", {"default": {"linux-64": records["linux-64"]}}, big.as_uri())
    script = tmp_path / "big.sh"
    pack_ok(lock.parent, script, "--create-executable", "--pixi-unpack-source", stand_in_unpacker)
    assert script.stat().st_size > 200 * 1024 * 1024
    measure = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(r.returncode)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", measure, "bash", str(script), "-o", str(tmp_path / "deploy"), "-q"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    peak_kib = int(proc.stdout.strip().splitlines()[-1])
    print(f"peak RSS while unpacking {script.stat().st_size >> 20} MiB: {peak_kib >> 10} MiB")
    assert peak_kib < 100 * 1024
    blob = tmp_path / "deploy/env/share/blob2/payload.bin"
    assert blob.stat().st_size == 70 * 1024 * 1024
    source = tmp_path / "work" / "files-blob2-linux-64" / "share/blob2/payload.bin"
    assert hashlib.sha256(blob.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()


@pytest.mark.posix  # the .sh runs the unpacker by its executable bit and shebang
def test_unpacker_from_url_is_downloaded_once_and_cached(
    project: Project, tmp_path: Path, stand_in_unpacker: Path
) -> None:
    served = project.channel.path / "tools" / "pixi-unpack-x86_64-unknown-linux-musl"
    served.parent.mkdir(exist_ok=True)
    served.write_bytes(stand_in_unpacker.read_bytes())
    url = f"{project.channel.url}tools/{served.name}"
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        _pack_exe(project, tmp_path / f"{name}.sh", url, "--use-cache", cache)
    assert project.channel.server.requests[f"/tools/{served.name}"] == 1
    assert [p.name for p in (cache / "pixi-unpack").rglob("*") if p.is_file()] == [served.name]
    proc = subprocess.run(
        ["bash", str(tmp_path / "b.sh"), "-o", str(tmp_path / "deploy"), "-s", "fish"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "deploy" / "activate.fish").is_file()
    served.unlink()
    line = assert_clean_error(
        run_cli(
            "pack",
            project.dir,
            "-p",
            "linux-64",
            "-o",
            tmp_path / "c.sh",
            "--create-executable",
            "--pixi-unpack-source",
            url + "-missing",
        ),
        code=1,
    )
    assert "could not download the unpacker" in line and "404" in line
