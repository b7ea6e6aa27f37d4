"""Turning repodata-style record dicts back into py-rattler records, for validation and install."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import rattler

from .errors import PixiPackError

#: RepoDataRecord.to_json adds these; repodata.json holds plain PackageRecords, as pixi-pack writes.
_NOT_IN_REPODATA = ("fn", "url", "channel")


def repodata_entry(record: rattler.PackageRecord) -> dict[str, Any]:
    """A record as it appears under ``packages.conda`` in ``repodata.json``."""
    data: dict[str, Any] = json.loads(record.to_json())
    for key in _NOT_IN_REPODATA:
        data.pop(key, None)
    return data


def repodata_records(repodata: Path, channel_url: str) -> list[rattler.RepoDataRecord]:
    """The records of one ``repodata.json``, their URLs under ``channel_url``."""
    try:
        return list(rattler.RepoData.from_path(repodata).into_repo_data(rattler.Channel(channel_url)))
    except Exception as exc:  # py-rattler reports schema problems with its own exception types
        raise PixiPackError(f"{repodata} has an invalid record: {' '.join(str(exc).split())}") from None


def records_from_dicts(entries: Iterable[tuple[str, dict[str, Any]]]) -> list[rattler.RepoDataRecord]:
    """Records from ``(file_name, record dict)`` pairs, through py-rattler's own repodata parser."""
    by_subdir: dict[str, dict[str, dict[str, Any]]] = {}
    for file_name, record in entries:
        by_subdir.setdefault(str(record.get("subdir") or "noarch"), {})[file_name] = record
    out: list[rattler.RepoDataRecord] = []
    with tempfile.TemporaryDirectory() as tmp:
        for subdir, packages in by_subdir.items():
            path = Path(tmp) / subdir / "repodata.json"
            path.parent.mkdir()
            path.write_text(json.dumps({"info": {"subdir": subdir}, "packages.conda": packages}))
            out += repodata_records(path, "file:///pixi-pack-ci-plan/")
    return out
