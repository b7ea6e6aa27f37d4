"""Pack writers: one module per output kind, behind one interface (:class:`PackWriter`).

``run_pack`` plans, fetches and hands each plan to the first writer here that accepts it.
Adding an output kind is a new module with a :class:`PackWriter` subclass and its place in
:data:`WRITERS` (order matters: the faster special cases come before the general ones).
"""

from __future__ import annotations

from .base import CorruptCacheEntryError, PackWriter, WriteJob
from .folder import FolderWriter
from .from_cache import FromCacheWriter, layout_digest
from .in_place import InPlaceWriter
from .self_extracting import SelfExtractingWriter
from .tar import TarWriter

#: Tried in this order; the first that accepts a job writes it.
WRITERS: tuple[PackWriter, ...] = (
    InPlaceWriter(),
    FromCacheWriter(),
    FolderWriter(),
    SelfExtractingWriter(),
    TarWriter(),
)


def writer_for(job: WriteJob, *, fetches: bool) -> PackWriter | None:
    """The writer for ``job``: among those that fetch for themselves (before the run's fetch), or
    among those given the fetched files."""
    return next((w for w in WRITERS if w.fetches == fetches and w.accepts(job)), None)


__all__ = ["WRITERS", "CorruptCacheEntryError", "PackWriter", "WriteJob", "layout_digest", "writer_for"]
