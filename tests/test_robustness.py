"""Faults and hostile input: a flaky server, SIGKILL, hostile archives, malformed input, secrets."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, assert_clean_error, cache_entries, credentialed_project, pack_ok, run_cli
from signing import Sigstore, assert_secret_hidden, github_env

# --- a flaky server -------------------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True], ids=["into-the-pack", "through-a-cache"])
def test_thirty_percent_faults_still_give_the_same_bytes(project: Project, tmp_path: Path, cached: bool) -> None:
    """Both ways downloads reach a pack: straight into it, and through a --use-cache folder."""
    reference = tmp_path / "reference.tar"
    pack_ok(project.dir, reference)
    server = project.channel.server
    server.requests.clear()
    server.fault_rate, server.fault_seed = 0.30, 20261121
    flaky = tmp_path / "flaky.tar"
    extra = ["--use-cache", str(tmp_path / "cache")] if cached else []
    # The tool's own retry budget (10 attempts), not the test suite's shorter one.
    pack_ok(project.dir, flaky, *extra, env={"PIXI_PACK_CI_DOWNLOAD_ATTEMPTS": "10"})
    served = sum(server.faults_served.values())
    total = sum(server.requests.values())
    print(f"faults served: {dict(server.faults_served)} of {total} requests")
    assert served / total >= 0.2 and len(server.faults_served) >= 5, "the fault mix must really be exercised"
    assert flaky.read_bytes() == reference.read_bytes()


def test_a_permanently_failing_url_is_one_clear_error(project: Project, tmp_path: Path) -> None:
    project.channel.server.always_fail.add("/linux-64/libgreet-1.2.3-h1234_0.conda")
    proc = run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "e.tar", "-v")
    line = assert_clean_error_last_line(proc)
    assert "could not download libgreet-1.2.3-h1234_0.conda after 3 attempts" in line and "500" in line
    assert not (tmp_path / "e.tar").exists()


def assert_clean_error_last_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """With -v, retries are logged as warnings; the error is still the one last line."""
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


# --- SIGKILL --------------------------------------------------------------------------------------


@pytest.mark.posix  # SIGKILL
def test_sigkill_leaves_no_partial_pack_and_a_usable_cache(project: Project, tmp_path: Path) -> None:
    reference = tmp_path / "reference.tar"
    pack_ok(project.dir, reference)
    server = project.channel.server
    server.fault_rate, server.random_faults = 1.0, ("slow",)  # every download trickles: kills land mid-way
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    rng = random.Random(7)
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixi_pack_ci.core", "pack", str(project.dir), "-p", "linux-64",
             "-o", str(out / "env.tar"), "--use-cache", str(cache), "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Whatever was under way, the target is absent or complete: never a part of a pack.
        target = out / "env.tar"
        assert not target.exists() or target.read_bytes() == reference.read_bytes(), f"round {round_}"
    server.fault_rate = 0.0
    pack_ok(project.dir, out / "env.tar", "--use-cache", cache)
    assert (out / "env.tar").read_bytes() == reference.read_bytes()
    # The next run removed what the killed ones left behind, in the output folder and the cache.
    assert sorted(p.name for p in out.iterdir()) == ["env.tar"]
    assert not [p for p in cache.rglob("*") if p.name.endswith((".part", ".partial"))]
    assert cache_entries(cache) == project.linux_packages


@pytest.mark.posix  # SIGKILL
def test_sigkill_of_a_pack_written_in_place_leaves_nothing(project: Project, tmp_path: Path) -> None:
    """Without a cache the pack is written in place while it downloads: a kill must still leave
    no pack, and the next run removes the killed runs' partial file and download folder."""
    reference = tmp_path / "reference.tar"
    pack_ok(project.dir, reference, "--use-cache", tmp_path / "ref-cache")
    server = project.channel.server
    server.fault_rate, server.random_faults = 1.0, ("slow",)
    out = tmp_path / "out"
    out.mkdir()
    rng = random.Random(11)
    leftovers: set[str] = set()
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixi_pack_ci.core", "pack", str(project.dir), "-p", "linux-64",
             "-o", str(out / "env.tar"), "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Kill once the downloads are under way (their folder exists), at a random point in them.
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".download") for p in out.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        target = out / "env.tar"
        assert not target.exists() or target.read_bytes() == reference.read_bytes(), f"round {round_}"
        leftovers |= {p.name for p in out.iterdir()}
    assert any(name.endswith(".download") for name in leftovers), "the kills should have landed mid-download"
    (out / "env.tar").unlink(missing_ok=True)
    server.fault_rate = 0.0
    proc = pack_ok(project.dir, out / "env.tar", "-v")
    assert "in place" in proc.stderr.decode()
    assert (out / "env.tar").read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["env.tar"]


