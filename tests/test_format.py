"""The archive matches pixi-pack 0.7.10's format (../shared/reference/pixi-pack.md §2) byte for byte where it can."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from harness import Project, pack_ok
from pixi_pack_ci.core.tarwriter import DETERMINISTIC_MTIME, DeterministicTarWriter


def _pack(project: Project, out: Path, *extra: str, platform: str = "linux-64") -> Path:
    pack_ok(project.dir, out, *extra, platform=platform)
    return out


def test_file_list_and_order(project: Project, tmp_path: Path) -> None:
    pack = _pack(project, tmp_path / "e.tar")
    with tarfile.open(pack) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    # walkdir order: parents first, siblings sorted by name, no trailing slash on directories
    assert names == sorted(names, key=lambda n: tuple(n.split("/")))
    assert names[0] == "channel"
    assert names[-2:] == ["environment.yml", "pixi-pack.json"]
    top = {n.split("/")[0] for n in names}
    assert top == {"channel", "environment.yml", "pixi-pack.json"}  # no pypi/ without wheels
    assert {n for n in names if n.count("/") == 1 and n.startswith("channel/")} == {
        "channel/linux-64",
        "channel/noarch",
    }
    for m in members:
        assert m.mtime == DETERMINISTIC_MTIME and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == ""
        assert m.mode == (0o755 if m.isdir() else 0o644)
        assert m.isdir() or m.isreg()


def test_header_bytes_match_tar_rs(project: Project, tmp_path: Path) -> None:
    raw = _pack(project, tmp_path / "e.tar").read_bytes()
    first = raw[:512]
    assert first[:8] == b"channel\0"
    assert first[257:265] == b"ustar  \0"  # GNU magic + version
    assert first[100:108] == b"0000755\0"
    # tar-rs's DETERMINISTIC_TIMESTAMP 1153704088 (octal 10461020230)
    assert first[136:148] == b"10461020230\0" == format(DETERMINISTIC_MTIME, "011o").encode() + b"\0"
    cksum = first[148:156]
    assert cksum[7:8] == b"\0" and cksum[:7].isdigit()  # 7 octal digits + NUL (tar-rs), not "0nnnnn\0 "
    assert int(cksum[:7], 8) == sum(first[:148]) + 8 * 32 + sum(first[156:])
    assert raw.endswith(b"\0" * 1024) and len(raw) % 512 == 0
    # no padding to 10 KiB records: the last member's data is followed by exactly two zero blocks
    with tarfile.open(tmp_path / "e.tar") as tar:
        last = tar.getmembers()[-1]
    end_of_last = last.offset_data + ((last.size + 511) // 512) * 512
    assert len(raw) == end_of_last + 1024


def test_long_names_use_gnu_longlink(tmp_path: Path) -> None:
    long_name = "channel/noarch/" + "a" * 120 + ".conda"
    with (tmp_path / "t.tar").open("wb") as fh:
        writer = DeterministicTarWriter(fh)
        writer.add_bytes(long_name, b"payload")
        writer.finish()
    raw = (tmp_path / "t.tar").read_bytes()
    assert raw[:13] == b"././@LongLink" and raw[156:157] == b"L"
    assert raw[136:148] == b"00000000000\0"  # the LongLink entry has mtime 0
    assert int(raw[124:135], 8) == len(long_name) + 1
    with tarfile.open(tmp_path / "t.tar") as tar:
        assert tar.getnames() == [long_name]
        assert tar.extractfile(long_name).read() == b"payload"  # type: ignore[union-attr]


def test_metadata_repodata_and_environment_yml(project: Project, tmp_path: Path) -> None:
    pack = _pack(project, tmp_path / "e.tar")
    with tarfile.open(pack) as tar:

        def read(name: str) -> bytes:
            return tar.extractfile(name).read()  # type: ignore[union-attr]

        metadata = read("pixi-pack.json")
        repodata_raw = read("channel/linux-64/repodata.json")
        env_yml = read("environment.yml").decode()
    assert metadata == b'{\n  "version": "1",\n  "pixi-pack-version": "0.7.10",\n  "platform": "linux-64"\n}'
    repodata = json.loads(repodata_raw)
    assert list(repodata) == ["info", "packages", "packages.conda", "repodata_version"]
    assert (
        repodata["info"] == {"subdir": "linux-64"} and repodata["packages"] == {} and repodata["repodata_version"] == 2
    )
    assert not repodata_raw.endswith(b"\n")
    conda = repodata["packages.conda"]
    assert any(k.endswith(".tar.bz2") for k in conda)  # .tar.bz2 also under packages.conda, as pixi-pack does
    for record in conda.values():
        assert list(record) == sorted(record)
        assert "fn" not in record and "url" not in record and "channel" not in record
        assert record["subdir"] == "linux-64" and len(record["sha256"]) == 64 and "depends" in record
    lock_text = project.lockfile.read_text()
    assert "libgreet >=1" in conda["hello-tool-1.0-0.conda"]["depends"] and "libgreet >=1" in lock_text

    lines = env_yml.splitlines()
    assert lines[:4] == ["channels:", "  - ./channel", "  - nodefaults", "dependencies:"]
    assert "  - libgreet=1.2.3=h1234_0" in lines and "  - noarch-data=1.0=0" in lines
    assert "pip:" not in env_yml and env_yml.endswith("\n")


def test_repodata_keeps_lockfile_records_not_package_metadata(project: Project, tmp_path: Path) -> None:
    """A repodata patch lives only in the lockfile; the pack must carry it.

    (pixi-pack's test_includes_repodata_patches.)
    """
    text = project.lockfile.read_text()
    patched = text.replace("  - libgreet >=1\n", "  - libgreet >=1,<2.0a0\n", 1)
    assert patched != text
    project.lockfile.write_text(patched)
    pack = _pack(project, tmp_path / "e.tar")
    with tarfile.open(pack) as tar:
        repodata = json.loads(tar.extractfile("channel/linux-64/repodata.json").read())  # type: ignore[union-attr]
    assert repodata["packages.conda"]["hello-tool-1.0-0.conda"]["depends"] == ["libgreet >=1,<2.0a0"]


def test_cross_platform_packs(project: Project, tmp_path: Path) -> None:
    for platform, subdir, pkg in (("win-64", "win-64", "winpkg"), ("osx-arm64", "osx-arm64", "macpkg")):
        pack = _pack(project, tmp_path / f"{platform}.tar", platform=platform)
        with tarfile.open(pack) as tar:
            names = tar.getnames()
            metadata = json.loads(tar.extractfile("pixi-pack.json").read())  # type: ignore[union-attr]
            repodata = json.loads(tar.extractfile(f"channel/{subdir}/repodata.json").read())  # type: ignore[union-attr]
        assert metadata["platform"] == platform
        assert {n for n in names if n.count("/") == 1 and n.startswith("channel/")} == {
            f"channel/{subdir}",
            "channel/noarch",
        }
        assert f"channel/{subdir}/{pkg}-1.0-0.conda" in names
        assert not any("linux-64" in n for n in names)
        assert repodata["info"]["subdir"] == subdir


def test_same_inputs_give_same_bytes(project: Project, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _pack(project, tmp_path / "a" / "e.tar", "--use-cache", str(cache))
    requests_cold = sum(project.channel.server.requests.values())
    second = _pack(project, tmp_path / "b" / "e.tar", "--use-cache", str(cache))
    assert sum(project.channel.server.requests.values()) == requests_cold  # warm cache: nothing downloaded
    third = _pack(project, tmp_path / "c" / "other-name.tar")  # no cache, other folder
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second, third)}
    assert len(digests) == 1
    # and in a copy of the project elsewhere
    from harness import make_project

    moved = make_project(tmp_path / "elsewhere" / "project", project.channel)
    fourth = _pack(moved, tmp_path / "d.tar")
    assert hashlib.sha256(fourth.read_bytes()).hexdigest() in digests
