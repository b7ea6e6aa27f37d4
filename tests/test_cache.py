"""The download cache: verified hits, atomic entries, safe to share between concurrent packs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Project, cache_entries, pack_ok
from pixi_pack_ci.core.cache import KEY_FILE, PERSISTENT_RECORDS, STATE_DIR_ENV, record_mac

ENTRY = "linux-64/libgreet-1.2.3-h1234_0.conda"
needs_records = pytest.mark.skipif(not PERSISTENT_RECORDS, reason="records are never trusted on Windows (no ctime)")


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test its own per-user key (the packs it runs inherit the variable), none in the real home."""
    directory = tmp_path / "state"
    monkeypatch.setenv(STATE_DIR_ENV, str(directory))
    yield directory


def test_corrupt_cache_entry_is_replaced(project: Project, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    assert (cache / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    entry = cache / "linux-64" / "libgreet-1.2.3-h1234_0.conda"
    entry.write_bytes(b"garbage")
    before = project.channel.server.requests["/linux-64/libgreet-1.2.3-h1234_0.conda"]
    pack_ok(project.dir, tmp_path / "b.tar", "--use-cache", cache)
    assert project.channel.server.requests["/linux-64/libgreet-1.2.3-h1234_0.conda"] == before + 1
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert not list(cache.rglob("*.part"))


def test_concurrent_packs_share_one_cache(project: Project, tmp_path: Path, state: Path) -> None:
    """Four first runs at once, also of the per-user key: exactly one creates it, all use it."""
    cache = tmp_path / "cache"
    env = {**os.environ, "PIXI_PACK_CI_DOWNLOAD_ATTEMPTS": "3"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pixi_pack_ci.core",
                "pack",
                str(project.dir),
                "-p",
                "linux-64",
                "-o",
                str(tmp_path / f"p{i}.tar"),
                "--use-cache",
                str(cache),
                "-q",
            ],
            env=env,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    digests = {hashlib.sha256((tmp_path / f"p{i}.tar").read_bytes()).hexdigest() for i in range(4)}
    assert len(digests) == 1
    assert not list(cache.rglob("*.part"))
    assert cache_entries(cache) == project.linux_packages
    if PERSISTENT_RECORDS:  # (Windows trusts no record, so it makes no key)
        assert [p.name for p in state.iterdir()] == [KEY_FILE]
        key = bytes.fromhex((state / KEY_FILE).read_text())
        record = json.loads((cache / ".verified" / ENTRY).read_bytes())
        assert record["mac"] == record_mac(key, "entry", ENTRY, record["sha256"], record["fingerprint"])


def _requests(project: Project, name: str) -> int:
    return project.channel.server.requests[f"/linux-64/{name}"]


@pytest.mark.posix  # copying from the cache into the pack needs positioned I/O
def test_a_warm_pack_trusts_unchanged_entries_and_reuses_the_remembered_hash(project: Project, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    proc = pack_ok(project.dir, tmp_path / "b.tar", "--use-cache", cache, "--json", "-v")
    err = proc.stderr.decode()
    assert "copied from the cache" in err and "remembered" in err, err
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    reported = json.loads(proc.stdout)["packs"][0]["sha256"]
    assert reported == hashlib.sha256((tmp_path / "b.tar").read_bytes()).hexdigest()


def test_an_entry_changed_in_place_is_hashed_again(project: Project, tmp_path: Path) -> None:
    """Same size, mtime put back: the ctime still moved, so the record no longer vouches for it."""
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    entry = cache / "linux-64" / "libgreet-1.2.3-h1234_0.conda"
    info = entry.stat()
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with entry.open("r+b") as fh:
        fh.write(data)
    os.utime(entry, ns=(info.st_atime_ns, info.st_mtime_ns))
    before = _requests(project, entry.name)
    pack_ok(project.dir, tmp_path / "b.tar", "--use-cache", cache)
    assert _requests(project, entry.name) == before + 1
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_a_restored_cache_with_forged_records_is_hashed_again(project: Project, tmp_path: Path) -> None:
    """A cache from elsewhere (actions/cache, a copied folder) cannot vouch for itself: its records
    name other inodes and ctimes. Here a poisoned copy keeps every record and its sizes."""
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    restored = tmp_path / "restored"
    shutil.copytree(cache, restored)  # copy2: mtimes kept, inodes and ctimes new
    entry = restored / "linux-64" / "libgreet-1.2.3-h1234_0.conda"
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    before = _requests(project, entry.name)
    pack_ok(project.dir, tmp_path / "b.tar", "--use-cache", restored)
    assert _requests(project, entry.name) == before + 1
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_records_half_written_by_a_killed_run_are_removed(project: Project, tmp_path: Path) -> None:
    """A run killed while writing a record leaves ``.<name>.<pid>.<random>.part``; the next run
    removes those of dead writers and keeps those of live ones."""
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    records = cache / ".verified" / "linux-64"
    name = next(records.iterdir()).name
    stale = [records / f".{name}.{dead}.k2j_x9.part", cache / ".verified" / "packs" / f".abc.{dead}.zz.part"]
    live = records / f".{name}.{os.getpid()}.q1.part"
    for path in [*stale, live]:
        path.write_text("{")
    pack_ok(project.dir, tmp_path / "b.tar", "--use-cache", cache)
    assert [p.exists() for p in stale] == [False, False]
    assert live.exists()


# --- records someone else wrote -----------------------------------------------------------------
# The attacker can write the cache folder and knows the record format (the source is public); only
# the per-user key outside the cache is secret. Records are forged with a fresh fingerprint of the
# file as it is now, so only the key tells them from ours (test_records_forged_with_the_right_key…
# shows the forgery is otherwise faithful).


def _forge_entry_record(cache: Path, key: str, sha256: str, mac_key: bytes | None) -> None:
    info = (cache / key).stat()
    fingerprint = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    record: dict[str, object] = {"sha256": sha256, "fingerprint": fingerprint}
    if mac_key is not None:
        record["mac"] = record_mac(mac_key, "entry", key, sha256, fingerprint)
    path = cache / ".verified" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _forge_pack_records(cache: Path, sha256: str, mac_key: bytes | None) -> int:
    """Every remembered pack now claims ``sha256`` (its size kept); returns how many there were."""
    packs = cache / ".verified" / "packs"
    records = list(packs.iterdir()) if packs.is_dir() else []
    for path in records:
        size = json.loads(path.read_bytes())["size"]
        record: dict[str, object] = {"sha256": sha256, "size": size}
        if mac_key is not None:
            record["mac"] = record_mac(mac_key, "pack", path.name, sha256, size)
        path.write_text(json.dumps(record))
    return len(records)


def _tamper(entry: Path) -> bytes:
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    return bytes(data)


def _pack_json(project: Project, out: Path, cache: Path) -> tuple[str, str]:
    """Pack with ``--json -v``: the sha256 it reports, and its log."""
    proc = pack_ok(project.dir, out, "--use-cache", cache, "--json", "-v")
    return json.loads(proc.stdout)["packs"][0]["sha256"], proc.stderr.decode()


@pytest.mark.parametrize(
    ("claim", "mac", "pack_records"),
    [
        ("lockfile", "none", "kept"),  # issue 14 as reported: the honest pack's sha256 for other bytes
        ("lockfile", "another key", "forged"),
        ("tampered", "none", "forged"),
    ],
)
def test_a_tampered_entry_with_a_rewritten_record_is_downloaded_again(
    project: Project, tmp_path: Path, claim: str, mac: str, pack_records: str
) -> None:
    """Change a warm cache's entry and rewrite its record to match (fresh fingerprint; the sha256
    the lockfile expects, or the new bytes' own), and maybe every remembered pack's sha256. The pack
    must report the sha256 of the file it wrote, with the entry fetched again."""
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    honest = (tmp_path / "a.tar").read_bytes()
    entry = cache / ENTRY
    lockfile_sha = hashlib.sha256(entry.read_bytes()).hexdigest()
    tampered = _tamper(entry)
    attacker_key = os.urandom(32) if mac == "another key" else None
    claimed = lockfile_sha if claim == "lockfile" else hashlib.sha256(tampered).hexdigest()
    _forge_entry_record(cache, ENTRY, claimed, attacker_key)
    if pack_records == "forged":
        assert _forge_pack_records(cache, "0" * 64, attacker_key) >= 1 or not PERSISTENT_RECORDS
    before = _requests(project, entry.name)
    reported, _ = _pack_json(project, tmp_path / "b.tar", cache)
    written = (tmp_path / "b.tar").read_bytes()
    assert reported == hashlib.sha256(written).hexdigest()
    assert written == honest
    assert _requests(project, entry.name) == before + 1
    assert entry.read_bytes() != tampered


@needs_records
def test_a_rewritten_pack_record_is_not_reported(project: Project, tmp_path: Path) -> None:
    """Entries untouched, every entry trusted: only the pack's remembered sha256 is forged. The warm
    pack (copied in the kernel, never read) must hash what it wrote instead of reporting it."""
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    assert _forge_pack_records(cache, "0" * 64, os.urandom(32)) >= 1
    reported, err = _pack_json(project, tmp_path / "b.tar", cache)
    assert reported == hashlib.sha256((tmp_path / "b.tar").read_bytes()).hexdigest()
    assert "remembered" not in err, err
    reported, err = _pack_json(project, tmp_path / "c.tar", cache)  # and the honest record is back
    assert reported == hashlib.sha256((tmp_path / "c.tar").read_bytes()).hexdigest()
    assert "remembered" in err, err


@needs_records
def test_records_of_another_key_are_not_trusted(project: Project, tmp_path: Path, state: Path) -> None:
    """The same cache, the same files, fingerprints that still match: records made with another
    user's or machine's key (a cache restored or shared from elsewhere) are not trusted, and the
    entries are checked again and recorded with this user's key."""
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    _, err = _pack_json(project, tmp_path / "b.tar", cache)
    assert "remembered" in err, err  # with the key that made the records: trusted
    other = {STATE_DIR_ENV: str(tmp_path / "other-user")}
    proc = pack_ok(project.dir, tmp_path / "c.tar", "--use-cache", cache, "--json", "-v", env=other)
    assert "remembered" not in proc.stderr.decode() and "in place" in proc.stderr.decode(), proc.stderr.decode()
    reported = json.loads(proc.stdout)["packs"][0]["sha256"]
    assert reported == hashlib.sha256((tmp_path / "c.tar").read_bytes()).hexdigest()
    other_key = bytes.fromhex((tmp_path / "other-user" / KEY_FILE).read_text())
    record = json.loads((cache / ".verified" / ENTRY).read_bytes())
    assert record["mac"] == record_mac(other_key, "entry", ENTRY, record["sha256"], record["fingerprint"])
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "c.tar").read_bytes()


@needs_records
def test_records_forged_with_the_right_key_are_trusted(project: Project, tmp_path: Path, state: Path) -> None:
    """The key is all that stands between a forged record and trust: the same forgery as above,
    made with this user's key, is accepted (the entry is not fetched again). So the key must stay
    private to the user, outside any cache (docs/trust.md)."""
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    entry = cache / ENTRY
    sha = hashlib.sha256(entry.read_bytes()).hexdigest()
    entry.write_bytes(entry.read_bytes())  # same bytes, new ctime: only a record can vouch for it
    _forge_entry_record(cache, ENTRY, sha, bytes.fromhex((state / KEY_FILE).read_text()))
    before = _requests(project, entry.name)
    reported, err = _pack_json(project, tmp_path / "b.tar", cache)
    assert _requests(project, entry.name) == before
    assert "remembered" in err, err
    assert reported == hashlib.sha256((tmp_path / "b.tar").read_bytes()).hexdigest()


@needs_records
def test_a_key_others_can_read_is_not_used(project: Project, tmp_path: Path, state: Path) -> None:
    cache = tmp_path / "cache"
    pack_ok(project.dir, tmp_path / "a.tar", "--use-cache", cache)
    (state / KEY_FILE).chmod(0o644)
    reported, err = _pack_json(project, tmp_path / "b.tar", cache)
    assert "not private to this user" in err and "remembered" not in err, err
    assert reported == hashlib.sha256((tmp_path / "b.tar").read_bytes()).hexdigest()
