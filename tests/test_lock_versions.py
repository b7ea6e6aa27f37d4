"""Lockfile versions 4 to 7 all pack to the same archive (py-rattler parses them; we check it holds)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from harness import DemoChannel, pack_ok, run_cli
from support import channel_records, write_lockfile


def _records(channel: DemoChannel) -> list:  # type: ignore[type-arg]
    records = channel_records(channel.path, channel.url)
    return records["linux-64"] + records["noarch"]


def _legacy_lock(version: int, channel: DemoChannel) -> str:
    """The text pixi wrote for lock versions 4/5 (``kind: conda`` entries) and 6 (``conda: URL`` entries)."""
    recs = _records(channel)
    lines = [
        f"version: {version}",
        "environments:",
        "  default:",
        "    channels:",
        f"    - url: {channel.url}",
        "    packages:",
        "      linux-64:",
    ]
    lines += [f"      - conda: {r.url}" for r in recs]
    lines.append("packages:")
    for r in recs:
        if version >= 6:
            lines.append(f"- conda: {r.url}")
        else:
            lines += [
                "- kind: conda",
                f"  name: {r.name.normalized}",
                f"  version: '{r.version}'",
                f"  build: '{r.build}'",
                f"  subdir: {r.subdir}",
                f"  url: {r.url}",
            ]
        lines += [f"  build_number: {r.build_number}", f"  sha256: {r.sha256.hex()}", f"  md5: {r.md5.hex()}"]
        if r.depends:
            lines.append("  depends:")
            lines += [f"  - {d}" for d in r.depends]
        if r.subdir == "noarch":
            lines.append("  noarch: generic")
        lines.append(f"  size: {r.size}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("version", [4, 5, 6])
def test_legacy_lock_versions_pack_identically(version: int, channel: DemoChannel, tmp_path: Path) -> None:
    current = tmp_path / "v7" / "pixi.lock"
    write_lockfile(current, {"default": {"linux-64": _records(channel)}}, channel.url)
    assert current.read_text().startswith("version: 7")
    legacy = tmp_path / f"v{version}" / "pixi.lock"
    legacy.parent.mkdir()
    legacy.write_text(_legacy_lock(version, channel))
    pack_ok(current.parent, tmp_path / "a.tar")
    pack_ok(legacy.parent, tmp_path / "b.tar")
    with tarfile.open(tmp_path / "a.tar") as a, tarfile.open(tmp_path / "b.tar") as b:
        assert a.getnames() == b.getnames()
        for name in a.getnames():
            if a.getmember(name).isdir():
                continue
            data_a, data_b = a.extractfile(name).read(), b.extractfile(name).read()  # type: ignore[union-attr]
            if name.endswith("repodata.json"):
                # the only field older lock formats do not carry is indexed_timestamp
                rec_a, rec_b = json.loads(data_a)["packages.conda"], json.loads(data_b)["packages.conda"]
                for rec in rec_a.values():
                    rec.pop("indexed_timestamp", None)
                for key in rec_a:
                    assert rec_a[key] == rec_b[key], key
            else:
                assert data_a == data_b, name
    run_cli("unpack", tmp_path / "b.tar", "-o", tmp_path / "deploy", check=True)
    assert (tmp_path / "deploy" / "env" / "bin" / "hello-tool").exists()
