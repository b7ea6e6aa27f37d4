"""The pack format: what goes where in a pixi-pack format-1 archive, and its metadata files.

Everything here is produced as bytes from the plan alone, so the same lockfile and packages
always give the same archive.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rattler

from .errors import ArchiveError
from .model import CondaArtifact, PackPlan
from .tarwriter import DeterministicTarWriter

FORMAT_VERSION = "1"
#: The pixi-pack release whose archive format we write. pixi-unpack only warns when this differs
#: from its own version, so we name the release we match rather than our own version.
PIXI_PACK_COMPAT_VERSION = "0.7.10"
METADATA_FILE = "pixi-pack.json"
ENVIRONMENT_FILE = "environment.yml"
CHANNEL_DIR = "channel"
PYPI_DIR = "pypi"
MAX_METADATA_BYTES = 64 * 1024


def _pretty_json(data: Any) -> bytes:
    # serde_json::to_string_pretty: two spaces, ": ", no trailing newline, UTF-8 kept as is.
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")


def metadata_json(platform: str) -> bytes:
    return _pretty_json(
        {"version": FORMAT_VERSION, "pixi-pack-version": PIXI_PACK_COMPAT_VERSION, "platform": platform}
    )


def repodata_json(subdir: str, packages: list[CondaArtifact]) -> bytes:
    conda = {a.file_name: dict(sorted(a.record.items())) for a in sorted(packages, key=lambda a: a.file_name)}
    return _pretty_json({"info": {"subdir": subdir}, "packages": {}, "packages.conda": conda, "repodata_version": 2})


def environment_yml(plan: PackPlan) -> bytes:
    lines = ["channels:", f"  - ./{CHANNEL_DIR}", "  - nodefaults", "dependencies:"]
    lines += [f"  - {a.name}={a.version}={a.build}" for a in plan.conda]
    if plan.pypi:
        lines += ["  - pip:", "    - --no-index", f"    - --find-links ./{PYPI_DIR}"]
        lines += [f"    - {w.name}=={w.version}" for w in plan.pypi]
    return ("\n".join(lines) + "\n").encode("utf-8")


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory (``source`` and ``data`` both None), bytes, or a file on disk."""

    path: str
    data: bytes | None = None
    source: Path | None = None

    @property
    def is_dir(self) -> bool:
        return self.data is None and self.source is None

    def sort_key(self) -> tuple[bytes, ...]:
        # Depth-first with siblings sorted by name bytes, as walkdir's sort_by_file_name.
        return tuple(part.encode("utf-8") for part in self.path.split("/"))


def write_entries(
    writer: DeterministicTarWriter, entries: list[Entry], add_file: Callable[[Entry], None], *, finish: bool = True
) -> None:
    """Folders and inline files go straight to ``writer``; ``add_file`` writes each file entry
    (copied, hashed on the way, or left as a hole to fill). Ends the archive unless ``finish`` is
    False (more entries follow)."""
    for entry in entries:
        if entry.is_dir:
            writer.add_directory(entry.path)
        elif entry.data is not None:
            writer.add_bytes(entry.path, entry.data)
        else:
            add_file(entry)
    if finish:
        writer.finish()


def pack_entries(plan: PackPlan, files: dict[str, Path]) -> list[Entry]:
    """All entries of the pack in archive order. ``files`` maps cache keys to verified local files."""
    entries: list[Entry] = []
    by_subdir: dict[str, list[CondaArtifact]] = {}
    for artifact in plan.conda:
        by_subdir.setdefault(artifact.subdir, []).append(artifact)
    seen: set[str] = set()
    # Always there, even for an environment with no packages, so an unpacker can tell a pack
    # from any tar that holds a pixi-pack.json.
    entries.append(Entry(CHANNEL_DIR))
    for subdir, packages in by_subdir.items():
        entries.append(Entry(f"{CHANNEL_DIR}/{subdir}"))
        entries.append(Entry(f"{CHANNEL_DIR}/{subdir}/repodata.json", data=repodata_json(subdir, packages)))
        for artifact in packages:
            if artifact.archive_path in seen:
                raise ArchiveError(f"the pack would contain {artifact.archive_path} twice; remove one of them")
            seen.add(artifact.archive_path)
            entries.append(Entry(artifact.archive_path, source=files[artifact.cache_key]))
    if plan.pypi:
        entries.append(Entry(PYPI_DIR))
        for wheel in plan.pypi:
            if wheel.archive_path in seen:
                raise ArchiveError(f"the pack would contain {wheel.archive_path} twice; remove one of them")
            seen.add(wheel.archive_path)
            entries.append(Entry(wheel.archive_path, source=files[wheel.cache_key]))
    entries.append(Entry(ENVIRONMENT_FILE, data=environment_yml(plan)))
    entries.append(Entry(METADATA_FILE, data=metadata_json(plan.platform)))
    entries.sort(key=Entry.sort_key)
    return entries


def repodata_entries(raw: bytes, where: str) -> dict[str, dict[str, Any]]:
    """File name → record from a ``repodata.json`` (``packages`` and ``packages.conda`` merged), validated."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{where} is invalid: {exc}") from None
    if not isinstance(data, dict):
        raise ArchiveError(f"{where} is not a JSON object")
    entries: dict[str, dict[str, Any]] = {}
    for key in ("packages", "packages.conda"):
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise ArchiveError(f"{where}: {key!r} must be an object")
        for file_name, record in value.items():
            if not isinstance(record, dict) or "/" in file_name or file_name in ("", ".", ".."):
                raise ArchiveError(f"{where} has an invalid entry {file_name!r}")
            entries[file_name] = record
    return entries


@dataclass(frozen=True)
class PackMetadata:
    version: str
    platform: str
    pixi_pack_version: str | None


def parse_metadata(raw: bytes) -> PackMetadata:
    """Validate ``pixi-pack.json`` as pixi-unpack does: string version ``"1"`` and a known platform."""
    if len(raw) > MAX_METADATA_BYTES:
        raise ArchiveError(f"{METADATA_FILE} is {len(raw)} bytes; a real one is well under 1 KiB")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{METADATA_FILE} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ArchiveError(f"{METADATA_FILE} must be a JSON object")
    version = data.get("version")
    if not isinstance(version, str):
        raise ArchiveError(f"{METADATA_FILE}: 'version' must be a string, got {json.dumps(version)}")
    if version != FORMAT_VERSION:
        raise ArchiveError(f"unsupported pack format version {version!r} (this tool reads version {FORMAT_VERSION!r})")
    platform = data.get("platform")
    if not isinstance(platform, str):
        raise ArchiveError(f"{METADATA_FILE}: 'platform' must be a string")
    try:
        rattler.Subdir(platform)
    except Exception:
        raise ArchiveError(f"{METADATA_FILE}: unknown platform {platform!r}") from None
    ppv = data.get("pixi-pack-version")
    if ppv is not None and not isinstance(ppv, str):
        raise ArchiveError(f"{METADATA_FILE}: 'pixi-pack-version' must be a string")
    return PackMetadata(version=version, platform=platform, pixi_pack_version=ppv)
