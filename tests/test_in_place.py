"""Packs written in place (headers first, each download into its slot): the same bytes as every
other way, and the ordinary way when the lockfile is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Project, pack_ok, run_cli

pytestmark = pytest.mark.usefixtures("no_ci_env")  # these tests describe their own CI environment


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
