"""A pack written in place: headers first, then each package downloaded straight into its slot.

When every package's size is known from the lockfile, the whole archive layout is known before a
byte is downloaded: each member's offset follows from the sizes of the members before it. So
instead of downloading into a staging folder and copying every byte again into the tar (twice
the writes, on a machine where writing is what costs), the skeleton — headers, metadata,
``repodata.json`` and padding — is written first, and each download writes its bytes at its
member's offset. With a download cache (``--use-cache``) the download is committed there and
then copied into its slot by the kernel (``fill_slot``). :class:`FrontierHasher` hashes the
archive behind the slots as they fill, in archive order.

A size that turns out wrong (the lockfile's ``size`` disagrees with the bytes that match its hash)
raises :class:`SlotSizeError`; the caller then packs the ordinary way, so such lockfiles still
pack exactly as before.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .cache import CHUNK
from .compat import pwrite, read_at
from .layout import Entry, write_entries
from .model import Artifact
from .tarwriter import DeterministicTarWriter

#: Positioned reads and writes (``os.pwrite``, ``os.preadv``): everything here needs them; where
#: they are missing (Windows; macOS before 11 has no preadv) packs are written the ordinary way.
#: Tested on ``sys.platform`` first so that mypy --platform win32 knows it is False there.
if sys.platform == "win32":
    POSITIONED_IO = False
else:
    POSITIONED_IO = hasattr(os, "pwrite") and hasattr(os, "preadv")


class SlotSizeError(Exception):
    """A package's bytes do not have the size the lockfile gave; its slot cannot hold them."""


@dataclass
class ArchiveSlot:
    """``size`` bytes at ``offset`` of the open file ``fd``: where one package goes in the pack."""

    fd: int
    offset: int
    size: int
    #: Set once the bytes in the slot are complete and verified.
    filled: threading.Event = field(default_factory=threading.Event)


class SlotWriter:
    """A write-only file over one slot; refuses to write past its end."""

    def __init__(self, slot: ArchiveSlot, artifact: Artifact) -> None:
        self.slot = slot
        self.artifact = artifact
        self.position = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        if self.position + len(view) > self.slot.size:
            # Not an error yet: wrong content is retried like any hash mismatch. Only bytes that
            # match the hash and still do not fit prove the lockfile's size wrong (check_complete).
            self.position += len(view)
            return len(data)
        while view:
            n = pwrite(self.slot.fd, view, self.slot.offset + self.position)
            self.position += n
            view = view[n:]
        return len(data)

    def check_complete(self) -> None:
        """Called once the bytes matched their hash: they must also fill the slot exactly.

        Raises :class:`SlotSizeError`, which makes the caller pack the ordinary way."""
        if self.position != self.slot.size:
            raise SlotSizeError(
                f"{self.artifact.file_name} has {self.position} bytes, its lockfile says {self.slot.size}"
            )

    def __enter__(self) -> SlotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def slot_sizes(artifacts: list[Artifact]) -> dict[str, int] | None:
    """archive path → size for every artifact, or None when any size is unknown."""
    sizes: dict[str, int] = {}
    for artifact in artifacts:
        if not artifact.size or artifact.size < 0:
            return None
        sizes[artifact.archive_path] = artifact.size
    return sizes


def write_skeleton(
    entries: list[Entry], sizes: dict[str, int], out: BinaryIO, *, finish: bool = True
) -> dict[str, ArchiveSlot]:
    """Write every header, inline file and padding; leave a hole per package. Returns its slots.
    With ``finish`` False the archive is left open for entries appended after it."""
    writer = DeterministicTarWriter(out)
    offsets: dict[str, int] = {}

    def hole(entry: Entry) -> None:
        offsets[entry.path] = writer.add_hole(entry.path, sizes[entry.path])

    write_entries(writer, entries, hole, finish=finish)
    fd = out.fileno()
    return {path: ArchiveSlot(fd, offset, sizes[path]) for path, offset in offsets.items()}


