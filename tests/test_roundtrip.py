"""Pack a generated environment from a real HTTP channel, unpack it, and use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from harness import Project, pack_ok, run_cli
from support import PLACEHOLDER


@pytest.mark.posix  # symlinks, and the activation script sourced by bash with a POSIX PATH
def test_pack_unpack_roundtrip(project: Project, tmp_path: Path) -> None:
    pack = tmp_path / "out" / "environment.tar"
    proc = pack_ok(project.dir, pack, "--json")
    result = json.loads(proc.stdout)["packs"][0]
    assert result["path"] == str(pack)
    assert result["package_count"] == len(project.linux_packages) >= 20

    with tarfile.open(pack) as tar:
        names = tar.getnames()
    packed = sorted(n.rsplit("/", 1)[1] for n in names if n.endswith((".conda", ".tar.bz2")))
    assert packed == project.linux_packages
    assert any(n.endswith(".tar.bz2") for n in packed) and any(n.endswith(".conda") for n in packed)

    target = tmp_path / "deploy"
    run_cli("unpack", pack, "-o", target, check=True)
    prefix = target / "env"

    # it was built in a hidden work folder and moved here: no file names the prefix it was built in
    # (conda-meta does name the pack and cache it came from, as with any local channel)
    assert sorted(p.name for p in target.iterdir()) == ["activate.sh", "env"]
    files = [p for p in prefix.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not [p for p in files if b".partial/env" in p.read_bytes()]

    # every file of every package is present
    for pkg_json in (prefix / "conda-meta").glob("*.json"):
        for rel in json.loads(pkg_json.read_text())["files"]:
            assert (prefix / rel).exists() or (prefix / rel).is_symlink(), rel
    assert len(list((prefix / "conda-meta").glob("*.json"))) == len(project.linux_packages)

    # text placeholders replaced by the new prefix
    config = (prefix / "etc/placeholder-text/config.txt").read_text()
    assert config == f"prefix={prefix}\ndata={prefix}/share\n"
    assert PLACEHOLDER not in (prefix / "bin/where-am-i").read_text()
    # binary placeholder replaced and NUL-padded to the same length
    data = (prefix / "lib/placeholder-bin.dat").read_bytes()
    original = b"\x7fELF\x00\x01" + PLACEHOLDER.encode() + b"/lib\x00tail\x00"
    assert len(data) == len(original)
    assert data.startswith(b"\x7fELF\x00\x01" + str(prefix).encode() + b"/lib\x00")
    assert PLACEHOLDER.encode() not in data

    # symlinks survive as symlinks
    assert (prefix / "bin/tool-link").is_symlink()
    assert (prefix / "bin/tool-link").resolve() == (prefix / "bin/real-tool").resolve()
    assert (prefix / "lib/libsym.so").is_symlink()

    # the activation script puts the env first and keeps the user's PATH, not the packer's
    script = target / "activate.sh"
    text = script.read_text()
    assert str(prefix / "bin") in text
    out = subprocess.run(
        [
            "bash",
            "-c",
            f'source "{script}" && command -v hello-tool && hello-tool && where-am-i && echo "$CONDA_PREFIX"',
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=True,
    ).stdout.splitlines()
    assert out == [str(prefix / "bin/hello-tool"), "hello from hello-tool", str(prefix), str(prefix)]


def test_directory_pack_and_unpack(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "packdir"
    run_cli("pack", project.dir, "-p", "linux-64", "--directory-only", "-o", folder, check=True)
    assert (folder / "pixi-pack.json").is_file()
    assert (folder / "channel" / "linux-64" / "repodata.json").is_file()
    before = {p: p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    run_cli("unpack", folder, "-o", tmp_path / "deploy", "-e", "custom", check=True)
    assert (tmp_path / "deploy" / "custom" / "bin" / "hello-tool").exists()
    # unpack frees the package archives of a pack it extracted, never those of the user's folder
    assert {p: p.stat().st_size for p in folder.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["activate.sh", "custom"]
    # packing again into the same folder replaces it
    run_cli("pack", project.dir, "-p", "linux-64", "--directory-only", "-o", folder, check=True)
    assert not list(tmp_path.glob(".packdir*"))


def test_stdout_stdin_roundtrip(project: Project, tmp_path: Path) -> None:
    packed = pack_ok(project.dir, "-", "-q")
    assert packed.stdout[:512].find(b"ustar ") == 257
    run_cli("unpack", "-", "-o", tmp_path / "deploy", input=packed.stdout, check=True)
    assert (tmp_path / "deploy" / "env" / "bin" / "hello-tool").exists()
    assert (tmp_path / "deploy" / "activate.sh").exists()


def test_other_shells(project: Project, tmp_path: Path) -> None:
    pack = tmp_path / "e.tar"
    pack_ok(project.dir, pack)
    for shell, ext in (("fish", "fish"), ("powershell", "ps1"), ("zsh", "sh")):
        target = tmp_path / shell
        run_cli("unpack", pack, "-o", target, "-s", shell, check=True)
        assert str(target / "env") in (target / f"activate.{ext}").read_text()


def test_unpack_force_replaces_environment(project: Project, tmp_path: Path) -> None:
    pack = tmp_path / "e.tar"
    pack_ok(project.dir, pack)
    target = tmp_path / "deploy"
    run_cli("unpack", pack, "-o", target, check=True)
    (target / "env" / "stray-file").write_text("x")
    run_cli("unpack", pack, "-o", target, "--force", check=True)
    assert not (target / "env" / "stray-file").exists()
    assert (target / "env" / "bin" / "hello-tool").exists()


def _stderr_on_a_terminal(*args: str | Path) -> str:
    """Run the CLI with stderr on a pseudo-terminal (stdout captured apart) and return what the
    terminal showed, so the progress bars are drawn as a user sees them."""
    import pty  # POSIX only: imported here so that the module still loads (and skips) elsewhere

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixi_pack_ci.core", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(leader)
    assert proc.wait(timeout=300) == 0, shown.decode(errors="replace")
    return shown.decode(errors="replace")


@pytest.mark.posix  # pty
def test_progress_on_a_terminal(project: Project, tmp_path: Path) -> None:
    pack = tmp_path / "e.tar"
    shown = _stderr_on_a_terminal("pack", project.dir, "-p", "linux-64", "-o", pack)
    # (a file pack is written in place as it downloads: one bar)
    assert f"Fetching {len(project.linux_packages)} packages" in shown, shown
    shown = _stderr_on_a_terminal("unpack", pack, "-o", tmp_path / "deploy")
    assert f"Installing {len(project.linux_packages)} packages" in shown, shown
    assert (tmp_path / "deploy" / "env" / "bin" / "hello-tool").exists()
    # with -q the terminal shows nothing at all
    assert _stderr_on_a_terminal("unpack", pack, "-o", tmp_path / "quiet", "-q").strip() == ""


def test_install_frees_each_extracted_archive(project: Project, tmp_path: Path) -> None:
    """The archives of an extracted pack are deleted as rattler caches them (names must match
    what rattler reports); every package still ends up installed."""
    import asyncio

    import rattler
    from pixi_pack_ci.core import extract, install
    from pixi_pack_ci.core.progress import ProgressReporter

    pack = tmp_path / "e.tar"
    pack_ok(project.dir, pack, "-q")
    with pack.open("rb") as fh:
        extracted = extract.extract_pack(fh, tmp_path / "x")
    records = extract.load_records(extracted.root, extracted.digests)
    archives = sorted(p for p in (extracted.root / "channel").rglob("*") if p.name.endswith((".conda", ".tar.bz2")))
    assert len(archives) == len(records) == len(project.linux_packages)
    with ProgressReporter("", None, enabled=False) as progress:
        events = install._InstallEvents(records, progress, delete=True)
        try:
            asyncio.run(
                rattler.install(records, tmp_path / "env", cache_dir=tmp_path / "cache", reporter=events)  # type: ignore[arg-type]
            )
        finally:
            events.close()
    assert [p for p in archives if p.exists()] == []
    assert len(list((tmp_path / "env" / "conda-meta").glob("*.json"))) == len(records)
