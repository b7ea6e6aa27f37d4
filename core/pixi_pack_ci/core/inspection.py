"""``inspect``: what a pack contains, read without extracting it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .extract import scan_folder, scan_pack
from .layout import CHANNEL_DIR, PYPI_DIR, parse_metadata, repodata_entries


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
    """A pack file or folder's platform, format and packages, read with extraction's member
    checks (:func:`.extract.scan_pack`) but nothing written."""
    if path.is_dir():
        index = scan_folder(path)
        return _summarise(index.metadata, index.repodata, index.sizes)
    index = scan_pack(path)
    summary = _summarise(index.metadata, index.repodata, index.sizes)
    summary["archive_size"] = path.stat().st_size
    return summary
