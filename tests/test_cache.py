"""The download cache: verified hits, atomic entries, safe to share between concurrent packs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Project, cache_entries, pack_ok


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


def test_concurrent_packs_share_one_cache(project: Project, tmp_path: Path) -> None:
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
