"""A pack written in place (see :mod:`pixi_pack_ci.core.slots`): the skeleton first, each package
fetched straight into its slot (or, with a kept cache, committed there and copied in by the
kernel), the pack hashed behind the downloads; wheels, whose sizes lockfiles do not give, are
appended after the last slot. A wrong size in the lockfile raises ``SlotSizeError``: the run then
packs the ordinary way."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from ..atomic import atomic_output
from ..cache import CacheMode
from ..errors import ArchiveError
from ..executable import HashingSink
from ..fetch import fetch_artifacts
from ..layout import Entry, pack_entries
from ..model import CondaArtifact, PackResult
from ..progress import ProgressReporter
from ..slots import POSITIONED_IO, FrontierHasher, SlotSizeError, slot_sizes, write_skeleton
from .base import PackWriter, WriteJob, make_parent, write_tar
from .from_cache import layout_digest

log = logging.getLogger("pixi_pack_ci")


def _split_tail(entries: list[Entry], sizes: dict[str, int]) -> tuple[list[Entry], list[Entry]]:
    """The entries that get slots, and the ones after them that are appended once downloaded
    (wheels: ``pypi/`` sorts last). Raises :class:`SlotSizeError` if a file without a known size
    came before a slot, which the layout never does today."""
    first = next((i for i, e in enumerate(entries) if e.source is not None and e.path not in sizes), len(entries))
    head, tail = entries[:first], entries[first:]
    if any(e.path in sizes for e in tail):
        raise SlotSizeError(f"{tail[0].path} has no size and comes before packages that do")
    return head, tail


class InPlaceWriter(PackWriter):
    name = "in-place"
    fetches = True

    def accepts(self, job: WriteJob) -> bool:
        """One plain tar going to a file, positioned I/O, every conda size known from the lockfile,
        and something to fetch or check (with every entry trusted already, the from-cache writer
        is faster still: it may know the pack's sha256 without reading it)."""
        plan = job.plan
        if plan.kind != "tar" or plan.output is None or not POSITIONED_IO:
            return False
        if all(job.cache.recall(a, job.cache.path_for(a)) is not None for a in plan.artifacts):
            return False
        return self._sizes(job) is not None

    def _sizes(self, job: WriteJob) -> dict[str, int] | None:
        return slot_sizes([a for a in job.plan.artifacts if isinstance(a, CondaArtifact)])

    def write(self, job: WriteJob) -> PackResult:
        plan, run = job.plan, job.run
        target, sizes = plan.output, self._sizes(job)
        assert target is not None and sizes is not None
        # The sources of slots are never read: each of those entries becomes a hole its download fills.
        entries = pack_entries(plan, {a.cache_key: Path(a.cache_key) for a in plan.artifacts})
        head, tail = _split_tail(entries, sizes)
        make_parent(target)
        how = "copied from the cache" if run.cache_mode is CacheMode.KEEP else "downloaded straight into it"
        log.info("writing %s in place: each package is %s", target.name, how)
        try:
            with atomic_output(target) as out:
                sha256, size = self._fill(job, head, tail, sizes, out)
        except OSError as exc:
            raise ArchiveError(f"could not write pack {target}: {exc}") from None
        finally:
            run.slots = {}
        if run.cache_mode is CacheMode.KEEP and not tail:
            # Every slot was checked as it was filled: the next pack of the same layout from this
            # cache knows its sha256 without reading it. (Wheels appended after the slots may be
            # copied unread, trusted by their records: such a pack is remembered by the next one.)
            layout = layout_digest(entries, job.owners, job.cache.trusted)
            if layout is not None:
                job.cache.remember_pack(layout, sha256, size)
        return job.result(target, sha256, size)

    def _fill(
        self, job: WriteJob, head: list[Entry], tail: list[Entry], sizes: dict[str, int], out: BinaryIO
    ) -> tuple[str, int]:
        plan, run = job.plan, job.run
        slots = write_skeleton(head, sizes, out, finish=not tail)
        out.flush()
        run.slots = {job.owners[path].cache_key: slot for path, slot in slots.items()}
        fd = out.fileno()
        end = os.fstat(fd).st_size
        hasher = FrontierHasher(fd, list(slots.values()), end)
        total = sum(a.size or 0 for a in plan.artifacts)
        try:
            with ProgressReporter(f"Fetching {len(plan.artifacts)} packages", total, enabled=not job.quiet) as progress:
                run.show_progress(progress)
                files = fetch_artifacts(plan.artifacts, run)
        except BaseException:
            hasher.cancel()
            raise
        if not tail:
            return hasher.result()
        out.seek(end)
        sink = HashingSink(out, hasher.running_hash(), end)
        appended = [replace(e, source=files[job.owners[e.path].cache_key]) if e.source else e for e in tail]
        write_tar(appended, sink, job, None)
        out.flush()
        return sink.sha256.hexdigest(), sink.size
