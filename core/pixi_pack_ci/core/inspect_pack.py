"""``inspect``: what a pack contains, read without extracting it."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from .errors import ArchiveError
from .layout import CHANNEL_DIR, METADATA_FILE, PYPI_DIR, parse_metadata, repodata_entries


def _summarise(metadata_raw: bytes, repodata: dict[str, bytes], sizes: dict[str, int]) -> dict[str, Any]:
    metadata = parse_metadata(metadata_raw)
    packages: list[dict[str, Any]] = []
    for subdir, raw in sorted(repodata.items()):
        entries = repodata_entries(raw, f"{CHANNEL_DIR}/{subdir}/repodata.json")
        for file_name, rec in sorted(entries.items()):
            packages.append(
                {
                    "kind": "conda",
                    "name": rec.get("name"),
                    "version": rec.get("version"),
                    "build": rec.get("build"),
                    "subdir": subdir,
                    "file_name": file_name,
                    "size": sizes.get(f"{CHANNEL_DIR}/{subdir}/{file_name}"),
                    "sha256": rec.get("sha256"),
                }
            )
    for path, size in sorted(sizes.items()):
        if path.startswith(f"{PYPI_DIR}/"):
            packages.append({"kind": "pypi", "file_name": path.split("/", 1)[1], "size": size})
    return {
        "format_version": metadata.version,
        "pixi_pack_version": metadata.pixi_pack_version,
        "platform": metadata.platform,
        "package_count": len(packages),
        "size": sum(sizes.values()),
        "packages": packages,
    }


def inspect_pack(path: Path) -> dict[str, Any]:
    if path.is_dir():
        sizes = {p.relative_to(path).as_posix(): p.stat().st_size for p in path.rglob("*") if p.is_file()}
        metadata_path = path / METADATA_FILE
        if not metadata_path.is_file():
            raise ArchiveError(f"not a pixi-pack archive: {METADATA_FILE} is missing")
        repodata = {p.parent.name: p.read_bytes() for p in (path / CHANNEL_DIR).glob("*/repodata.json")}
        return _summarise(metadata_path.read_bytes()[: 64 * 1024 + 1], repodata, sizes)
    if not path.exists():
        raise ArchiveError(f"pack does not exist: {path}")
    sizes = {}
    repodata = {}
    metadata_raw: bytes | None = None
    try:
        with tarfile.open(path, mode="r|") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                sizes[member.name] = member.size
                parts = member.name.split("/")
                wanted = member.name == METADATA_FILE or (
                    len(parts) == 3 and parts[0] == CHANNEL_DIR and parts[2] == "repodata.json"
                )
                if wanted:
                    fh = tar.extractfile(member)
                    assert fh is not None
                    raw = fh.read(64 * 1024 * 1024 + 1)
                    if member.name == METADATA_FILE:
                        metadata_raw = raw
                    else:
                        repodata[parts[1]] = raw
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{path} is not a valid pack archive: {exc or 'truncated'}") from None
    if metadata_raw is None:
        raise ArchiveError(f"not a pixi-pack archive: {METADATA_FILE} is missing from {path}")
    summary = _summarise(metadata_raw, repodata, sizes)
    summary["archive_size"] = path.stat().st_size
    return summary
