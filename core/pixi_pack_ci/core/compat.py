"""File I/O that differs between operating systems, in one place.

The branches test ``sys.platform`` rather than ``hasattr(os, ...)`` so that mypy, run with
``--platform win32`` and ``--platform darwin`` by scripts/test.sh, checks each system's own path
against typeshed, which declares POSIX-only functions such as ``os.pwrite`` only where they exist.
"""

from __future__ import annotations

import errno
import os
import sys
import threading

#: Serialises seek-then-read on systems without positioned reads: the file position is shared
#: by every thread reading the same descriptor.
_seek_lock = threading.Lock()


def read_at(fd: int, view: memoryview, offset: int) -> int:
    """Read into ``view`` from ``offset`` of the open file ``fd``; returns how many bytes were read
    (0 at the end of the file). With positioned reads (everywhere but Windows) the file position is
    left alone and threads may read at once."""
    if sys.platform != "win32":
        if hasattr(os, "preadv"):  # macOS has it from 11 on; Linux and the BSDs always
            return os.preadv(fd, [view], offset)
        data = os.pread(fd, len(view), offset)
    else:
        # Windows has neither pread nor preadv: one shared position, so one reader at a time.
        with _seek_lock:
            os.lseek(fd, offset, os.SEEK_SET)
            data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)


def pwrite(fd: int, data: memoryview, offset: int) -> int:
    """Write ``data`` at ``offset`` of ``fd`` without moving its position; returns the bytes written.

    Only the in-place pack writer (``slots``) calls this, and only where ``slots.POSITIONED_IO``
    holds. Windows has no ``pwrite``, and a seek-then-write stand-in would move the position that
    the pack's own file object writes at, so there the packs are written front to back instead."""
    if sys.platform == "win32":
        raise OSError(errno.EOPNOTSUPP, "positioned writes are not available on Windows")
    return os.pwrite(fd, data, offset)