# --- packs written in place -----------------------------------------------------------------------


@pytest.mark.posix  # packs are written in place only with positioned I/O (pwrite/preadv): not on Windows
def test_every_way_of_writing_a_pack_gives_the_same_bytes(project: Project, tmp_path: Path) -> None:
    """Four writers, one archive: downloads straight into the pack; downloads kept in a cache and
    copied into the pack; a warm cache copied in the kernel; and the streamed tar (stdout)."""
    cache = tmp_path / "cache"
    direct = pack_ok(project.dir, tmp_path / "direct.tar", "-v").stderr.decode()
    assert "in place: each package is downloaded straight into it" in direct, direct
    cold = pack_ok(project.dir, tmp_path / "cold.tar", "--use-cache", cache, "-v").stderr.decode()
    assert "in place: each package is copied from the cache" in cold, cold
    warm = pack_ok(project.dir, tmp_path / "warm.tar", "--use-cache", cache, "-v").stderr.decode()
    assert "copied from the cache; sha256 remembered" in warm, warm
    streamed = run_cli("pack", project.dir, "-p", "linux-64", "-o", "-", "-q", check=True).stdout
    reference = (tmp_path / "direct.tar").read_bytes()
    assert (tmp_path / "cold.tar").read_bytes() == reference
    assert (tmp_path / "warm.tar").read_bytes() == reference
    assert streamed == reference


@pytest.mark.posix  # packs are written in place only with positioned I/O (pwrite/preadv): not on Windows
def test_a_corrupt_cache_entry_is_fetched_again_when_packing_in_place(project: Project, tmp_path: Path) -> None:
    """One entry of a cache lost its record and had its bytes changed (same size): the in-place
    pack copies it, finds the slot does not match the lockfile, drops the entry and downloads it."""
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "first.tar", "--use-cache", cache)
    victim = next(p for p in (cache / "linux-64").iterdir() if p.name.startswith("libgreet"))
    (cache / ".verified" / "linux-64" / victim.name).unlink()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    proc = pack_ok(project.dir, tmp_path / "second.tar", "--use-cache", cache, "-v")
    err = proc.stderr.decode()
    assert "in place" in err and f"cached {victim.name} does not match the lockfile" in err, err
    assert (tmp_path / "second.tar").read_bytes() == (tmp_path / "first.tar").read_bytes()
    assert victim.read_bytes() != bytes(data)


@pytest.mark.posix  # packs are written in place only with positioned I/O (pwrite/preadv): not on Windows
@pytest.mark.parametrize("delta", [1, -1])
def test_a_wrong_size_in_the_lockfile_is_packed_the_ordinary_way(project: Project, tmp_path: Path, delta: int) -> None:
    """The in-place layout trusts the lockfile's sizes; bytes that match the hash but not the size
    (too many: they overflow the slot; too few: they leave a gap) send the run the ordinary way."""
    lines = project.lockfile.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("- conda: ") and "libgreet" in line)
    j = next(k for k in range(i, len(lines)) if lines[k].strip().startswith("size:"))
    lines[j] = f"  size: {int(lines[j].split(':')[1]) + delta}"
    project.lockfile.write_text("\n".join(lines) + "\n")
    staged = tmp_path / "staged.tar"
    # Both in-place modes fall back: the one that copies from a cache and the one that does not.
    err = pack_ok(project.dir, staged, "--use-cache", tmp_path / "cache", "-v").stderr.decode()
    assert "packing the ordinary way: libgreet-1.2.3-h1234_0.conda" in err, err
    proc = pack_ok(project.dir, tmp_path / "direct.tar", "-v")
    err = proc.stderr.decode()
    assert "packing the ordinary way: libgreet-1.2.3-h1234_0.conda" in err, err
    assert (tmp_path / "direct.tar").read_bytes() == staged.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# --- unpack is atomic -----------------------------------------------------------------------------


