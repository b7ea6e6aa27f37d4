"""A pack as a folder (``--directory-only``): rsync-friendly; built beside the target and
renamed into place, an existing one moved aside only then."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ArchiveError
from ..layout import Entry
from ..model import PackResult
from .base import PackWriter, WriteJob, make_parent, partial_folder


def _fill(entries: list[Entry], target: Path) -> None:
    for entry in entries:
        path = target / entry.path
        if entry.is_dir:
            path.mkdir(exist_ok=True)
        elif entry.data is not None:
            path.write_bytes(entry.data)
        else:
            assert entry.source is not None
            shutil.copyfile(entry.source, path)


class FolderWriter(PackWriter):
    name = "folder"

    def accepts(self, job: WriteJob) -> bool:
        return job.plan.kind == "directory" and job.plan.output is not None

    def write(self, job: WriteJob) -> PackResult:
        target = job.plan.output
        assert target is not None
        total = sum(job.sizes.values())
        with job.progress(total):
            make_parent(target)
            old: Path | None = None
            try:
                with partial_folder(target) as tmp:
                    _fill(job.entries, tmp)
                    os.chmod(tmp, 0o755)
                    if target.exists():
                        if not target.is_dir():
                            raise ArchiveError(f"{target} exists and is not a directory")
                        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                        os.rename(target, old / "previous")
                    os.rename(tmp, target)
            except OSError as exc:
                raise ArchiveError(f"could not write pack directory {target}: {exc}") from None
            finally:
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        return job.result(target, None, total)
