"""Output files that appear whole or not at all, even if the process is killed.

On Linux the bytes go to an anonymous file (``O_TMPFILE``) in the target's folder: it has no name
until it is complete, so a ``SIGKILL`` leaves nothing behind. It then gets a name with
``os.link`` through ``/proc/self/fd`` and is renamed over the target. Elsewhere (or on file systems
without ``O_TMPFILE``) a hidden ``.<name>.*.partial`` sibling is used and removed on any failure
the process survives; its name carries the writer's PID, so the next write of the same target
removes the leftovers of writers that were killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


def _open_anonymous(directory: Path) -> int | None:
    try:
        # Read-write: a pack written in place is read back for its sha256.
        return os.open(directory, _O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:  # EOPNOTSUPP, EISDIR on old kernels, …
        return None


def _anonymous(directory: Path) -> int | None:
    """An anonymous file in ``directory``, if this system can also name it later (some overlay
    file systems open one but refuse the link with EXDEV: checked on a throwaway file first)."""
    if not _O_TMPFILE or not Path("/proc/self/fd").is_dir():
        return None
    probe = _open_anonymous(directory)
    if probe is None:
        return None
    try:
        os.unlink(_link_anonymous(probe, directory / "probe"))
    except OSError:
        return None
    finally:
        os.close(probe)
    return _open_anonymous(directory)


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def temp_prefix(target: Path) -> str:
    """Prefix of a hidden temporary sibling of ``target`` that names this process."""
    return _prefix(target)


def remove_stale_partials(target: Path, suffix: str = ".partial") -> list[Path]:
    """Delete ``.<name>.<pid>.*<suffix>`` siblings of ``target`` (files or folders) whose writer no longer runs."""
    removed = []
    for path in target.parent.glob(f".{glob_escape(target.name)}.*{suffix}"):
        pid = path.name[len(target.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def remove_stale_partials_in(folder: Path, suffix: str = ".partial") -> None:
    """Delete every ``.<name>.<pid>.<random><suffix>`` file in ``folder`` whose writer no longer runs
    (for folders of many small files, where one scan beats a glob per file)."""
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(suffix)]
    except OSError:
        return
    for name in names:
        parts = name[: -len(suffix)].rsplit(".", 2)  # the random part of mkstemp has no dots
        if len(parts) == 3 and parts[1].isdigit() and not _alive(int(parts[1])):
            with contextlib.suppress(OSError):
                (folder / name).unlink()


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows, signal 0 is CTRL_C_EVENT: never send it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or we cannot tell: keep the file
    return True


def _link_anonymous(fd: int, target: Path) -> str:
    """Give the anonymous file a hidden unique name beside ``target`` (``link`` never overwrites)."""
    for _ in range(100):
        name = tempfile.mktemp(prefix=_prefix(target), suffix=".partial", dir=target.parent)
        try:
            os.link(f"/proc/self/fd/{fd}", name)
        except FileExistsError:
            continue
        return name
    raise FileExistsError(f"no free temporary name beside {target}")


@contextlib.contextmanager
def atomic_output(target: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write ``target`` through the yielded file; it replaces ``target`` only if the block succeeds."""
    directory = target.parent
    remove_stale_partials(target)
    fd = _anonymous(directory)
    named: str | None = None
    if fd is None:
        fd, named = tempfile.mkstemp(prefix=_prefix(target), suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            # Windows files have no mode bits, only a read-only flag (os.fchmod exists there only
            # from Python 3.13, and sets just that flag): a new file is writable, as every mode
            # passed here asks, and executables are told by their name there (.ps1, .exe).
            if sys.platform != "win32":
                os.fchmod(out.fileno(), mode)
            if named is None:
                named = _link_anonymous(out.fileno(), target)
        os.replace(named, target)
        named = None
    finally:
        if named is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(named)