def _environment_state(prefix: Path) -> dict[str, bytes]:
    return {str(p.relative_to(prefix)): p.read_bytes() for p in sorted(prefix.rglob("*")) if p.is_file()}


def test_a_failed_unpack_with_force_keeps_the_old_environment(project: Project, tmp_path: Path) -> None:
    """A package that matches its repodata hash but is not a valid archive fails inside
    rattler.install, after every check: the environment that was there survives untouched."""
    good_pack = tmp_path / "good.tar"
    pack_ok(project.dir, good_pack)
    target = tmp_path / "deploy"
    run_cli("unpack", good_pack, "-o", target, check=True)
    before = _environment_state(target / "env")
    assert before

    good = members_of(good_pack)
    repodata_name, repodata = linux_repodata(good)
    victim = sorted(repodata["packages.conda"])[0]
    junk = b"not a conda package " * 100
    repodata["packages.conda"][victim].update(sha256=hashlib.sha256(junk).hexdigest(), size=len(junk))
    members = replaced(good, repodata_name, json.dumps(repodata).encode())
    broken = write_tar(tmp_path / "broken.tar", replaced(members, f"channel/linux-64/{victim}", junk))

    line = assert_clean_error(run_cli("unpack", broken, "-o", target, "--force"), code=1)
    assert "could not install packages" in line, line
    assert _environment_state(target / "env") == before
    assert sorted(p.name for p in target.iterdir()) == ["activate.sh", "env"]


@pytest.mark.posix  # SIGKILL
def test_sigkill_of_an_unpack_leaves_no_partial_environment(project: Project, tmp_path: Path) -> None:
    pack = tmp_path / "e.tar"
    pack_ok(project.dir, pack)
    target = tmp_path / "deploy"
    rng = random.Random(5)
    leftovers: set[str] = set()
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixi_pack_ci.core", "unpack", str(pack), "-o", str(target), "--force", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Kill once its work folder (which names its PID) exists, at a random point of what follows
        # (0.1-0.2 s here).
        deadline = time.monotonic() + 30
        while not (target.is_dir() and any(p.name.startswith(f".env.{proc.pid}.") for p in target.iterdir())):
            assert time.monotonic() < deadline and proc.poll() is None, "the unpack never started its work folder"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.08))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # No environment at all, or a whole one: never a prefix with some packages missing.
        prefix = target / "env"
        if prefix.exists():
            assert len(list((prefix / "conda-meta").glob("*.json"))) == len(project.linux_packages), f"round {round_}"
        leftovers |= {p.name for p in target.iterdir()}
    assert any(name.endswith(".partial") for name in leftovers), "the kills should have landed mid-unpack"
    run_cli("unpack", pack, "-o", target, "--force", check=True)
    # The next unpack removed what the killed ones left behind.
    assert sorted(p.name for p in target.iterdir()) == ["activate.sh", "env"]


# --- hostile archives -----------------------------------------------------------------------------


Member = tuple[tarfile.TarInfo, bytes | None]


def members_of(pack: Path) -> list[Member]:
    out: list[Member] = []
    with tarfile.open(pack) as tar:
        for info in tar.getmembers():
            data = tar.extractfile(info).read() if info.isreg() else None  # type: ignore[union-attr]
            out.append((info, data))
    return out


