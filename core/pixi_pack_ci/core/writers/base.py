"""What every pack writer shares: the :class:`PackWriter` interface, the job it is given, and
the streamed-tar copy loop that checks unverified cache hits on the way."""

from __future__ import annotations

import abc
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, ClassVar

from ..atomic import atomic_output
from ..cache import ArtifactHash, PackageCache
from ..errors import ArchiveError
from ..executable import HashingSink
from ..fetch import FetchRun
from ..layout import Entry, pack_entries, write_entries
from ..model import Artifact, PackPlan, PackResult, artifact_summary
from ..progress import ProgressReporter
from ..tarwriter import DeterministicTarWriter, Writable


class CorruptCacheEntryError(Exception):
    """A cache hit streamed into a pack did not match its lockfile hash (the pack is discarded)."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact.cache_key)
        self.artifact = artifact


@dataclass
class WriteJob:
    """One plan to write, with what the run has for it."""

    plan: PackPlan
    run: FetchRun
    quiet: bool
    #: cache key → verified local file (empty before the fetch).
    files: dict[str, Path] = field(default_factory=dict)
    #: The unpacker embedded in a self-extracting pack.
    unpacker: Path | None = None

    @property
    def cache(self) -> PackageCache:
        return self.run.cache

    @cached_property
    def owners(self) -> dict[str, Artifact]:
        """Archive path → the artifact whose bytes go there."""
        return {a.archive_path: a for a in self.plan.artifacts}

    @cached_property
    def entries(self) -> list[Entry]:
        return pack_entries(self.plan, self.files)

    @cached_property
    def sizes(self) -> dict[str, int]:
        """Archive path → size of each file entry, from the open file (never a stat of the path)."""
        sizes: dict[str, int] = {}
        for e in self.entries:
            if e.source is not None:
                with open_cached(e.source, self.owners.get(e.path)) as fh:
                    sizes[e.path] = os.fstat(fh.fileno()).st_size
        return sizes

    def progress(self, total: int) -> ProgressReporter:
        label = f"Writing {self.plan.environment}-{self.plan.platform_name}"
        return ProgressReporter(label, total, enabled=not self.quiet)

    def result(self, path: Path | None, sha256: str | None, size: int) -> PackResult:
        plan = self.plan
        return PackResult(
            environment=plan.environment,
            platform=plan.platform,
            kind=plan.kind,
            path=path,
            sha256=sha256,
            size=size,
            packages=tuple(artifact_summary(a) for a in plan.artifacts),
            lockfile=plan.lockfile,
            platform_name=plan.platform_name,
        )


class PackWriter(abc.ABC):
    """Writes one kind of pack. A new output kind is one new module with a subclass, plus its
    place in :data:`pixi_pack_ci.core.writers.WRITERS`."""

    #: A short name for logs.
    name: ClassVar[str]
    #: True for a writer that fetches its plan's artifacts itself while it writes (offered before
    #: the run's fetch, and only for a run of one pack); False: offered the fetched files after.
    fetches: ClassVar[bool] = False

    @abc.abstractmethod
    def accepts(self, job: WriteJob) -> bool:
        """Whether this writer can write ``job`` (checked in :data:`WRITERS` order)."""

    @abc.abstractmethod
    def write(self, job: WriteJob) -> PackResult:
        """Write the pack atomically (or to standard output) and describe what was written."""


class _HashingReader:
    """``readinto`` that hashes what it reads, for checking cache hits in the same pass as tarring."""

    def __init__(self, raw: BinaryIO, artifact: Artifact) -> None:
        self.raw = raw
        self.hash = ArtifactHash(artifact)

    def readinto(self, view: memoryview) -> int:
        n = self.raw.readinto(view)  # type: ignore[attr-defined]
        if n:
            self.hash.update(view[:n])
        return int(n or 0)


def open_cached(path: Path, artifact: Artifact | None) -> BinaryIO:
    """Open a fetched file; if it vanished (another run sharing the cache dropped it as corrupt
    after we fetched it), say which artifact to fetch again."""
    try:
        return path.open("rb", buffering=0)
    except FileNotFoundError:
        if artifact is None:
            raise
        raise CorruptCacheEntryError(artifact) from None


def write_tar(entries: list[Entry], out: Writable, job: WriteJob, progress: ProgressReporter | None) -> None:
    """Stream ``entries`` as a tar to ``out``; cache hits the run left unverified are hashed on
    the way, and a mismatch raises :class:`CorruptCacheEntryError` (the caller drops the pack)."""
    writer = DeterministicTarWriter(out)
    unverified, cache = job.run.unverified, job.cache

    def copy(entry: Entry) -> None:
        assert entry.source is not None
        artifact = unverified.get(entry.path)
        with open_cached(entry.source, job.owners.get(entry.path)) as fh:
            size = os.fstat(fh.fileno()).st_size
            if artifact is None:
                writer.add_file(entry.path, fh, size)
            else:
                reader = _HashingReader(fh, artifact)
                writer.add_file(entry.path, reader, size)  # type: ignore[arg-type]
                if not reader.hash.matches():
                    raise CorruptCacheEntryError(artifact)
                unverified.pop(entry.path, None)  # checked once is enough for the other packs
                if reader.hash.algorithm == "sha256":
                    # The record names the file that was read, whatever the path names by now.
                    cache.remember(artifact, entry.source, reader.hash.hexdigest(), os.fstat(fh.fileno()))
        if progress is not None:
            progress.advance(size)

    write_entries(writer, entries, copy)


def make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create output directory {target.parent}: {exc.strerror}") from None


@contextmanager
def partial_folder(target: Path) -> Iterator[Path]:
    """A hidden sibling folder of ``target`` that is removed unless the caller moved it away."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stream_pack(
    job: WriteJob, write_stream: Callable[[Writable, ProgressReporter], HashingSink], mode: int
) -> PackResult:
    """Run ``write_stream`` into standard output, or into a temporary sibling renamed into place."""
    with job.progress(sum(job.sizes.values())) as progress:
        target = job.plan.output
        if target is None:
            sink = write_stream(sys.stdout.buffer, progress)
            return job.result(None, sink.sha256.hexdigest(), sink.size)
        make_parent(target)
        try:
            with atomic_output(target, mode) as out:
                sink = write_stream(out, progress)
        except OSError as exc:
            raise ArchiveError(f"could not write pack {target}: {exc}") from None
        return job.result(target, sink.sha256.hexdigest(), sink.size)
