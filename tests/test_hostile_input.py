"""Hostile archives and malformed input: each refused with one line, nothing written outside."""

from __future__ import annotations

import gzip
import json
import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Project, assert_clean_error, pack_ok, run_cli
from tarmembers import Member, entry, linux_repodata, members_of, replaced, write_tar

pytestmark = pytest.mark.usefixtures("no_ci_env")  # these tests describe their own CI environment


# --- hostile archives -----------------------------------------------------------------------------


def hostile_cases(good: list[Member], tmp: Path) -> dict[str, tuple[Path, str]]:
    """name → (archive, words the error must contain)."""
    repodata_name, repodata = linux_repodata(good)
    victim = sorted(repodata["packages.conda"])[0]
    wrong_hash = json.loads(json.dumps(repodata))
    wrong_hash["packages.conda"][victim]["sha256"] = "0" * 64
    missing = json.loads(json.dumps(repodata))
    missing["packages.conda"]["ghost-1.0-0.conda"] = {**repodata["packages.conda"][victim], "name": "ghost"}
    metadata = json.loads(next(d for i, d in good if i.name == "pixi-pack.json") or b"{}")

    def with_extra(*extra: Member) -> list[Member]:
        return [*extra, *good]

    bomb = tarfile.TarInfo("channel/linux-64/bomb.conda")
    bomb.size = 1 << 50  # a petabyte, declared; the header alone is in the archive
    cases: dict[str, tuple[list[Member] | bytes, str]] = {
        "parent traversal": (with_extra(entry("../escape.txt")), "leaves the pack"),
        "nested traversal": (with_extra(entry("channel/../../escape.txt")), "leaves the pack"),
        "absolute path": (with_extra(entry("/tmp/pixi-pack-ci-escape.txt")), "absolute path"),
        "drive letter": (with_extra(entry("C:/escape.txt")), "absolute path"),
        "backslashes": (with_extra(entry("channel\\..\\..\\escape.txt")), "invalid name"),
        "symlink out": (with_extra(entry("channel/evil", None, tarfile.SYMTYPE, "/etc/passwd")), "is a link"),
        "relative symlink": (with_extra(entry("channel/up", None, tarfile.SYMTYPE, "../../..")), "is a link"),
        "symlinked folder": (with_extra(entry("pypi", None, tarfile.SYMTYPE, "/tmp")), "is a link"),
        "hardlink out": (with_extra(entry("channel/hard", None, tarfile.LNKTYPE, "/etc/passwd")), "is a link"),
        "hardlink inside": ([*good, entry("copy.json", None, tarfile.LNKTYPE, "pixi-pack.json")], "is a link"),
        "char device": (with_extra(entry("dev-null", None, tarfile.CHRTYPE)), "special file"),
        "block device": (with_extra(entry("disk", None, tarfile.BLKTYPE)), "special file"),
        "fifo": (with_extra(entry("pipe", None, tarfile.FIFOTYPE)), "special file"),
        "duplicate entry": ([*good, entry("pixi-pack.json", b"{}")], "duplicate entry"),
        "file under a file": (with_extra(entry("x", b"file"), entry("x/y", b"below")), "not a folder"),
        "huge pixi-pack.json": (replaced(good, "pixi-pack.json", b" " * (65 * 1024)), "pixi-pack.json"),
        "pixi-pack.json not JSON": (replaced(good, "pixi-pack.json", b"\x00\xff not json"), "pixi-pack.json"),
        "unknown format version": (
            replaced(good, "pixi-pack.json", json.dumps({**metadata, "version": "99"}).encode()),
            "version",
        ),
        "hash does not match repodata": (
            replaced(good, repodata_name, json.dumps(wrong_hash).encode()),
            f"{victim} does not match its sha256",
        ),
        "repodata names a missing file": (replaced(good, repodata_name, json.dumps(missing).encode()), "ghost"),
        "repodata.json malformed": (replaced(good, repodata_name, b'{"packages": ['), "repodata.json"),
        "declared-size bomb": (with_extra((bomb, None)), "not enough disk space"),
        "very long name": (with_extra(entry("channel/" + "n" * 5000)), "name"),
        "gzip-compressed": (b"gz", "not a valid pack archive"),
        "random bytes": (os.urandom(4096), "not a valid pack archive"),
        "empty archive": ([], "empty"),
    }
    out: dict[str, tuple[Path, str]] = {}
    for i, (label, (content, message)) in enumerate(cases.items()):
        path = tmp / f"hostile-{i:02d}.tar"
        if content == b"gz":
            write_tar(path, good)
            path.write_bytes(gzip.compress(path.read_bytes()))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif label == "declared-size bomb":
            with path.open("wb") as fh:  # header only: tarfile would insist on writing the bytes
                fh.write(bomb.tobuf(tarfile.PAX_FORMAT))
                write_tar(tmp / "rest.tar", good)
                fh.write((tmp / "rest.tar").read_bytes())
        else:
            write_tar(path, content)
        out[label] = (path, message)
    return out