def write_tar(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def entry(name: str, data: bytes | None = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info, data if kind == tarfile.REGTYPE else None


def replaced(members: list[Member], name: str, data: bytes) -> list[Member]:
    return [(info, data if info.name == name else content) for info, content in members]


def linux_repodata(members: list[Member]) -> tuple[str, dict[str, Any]]:
    """The member name and parsed content of a pack's linux-64 repodata.json."""
    name = next(i.name for i, _ in members if i.name.endswith("linux-64/repodata.json"))
    return name, json.loads(next(d for i, d in members if i.name == name) or b"{}")


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


# --- credentials ----------------------------------------------------------------------------------

URL_SECRET = "url-password-q8Zr"
AUTH_SECRET = "auth-file-token-77Kp"
ENV_SECRET = "ghs_env-token-5Wd2"
# rattler's other credential sources (test_credentials.py has how each is read)
KEYRING_SECRET = "keyring-token-3Jt9"
HOME_FILE_SECRET = "home-file-token-8Lm1"
NETRC_SECRET = "netrc-password-6Vx4"


def test_credentials_never_leak(project: Project, tmp_path: Path, sigstore: Sigstore) -> None:
    lock_dir = credentialed_project(project, tmp_path / "p", "deploy", URL_SECRET)
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"mirror.example": {"BearerToken": AUTH_SECRET}}))
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    # The keyring's entry is the one found for the server (the URL's own user and password still go
    # first); the home file and netrc come after it, read but not used.
    (tmp_path / "home/.rattler").mkdir(parents=True)
    home_entry = {"127.0.0.1": {"BearerToken": HOME_FILE_SECRET}}
    (tmp_path / "home/.rattler/credentials.json").write_text(json.dumps(home_entry))
    (tmp_path / "home/.netrc").write_text(f"machine 127.0.0.1 login n password {NETRC_SECRET}\n")
    keyring_entry = json.dumps({"BearerToken": KEYRING_SECRET})
    (tmp_path / "keyring.json").write_text(json.dumps({"rattler": {"127.0.0.1": keyring_entry}}))
    env = {
        **github_env(sigstore),
        "GITHUB_TOKEN": ENV_SECRET,
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
        "RATTLER_AUTH_FILE": str(auth),
        "HOME": str(tmp_path / "home"),
        "NETRC": "",
        "PYTHONPATH": str(Path(__file__).parent / "keyring_path"),
        "PYTHON_KEYRING_BACKEND": "pixi_pack_ci_test_keyring.FileKeyring",
        "PIXI_PACK_CI_TEST_KEYRING": str(tmp_path / "keyring.json"),
    }
    pack = tmp_path / "env.tar"
    texts = []
    for extra in (["-vv", "--json"], ["-v", "--dry-run"]):
        proc = run_cli("pack", lock_dir, "-p", "linux-64", "-o", pack, "--attest",
                       "--sigstore-trust-config", sigstore.trust_config, *extra, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode()
        texts += [proc.stdout.decode(), proc.stderr.decode()]
    failing = run_cli("pack", lock_dir, "-p", "linux-64", "-o", tmp_path / "f.tar", "-vv", "-c",
                      tmp_path / "missing.toml", env=env)  # fmt: skip
    texts += [failing.stdout.decode(), failing.stderr.decode()]
    bundle = json.loads((tmp_path / "env.tar.sigstore.json").read_text())
    texts += [
        json.dumps(bundle),
        base64.b64decode(bundle["dsseEnvelope"]["payload"]).decode(),
        summary.read_text(),
        outputs.read_text(),
        (tmp_path / "SHA256SUMS").read_text(),
        pack.read_bytes().decode("latin-1"),
        run_cli("inspect", pack, "--json", check=True).stdout.decode(),
    ]
    everything = "\n".join(texts)
    for secret in (URL_SECRET, AUTH_SECRET, ENV_SECRET, KEYRING_SECRET, HOME_FILE_SECRET, NETRC_SECRET):
        assert_secret_hidden(everything, secret)
    assert f"::add-mask::{KEYRING_SECRET}" in everything or f"::add-mask ::{KEYRING_SECRET}" in everything
    assert "deploy:" not in everything


@pytest.fixture(autouse=True)
def _no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests describe their own CI environment; a real one around them must not leak in.
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
