"""A tar whose every file is a trusted cache entry: the skeleton of headers, then each file
copied into its slot in the kernel; its sha256 remembered for the same layout, else read once."""

from __future__ import annotations

import hashlib
import json
import logging
import os

from ..atomic import atomic_output
from ..errors import ArchiveError
from ..layout import Entry
from ..model import Artifact, PackResult
from ..slots import POSITIONED_IO, ArchiveSlot, file_sha256, fill_slot, slot_digest, write_skeleton
from .base import CorruptCacheEntryError, PackWriter, WriteJob, make_parent, open_cached

log = logging.getLogger("pixi_pack_ci")

#: Changes whenever the bytes the tar writer makes for the same entries could change; part of
#: every remembered pack's key, so an upgrade never trusts an older writer's hashes.
TAR_LAYOUT_VERSION = "pixi-pack-ci tar 1"


def layout_digest(entries: list[Entry], owners: dict[str, Artifact], trusted: dict[str, str]) -> str | None:
    """A digest of everything that decides a tar pack's bytes, when every file in it is trusted.
    ``owners`` maps archive paths to their artifacts; ``trusted`` cache keys to content sha256."""
    parts: list[list[str]] = []
    for entry in entries:
        if entry.is_dir:
            parts.append([entry.path, "dir"])
        elif entry.data is not None:
            parts.append([entry.path, "bytes", hashlib.sha256(entry.data).hexdigest()])
        else:
            artifact = owners.get(entry.path)
            content = trusted.get(artifact.cache_key) if artifact is not None else None
            if content is None:
                return None
            parts.append([entry.path, "file", content, str(artifact.size or "")])  # type: ignore[union-attr]
    return hashlib.sha256(json.dumps([TAR_LAYOUT_VERSION, parts]).encode()).hexdigest()


def _copy_files(job: WriteJob, slots: dict[str, ArchiveSlot]) -> bool:
    """Copy every file into its slot; returns whether every copied file still matched its record
    (else the bytes that did land were checked against the lockfile)."""
    all_trusted = True
    for entry in job.entries:
        if entry.source is None:
            continue
        artifact = job.owners[entry.path]
        slot = slots[entry.path]
        with open_cached(entry.source, artifact) as src:
            copied = fill_slot(src.fileno(), slot)
            copied_from = os.fstat(src.fileno())  # the file copied, whatever the path names now
        if copied != job.sizes[entry.path]:
            raise CorruptCacheEntryError(artifact)
        if job.cache.recall(artifact, entry.source, copied_from) is None:
            # Changed or replaced while we copied it (another run sharing the cache may have
            # committed its own download): check the bytes that did land in the pack.
            all_trusted = False
            if artifact.sha256 and slot_digest(slot, "sha256") != artifact.sha256.lower():
                raise CorruptCacheEntryError(artifact)
    return all_trusted


class FromCacheWriter(PackWriter):
    name = "from-cache"

    def accepts(self, job: WriteJob) -> bool:
        plan = job.plan
        return plan.kind == "tar" and plan.output is not None and POSITIONED_IO and self._layout(job) is not None

    def _layout(self, job: WriteJob) -> str | None:
        return layout_digest(job.entries, job.owners, job.cache.trusted)

    def write(self, job: WriteJob) -> PackResult:
        target, layout = job.plan.output, self._layout(job)
        assert target is not None and layout is not None
        make_parent(target)
        with job.progress(sum(job.sizes.values())) as progress:
            try:
                sha256, size = self._copy(job, layout)
            except OSError as exc:
                raise ArchiveError(f"could not write pack {target}: {exc}") from None
            progress.advance(sum(job.sizes.values()))
        return job.result(target, sha256, size)

    def _copy(self, job: WriteJob, layout: str) -> tuple[str, int]:
        target = job.plan.output
        assert target is not None
        remembered = job.cache.recall_pack(layout)
        with atomic_output(target) as out:
            slots = write_skeleton(job.entries, job.sizes, out)
            out.flush()
            all_trusted = _copy_files(job, slots)
            if not all_trusted:
                remembered = None
            size = os.fstat(out.fileno()).st_size
            if remembered is not None and remembered[1] == size:
                log.info("%s: %d files copied from the cache; sha256 remembered", target.name, len(job.owners))
                sha256 = remembered[0]
            else:
                log.info("%s: %d files copied from the cache", target.name, len(job.owners))
                sha256, size = file_sha256(out.fileno())
        if all_trusted and remembered is None:
            job.cache.remember_pack(layout, sha256, size)
        return sha256, size
