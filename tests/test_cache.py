"""The download cache: verified hits, atomic entries, safe to share between concurrent packs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from conftest import Project, pack_ok


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
    cached = sorted(p.name for p in cache.rglob("*") if p.is_file() and p.name != "CACHEDIR.TAG")
    assert cached == project.linux_packages