def copy_into_slot(source: BinaryIO, slot: ArchiveSlot, artifact: Artifact) -> None:
    """Copy a file a plugin fetched to a path into its slot (its hash was checked already)."""
    size = os.fstat(source.fileno()).st_size
    if size != slot.size or fill_slot(source.fileno(), slot) != slot.size:
        raise SlotSizeError(f"{artifact.file_name} has {size} bytes, its lockfile says {slot.size}")


def hash_range(fd: int, digest: Any, start: int, stop: int | None = None) -> int:
    """Feed bytes ``start`` to ``stop`` (or to the end) of an open file into ``digest`` with positioned
    reads (the file offset is left alone); returns where it stopped."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    position = start
    while stop is None or position < stop:
        want = CHUNK if stop is None else min(CHUNK, stop - position)
        n = read_at(fd, view[:want], position)
        if not n:
            if stop is not None:
                raise OSError(f"file ends at {position}, expected {stop} bytes")
            break
        digest.update(view[:n])
        position += n
    return position


def file_sha256(fd: int) -> tuple[str, int]:
    """sha256 and size of the whole open file."""
    sha = hashlib.sha256()
    size = hash_range(fd, sha, 0)
    return sha.hexdigest(), size


def slot_digest(slot: ArchiveSlot, algorithm: str) -> str:
    """The hex digest of what a slot holds now (for fetchers that did not hash as they wrote)."""
    digest = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    hash_range(slot.fd, digest, slot.offset, slot.offset + slot.size)
    return digest.hexdigest()


def fill_slot(source_fd: int, slot: ArchiveSlot) -> int:
    """Copy a file into its slot, in the kernel where it can (``copy_file_range``: no bytes pass
    through Python, and file systems with reflinks share the blocks). Returns the bytes copied,
    fewer than the slot's size only if the source is shorter."""
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < slot.size:
                n = os.copy_file_range(source_fd, slot.fd, slot.size - done, done, slot.offset + done)
                if not n:
                    return done
                done += n
            return done
        except OSError:
            pass  # EXDEV, ENOSYS, EINVAL on some file systems: copy through memory instead
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while done < slot.size:
        n = read_at(source_fd, view[: min(CHUNK, slot.size - done)], done)
        if not n:
            break
        written = 0
        while written < n:
            written += pwrite(slot.fd, view[written:n], slot.offset + done + written)
        done += n
    return done


class FrontierHasher:
    """Hashes a pack written in place from its first byte while later slots are still downloading.

    sha256 is sequential, so the thread waits for each slot in archive order to be filled and
    hashes up to its end; only what follows the last slot to arrive is left for the end of the
    run, instead of the whole file."""

    def __init__(self, fd: int, slots: list[ArchiveSlot], end: int) -> None:
        self.fd, self.end = fd, end
        self.slots = sorted(slots, key=lambda s: s.offset)
        self.sha256 = hashlib.sha256()
        self.position = 0
        self.cancelled = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="pack-hash", daemon=True)
        self.thread.start()

    def _hash_to(self, stop: int) -> None:
        self.position = hash_range(self.fd, self.sha256, self.position, stop)

    def _run(self) -> None:
        try:
            for slot in self.slots:
                slot.filled.wait()
                if self.cancelled:
                    return
                self._hash_to(slot.offset + slot.size)
            self._hash_to(self.end)
        except BaseException as exc:  # reported by result()
            self.error = exc

    def cancel(self) -> None:
        self.cancelled = True
        for slot in self.slots:
            slot.filled.set()
        self.thread.join()

    def result(self) -> tuple[str, int]:
        """sha256 and size of the whole pack, once every slot is filled."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.sha256.hexdigest(), self.position

    def running_hash(self) -> Any:
        """The sha256 object once every slot is hashed, to go on with bytes appended after them."""
        self.result()
        return self.sha256
