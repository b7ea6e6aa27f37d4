"""Taking packs apart and putting them together again, member by member, for tests that need a
pack that is broken in one exact way."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

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
