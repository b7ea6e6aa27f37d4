"""Every failure is one clear line, a non-zero exit, and no half-written output."""

from __future__ import annotations

import tarfile
from pathlib import Path

from harness import Project, assert_clean_error, pack_ok, run_cli


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_hash_mismatch_leaves_no_output(project: Project, tmp_path: Path) -> None:
    text = project.lockfile.read_text()
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("- conda: ") and "libgreet" in line)
    j = next(k for k in range(i, len(lines)) if lines[k].strip().startswith("sha256:"))
    lines[j] = "  sha256: " + "0" * 64
    project.lockfile.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    line = assert_clean_error(run_cli("pack", project.dir, "-p", "linux-64", "-o", out / "e.tar"), code=1)
    assert "checksum mismatch for libgreet-1.2.3-h1234_0.conda" in line
    assert _leftovers(out) == []
    # retried before giving up (a corrupt transfer may be transient)
    assert project.channel.server.requests["/linux-64/libgreet-1.2.3-h1234_0.conda"] == 3


def test_transient_server_errors_are_retried(project: Project, tmp_path: Path) -> None:
    server = project.channel.server
    server.faults = {
        "/linux-64/libgreet-1.2.3-h1234_0.conda": ["500", "reset"],
        "/noarch/noarch-data-1.0-0.conda": ["503", "truncate"],
        "/linux-64/pkg03-0.3-h0003_0.tar.bz2": ["corrupt"],
    }
    pack_ok(project.dir, tmp_path / "e.tar")
    assert server.requests["/linux-64/libgreet-1.2.3-h1234_0.conda"] == 3
    assert server.requests["/noarch/noarch-data-1.0-0.conda"] == 3
    assert server.requests["/linux-64/pkg03-0.3-h0003_0.tar.bz2"] == 2
    run_cli("unpack", tmp_path / "e.tar", "-o", tmp_path / "deploy", check=True)


def test_permanent_server_error_is_one_clear_line(project: Project, tmp_path: Path) -> None:
    server = project.channel.server
    server.always_fail.add("/linux-64/libgreet-1.2.3-h1234_0.conda")
    line = assert_clean_error(run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "e.tar"), code=1)
    assert "could not download libgreet-1.2.3-h1234_0.conda after 3 attempts" in line and "500" in line
    assert not (tmp_path / "e.tar").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_not_found_is_not_retried(project: Project, tmp_path: Path) -> None:
    server = project.channel.server
    server.faults = {"/linux-64/libgreet-1.2.3-h1234_0.conda": ["404"]}
    line = assert_clean_error(run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "e.tar"), code=1)
    assert "answered 404" in line
    assert server.requests["/linux-64/libgreet-1.2.3-h1234_0.conda"] == 1


def test_unknown_environment_lists_available(project: Project, tmp_path: Path) -> None:
    line = assert_clean_error(run_cli("pack", project.dir, "-e", "nope", "-o", tmp_path / "e.tar"), code=2)
    assert "environment 'nope' not found" in line and "default, prod" in line


def test_unknown_platform_lists_available(project: Project, tmp_path: Path) -> None:
    line = assert_clean_error(run_cli("pack", project.dir, "-p", "linux-aarch64", "-o", tmp_path / "e.tar"), code=2)
    assert "platform 'linux-aarch64' not found" in line and "linux-64, osx-arm64, win-64" in line
    line = assert_clean_error(run_cli("pack", project.dir, "-p", "linux64"), code=2)
    assert "platform 'linux64' not found" in line and "linux-64, osx-arm64, win-64" in line


def test_missing_manifest_and_lockfile(tmp_path: Path) -> None:
    line = assert_clean_error(run_cli("pack", tmp_path / "nowhere" / "pixi.toml"), code=2)
    assert "manifest path does not exist" in line
    (tmp_path / "pixi.toml").write_text("")
    line = assert_clean_error(run_cli("pack", tmp_path / "pixi.toml"), code=1)
    assert "no pixi.lock in" in line


def test_malformed_lockfile(tmp_path: Path) -> None:
    for content in ("version: 6\nenvironments: [", "not: a lockfile\n", "version: 99\n", "\x00\x01binary"):
        (tmp_path / "pixi.lock").write_text(content)
        line = assert_clean_error(run_cli("pack", tmp_path, "-o", tmp_path / "e.tar"), code=1)
        assert "could not read lockfile" in line
        assert not (tmp_path / "e.tar").exists()


def test_wrong_platform_unpack(project: Project, tmp_path: Path) -> None:
    pack_ok(project.dir, tmp_path / "win.tar", platform="win-64")
    line = assert_clean_error(run_cli("unpack", tmp_path / "win.tar", "-o", tmp_path / "deploy"), code=1)
    assert "created for win-64 but this machine is linux-64" in line
    assert _leftovers(tmp_path / "deploy") == []