def test_hostile_archives_are_refused_and_write_nothing_outside(project: Project, tmp_path: Path) -> None:
    good_pack = tmp_path / "good.tar"
    pack_ok(project.dir, good_pack)
    good = members_of(good_pack)
    cases = hostile_cases(good, tmp_path)
    assert len(cases) >= 20
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched")
    before = sorted(p.name for p in tmp_path.iterdir())
    for label, (archive, message) in cases.items():
        target = outside / "deploy"
        line = assert_clean_error(run_cli("unpack", archive, "-o", target), code=(1, 2))
        assert message.lower() in line.lower(), f"{label}: {line}"
        assert not target.exists() or not any(target.iterdir()), f"{label}: left files in the target"
        assert sorted(p.name for p in outside.iterdir()) in (["keep.txt"], ["deploy", "keep.txt"]), label
        assert sorted(p.name for p in tmp_path.iterdir()) == before, f"{label}: wrote beside the target"
        assert not Path("/tmp/pixi-pack-ci-escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    print(f"{len(cases)} hostile archives refused")


# --- malformed input ------------------------------------------------------------------------------


def malformed_inputs(project: Project, tmp: Path) -> list[tuple[str, list[str | Path], Callable[[], None]]]:
    """(label, pack arguments, setup) for inputs that must each be refused with one line."""
    lock_text = project.lockfile.read_text()

    def lock_variant(name: str, text: str) -> Path:
        folder = tmp / f"lock-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pixi.lock").write_text(text)
        return folder

    def file_with(name: str, text: str | bytes) -> Path:
        path = tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    m = str(project.dir)
    first_url = next(line.split(": ", 1)[1] for line in lock_text.splitlines() if line.startswith("- conda: http"))
    lockfiles = {
        "empty lockfile": "",
        "not yaml": "{{{{ not yaml ::::",
        "a yaml list": "- 1\n- 2\n",
        "unknown version": re.sub(r"^version: \d+", "version: 99", lock_text, count=1),
        "no version": "environments: {}\npackages: []\n",
        "binary garbage": "\x00\x01\x02\xff",
        "environments is a list": "version: 6\nenvironments: [1, 2]\npackages: []\n",
        "package without sha256 or url": lock_text.replace(f"- conda: {first_url}", "- conda: ''", 1),
        "a package's hash is not hex": lock_text.replace("sha256: ", "sha256: zz", 1),
        "truncated lockfile": lock_text[: len(lock_text) // 3],
    }
    cases: list[tuple[str, list[str | Path], Callable[[], None]]] = []
    for label, text in lockfiles.items():
        cases.append(
            (f"lockfile: {label}", [lock_variant(label.replace(" ", "-"), text), "-p", "linux-64"], lambda: None)
        )
    configs = {
        "config: not toml": "[mirrors\n",
        "config: mirrors not a table": "mirrors = 3\n",
        "config: mirror list of numbers": '[mirrors]\n"https://a.example/" = [1, 2]\n',
        "config: concurrency negative": "[concurrency]\ndownloads = -4\n",
        "config: concurrency a string": '[concurrency]\ndownloads = "many"\n',
        "config: binary": "\x00\xff\xfe",
    }
    auths = {
        "auth: not json": "{not json",
        "auth: a list": "[1, 2]",
        "auth: unknown kind": '{"host.example": {"Magic": "x"}}',
        "auth: bearer not a string": '{"host.example": {"BearerToken": 5}}',
        "auth: basic without password": '{"host.example": {"BasicHTTP": {"username": "u"}}}',
        "auth: value not an object": '{"host.example": "token"}',
    }
    for flag, suffix, files in (("-c", ".toml", configs), ("--auth-file", ".json", auths)):
        for label, text in files.items():
            path = file_with(label.split(": ")[1].replace(" ", "-") + suffix, text)
            cases.append((label, [m, "-p", "linux-64", flag, path], lambda: None))
    flags: dict[str, list[str | Path]] = {
        "flag: unknown": [m, "--frobnicate"],
        "flag: unknown platform": [m, "-p", "linux-65"],
        "flag: platform not in lockfile": [m, "-p", "linux-ppc64"],
        "flag: unknown environment": [m, "-e", "nope"],
        "flag: output with several packs": [m, "-p", "linux-64", "-p", "win-64", "-o", tmp / "x.tar"],
        "flag: directory and executable": [m, "--directory-only", "--create-executable"],
        "flag: unpack source without executable": [m, "--pixi-unpack-source", "none"],
        "flag: stdout as folder": [m, "-o", "-", "--directory-only"],
        "flag: stdout with json": [m, "-o", "-", "--json"],
        "flag: inject missing file": [m, "-p", "linux-64", "-i", tmp / "missing.conda"],
        "flag: inject a text file": [m, "-p", "linux-64", "-i", file_with("notes.conda", "not a package")],
        "flag: missing config file": [m, "-c", tmp / "missing.toml"],
        "flag: missing auth file": [m, "--auth-file", tmp / "missing.json"],
        "flag: attest to stdout": [m, "-o", "-", "--attest"],
        "flag: sign key missing": [m, "-p", "linux-64", "-o", tmp / "s.tar", "--sign-key", tmp / "missing.key"],
        "flag: sign key not a key": [
            m,
            "-p",
            "linux-64",
            "-o",
            tmp / "s.tar",
            "--sign-key",
            file_with("k.pem", "nope"),
        ],
    }
    for label, args in flags.items():
        cases.append((label, args, lambda: None))
    manifests: dict[str, list[str | Path]] = {
        "manifest: missing path": [tmp / "no-such-project"],
        "manifest: folder without lockfile": [tmp],
        "manifest: file beside no lockfile": [file_with("lonely/pixi.toml".replace("/", "-"), "[workspace]\n")],
        "manifest: a device": ["/dev/null"],
    }
    for label, args in manifests.items():
        cases.append((label, args, lambda: None))
    return cases


def test_malformed_inputs_give_one_line_errors(project: Project, tmp_path: Path) -> None:
    cases = malformed_inputs(project, tmp_path)
    assert len(cases) >= 40
    for label, args, setup in cases:
        setup()
        proc = run_cli("pack", *args, cwd=tmp_path)
        try:
            assert_clean_error(proc, code=(1, 2))
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None
    print(f"{len(cases)} malformed inputs refused with one-line errors")