def test_unknown_format_version(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    run_cli("pack", project.dir, "-p", "linux-64", "--directory-only", "-o", folder, check=True)
    for version, message in (('"2"', "unsupported pack format version '2'"), ("1", "'version' must be a string")):
        (folder / "pixi-pack.json").write_text(f'{{"version": {version}, "platform": "linux-64"}}')
        line = assert_clean_error(run_cli("unpack", folder, "-o", tmp_path / "deploy"), code=1)
        assert message in line


def test_existing_target_is_refused(project: Project, tmp_path: Path) -> None:
    pack_ok(project.dir, tmp_path / "e.tar")
    (tmp_path / "deploy" / "env").mkdir(parents=True)
    (tmp_path / "deploy" / "env" / "precious").write_text("keep me")
    line = assert_clean_error(run_cli("unpack", tmp_path / "e.tar", "-o", tmp_path / "deploy"), code=1)
    assert "already exists; pass --force" in line
    assert (tmp_path / "deploy" / "env" / "precious").read_text() == "keep me"
    assert _leftovers(tmp_path / "deploy") == ["env"]


def test_corrupt_package_in_pack_is_refused(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    run_cli("pack", project.dir, "-p", "linux-64", "--directory-only", "-o", folder, check=True)
    victim = folder / "channel" / "linux-64" / "libgreet-1.2.3-h1234_0.conda"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    line = assert_clean_error(run_cli("unpack", folder, "-o", tmp_path / "deploy"), code=1)
    assert "libgreet-1.2.3-h1234_0.conda does not match its sha256" in line
    assert not (tmp_path / "deploy" / "env").exists()


def test_truncated_archive_is_refused(project: Project, tmp_path: Path) -> None:
    import tarfile

    pack = tmp_path / "e.tar"
    pack_ok(project.dir, pack)
    data = pack.read_bytes()
    with tarfile.open(pack) as tar:
        package = next(m for m in tar.getmembers() if m.name.endswith(".conda"))
    # Inside a package's bytes, right after its header, half way, and without the end blocks.
    cuts = [package.offset_data + package.size // 2, package.offset_data, len(data) // 2, len(data) - 1024]
    for cut in cuts:
        (tmp_path / "cut.tar").write_bytes(data[:cut])
        # From a file (members copied in parallel at their offsets) and from a pipe (streamed).
        for source, stdin in ((tmp_path / "cut.tar", None), ("-", data[:cut])):
            deploy = tmp_path / f"deploy-{cut}-{stdin is None}"
            proc = run_cli("unpack", source, "-o", deploy, input=stdin)
            if cut == len(data) - 1024 and proc.returncode == 0:
                continue  # tar readers accept a missing end-of-archive marker once every member is whole
            line = assert_clean_error(proc, code=1)
            assert "truncated" in line or "not a pixi-pack archive" in line, (cut, source, line)
            assert _leftovers(deploy) == [], (cut, source)


def test_unsafe_archive_entries_are_refused(tmp_path: Path) -> None:
    import io

    def make(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> Path:
        path = tmp_path / f"bad{len(list(tmp_path.iterdir()))}.tar"
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = linkname
            data = b"x"
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        return path

    cases = [
        (make("../escape.txt"), "leaves the pack"),
        (make("/abs/path.txt"), "absolute path"),
        (make("channel/evil", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (make("channel/evil", tarfile.LNKTYPE, "/etc/passwd"), "is a link"),
        (make("dev", tarfile.CHRTYPE), "special file"),
    ]
    for pack, message in cases:
        target = tmp_path / "deploy"
        line = assert_clean_error(run_cli("unpack", pack, "-o", target), code=1)
        assert message in line, line
        assert not (tmp_path / "escape.txt").exists()
        assert _leftovers(target) == []


def test_json_errors_still_one_line(project: Project) -> None:
    proc = run_cli("pack", project.dir, "-e", "nope", "--json")
    assert proc.stdout == b""
    assert_clean_error(proc, code=2)


def test_bad_flags_are_usage_errors(project: Project, tmp_path: Path) -> None:
    line = assert_clean_error(run_cli("pack", project.dir, "--no-such-flag"), code=2)
    assert "unrecognized arguments" in line
    line = assert_clean_error(run_cli("pack", project.dir, "-e", "default", "-e", "prod", "-o", "x.tar"), code=2)
    assert "--output-dir" in line
    line = assert_clean_error(run_cli("pack", project.dir, "-o", "-", "--json"), code=2)
    line = assert_clean_error(run_cli("pack", project.dir, "-o", "-", "--directory-only"), code=2)
    assert "standard output" in line
    line = assert_clean_error(run_cli("unpack", tmp_path / "missing.tar"), code=1)
    assert "pack does not exist" in line
    assert run_cli("inspect", "--help").returncode == 0


def test_md5_is_checked_when_there_is_no_sha256(project: Project, tmp_path: Path) -> None:
    lines = project.lockfile.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("- conda: ") and "libgreet" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("- "))
    block = [line for line in lines[start:end] if not line.strip().startswith("sha256:")]
    good = lines[:start] + block + lines[end:]
    project.lockfile.write_text("\n".join(good) + "\n")
    pack_ok(project.dir, tmp_path / "ok.tar")
    bad = [("  md5: " + "f" * 32) if line.strip().startswith("md5:") else line for line in block]
    project.lockfile.write_text("\n".join(lines[:start] + bad + lines[end:]) + "\n")
    line = assert_clean_error(run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "bad.tar"), code=1)
    assert "checksum mismatch for libgreet-1.2.3-h1234_0.conda" in line and "f" * 32 in line
    assert not (tmp_path / "bad.tar").exists()
