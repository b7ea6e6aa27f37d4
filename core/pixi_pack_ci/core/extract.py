"""The security boundary of an unpack: a pack (file, stream or folder) read into a folder of
plain files and folders only, every name checked to stay inside, every package checked against
the hash ``repodata.json`` gives before anything installs it. :func:`scan_pack` applies the same
member checks without writing anything (``inspect``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import sys
import tarfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

import rattler

from .cache import file_digest
from .compat import read_at
from .errors import ArchiveError, UnpackError, UnsafeArchiveError
from .layout import CHANNEL_DIR, METADATA_FILE, PYPI_DIR, PackMetadata, parse_metadata, repodata_entries
from .records import repodata_records

MAX_ENTRIES = 200_000
CHUNK = 1 << 20
#: pixi-pack.json is well under 1 KiB; repodata.json of a pack of thousands of packages a few MiB.
MAX_METADATA_BYTES = 64 * 1024
MAX_REPODATA_BYTES = 64 * 1024 * 1024


@dataclass
class ExtractedPack:
    root: Path
    #: sha256 of every regular file, computed while extracting (empty for a folder pack). md5 is
    #: not: only records without a sha256 need it, and those are read again (rare, old packages).
    digests: dict[str, str]
    #: True when the files are ours to delete (extracted into the work folder), False for a
    #: folder pack the user pointed at.
    disposable: bool = True


def _short(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:60] + "…" + name[-12:])


def _safe_member_path(name: str) -> PurePosixPath:
    # Packs hold channel/<subdir>/<package file> and pypi/<wheel>: no real name comes near these.
    if len(name) > 1024 or any(len(part.encode()) > 255 for part in name.split("/")):
        raise UnsafeArchiveError(f"refusing archive entry with a name too long: {_short(name)}")
    if not name or "\0" in name or "\\" in name:
        raise UnsafeArchiveError(f"refusing archive entry with an invalid name: {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"refusing archive entry with an absolute path: {name!r}")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"refusing archive entry that leaves the pack: {name!r}")
    return PurePosixPath(*parts)


def _regular_file_size(stream: BinaryIO) -> int | None:
    """The size of ``stream`` if it is a regular file we can read at any offset, else None."""
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


class _MemberCopier:
    """Copies archive members out of a pack file in worker threads, hashing on the way.

    A pack is mostly a few large package files; copying them one after another from the tar
    stream kept one core busy with Python-level buffering and left the other idle. Here each
    member is read at its known offset by its own file handle, so copies and sha256 run in
    parallel (file I/O and hashlib release the GIL).
    """

    def __init__(self, archive: BinaryIO) -> None:
        self.archive_fd = archive.fileno()
        self.pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="extract")
        self.jobs: dict[str, Future[str]] = {}
        self.local = threading.local()

    def submit(self, rel: str, name: str, dest: BinaryIO, offset: int, size: int) -> None:
        self.jobs[rel] = self.pool.submit(self._copy, name, dest, offset, size)

    def _copy(self, name: str, dest: BinaryIO, offset: int, size: int) -> str:
        buf = getattr(self.local, "buf", None)
        if buf is None:
            buf = self.local.buf = bytearray(CHUNK)
        view = memoryview(buf)
        sha = hashlib.sha256()
        try:
            with dest:
                while size:
                    n = read_at(self.archive_fd, view[: min(CHUNK, size)], offset)
                    if not n:
                        raise ArchiveError(f"archive is truncated inside {name}")
                    sha.update(view[:n])
                    dest.write(view[:n])
                    offset += n
                    size -= n
        except OSError as exc:
            raise UnpackError(f"cannot write {_short(name)}: {exc.strerror}") from None
        return sha.hexdigest()

    def finish(self) -> dict[str, str]:
        """Wait for every copy; the first failure is raised (after the others stopped)."""
        try:
            return {rel: job.result() for rel, job in self.jobs.items()}
        finally:
            self.close()

    def close(self) -> None:
        for job in self.jobs.values():
            job.cancel()
        self.pool.shutdown(wait=True)


def _copy_from_stream(source: IO[bytes], dest: BinaryIO, name: str) -> tuple[str, int]:
    sha = hashlib.sha256()
    written = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        with dest:
            while n := source.readinto(view):  # type: ignore[attr-defined]
                dest.write(view[:n])
                sha.update(view[:n])
                written += n
    except OSError as exc:
        raise UnpackError(f"cannot write {_short(name)}: {exc.strerror}") from None
    return sha.hexdigest(), written


def extract_pack(stream: BinaryIO, target: Path) -> ExtractedPack:
    """Extract a pack from a file or a (non-seekable) stream, refusing anything but plain files and folders.

    Members are checked in archive order in this thread; from a regular file their bytes are
    then copied by :class:`_MemberCopier`, from a pipe one after another as they arrive.
    """
    digests: dict[str, str] = {}
    count = 0
    archive_size = _regular_file_size(stream)
    copier = _MemberCopier(stream) if archive_size is not None else None
    inside = _InsideCheck(target)
    try:
        with tarfile.open(fileobj=stream, mode="r:" if copier else "r|") as tar:
            for member in tar:
                count += 1
                if count > MAX_ENTRIES:
                    raise UnsafeArchiveError(f"archive has more than {MAX_ENTRIES} entries; refusing it")
                rel = _safe_member_path(member.name)
                dest = target.joinpath(*rel.parts)
                if member.isdir():
                    inside.folder(dest)
                    _make_folder(dest, member.name)
                    continue
                if not member.isreg() or member.issparse():
                    kind = "link" if (member.issym() or member.islnk()) else "special file"
                    raise UnsafeArchiveError(f"refusing archive entry {member.name!r}: it is a {kind}")
                out = _new_file(member, str(rel), dest, target, inside, archive_size if copier else None)
                if copier is not None:
                    copier.submit(str(rel), member.name, out, member.offset_data, member.size)
                    continue
                source = tar.extractfile(member)
                assert source is not None
                digest, written = _copy_from_stream(source, out, member.name)
                if written != member.size:
                    raise ArchiveError(f"archive is truncated inside {member.name}")
                digests[str(rel)] = digest
        if copier is not None:
            digests = copier.finish()
    except tarfile.TarError as exc:
        if "unexpected end" in str(exc):
            raise ArchiveError("archive is truncated (unexpected end of data)") from None
        raise ArchiveError(f"not a valid pack archive: {exc}") from None
    except EOFError:
        raise ArchiveError("archive is truncated") from None
    finally:
        if copier is not None:
            copier.close()
    if count == 0:
        raise ArchiveError("archive is empty")
    return ExtractedPack(target, digests)


def _new_file(
    member: tarfile.TarInfo, rel: str, dest: Path, target: Path, inside: _InsideCheck, archive_size: int | None
) -> BinaryIO:
    """The checked, newly created file an archive member is copied into (``archive_size``: of a
    pack file whose members are read at their offsets)."""
    if rel == METADATA_FILE and member.size > MAX_METADATA_BYTES:
        raise UnsafeArchiveError(f"refusing {METADATA_FILE} of {member.size} bytes")
    _make_folder(dest.parent, member.name)
    inside.file(dest)
    if dest.exists() or dest.is_symlink():
        raise UnsafeArchiveError(f"refusing archive with a duplicate entry: {member.name!r}")
    free = shutil.disk_usage(target).free
    if member.size > free:
        raise UnpackError(f"not enough disk space for {member.name} ({member.size} bytes, {free} free)")
    if archive_size is not None and member.offset_data + member.size > archive_size:
        raise ArchiveError(f"archive is truncated inside {member.name}")
    try:
        return open(dest, "xb", buffering=0)
    except OSError as exc:
        raise UnpackError(f"cannot write {_short(member.name)}: {exc.strerror}") from None


def _make_folder(path: Path, entry: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UnsafeArchiveError(f"refusing archive entry {entry!r}: a file is in the way, not a folder") from None
    except OSError as exc:
        raise UnpackError(f"cannot create {path.name} for {entry!r}: {exc.strerror}") from None


class _InsideCheck:
    """Refuses paths that resolve outside the target. Folders created from earlier entries are real
    folders (links are refused), but each is resolved anyway, once: ``realpath`` is an ``lstat`` per
    path component, and doing it for every member cost a few percent of an unpack."""

    def __init__(self, root: Path) -> None:
        self.real_root = os.path.realpath(root)
        self.folders: set[Path] = set()

    def folder(self, path: Path) -> None:
        if path in self.folders:
            return
        real = os.path.realpath(path)
        if real != self.real_root and not real.startswith(self.real_root + os.sep):
            raise UnsafeArchiveError(f"refusing archive entry outside the target: {path}")
        self.folders.add(path)

    def file(self, path: Path) -> None:
        # Its name is one checked component (no "..", no separator) and it must not exist yet.
        self.folder(path.parent)


def read_metadata(root: Path) -> PackMetadata:
    path = root / METADATA_FILE
    if path.is_symlink():
        raise UnsafeArchiveError(f"{METADATA_FILE} is a symbolic link")
    try:
        with path.open("rb") as fh:
            raw = fh.read(64 * 1024 + 1)
    except FileNotFoundError:
        raise ArchiveError(f"not a pixi-pack archive: {METADATA_FILE} is missing") from None
    return parse_metadata(raw)


def load_records(root: Path, digests: dict[str, str]) -> list[rattler.RepoDataRecord]:
    """The pack's conda records, each package checked against its hash in ``repodata.json``
    (``digests`` holds the sha256 computed while extracting; others are read now)."""
    channel = root / CHANNEL_DIR
    if not channel.is_dir():
        raise ArchiveError(f"not a pixi-pack archive: {CHANNEL_DIR}/ is missing")
    records: list[rattler.RepoDataRecord] = []
    for subdir in sorted(p for p in channel.iterdir() if p.is_dir()):
        repodata_path = subdir / "repodata.json"
        if not repodata_path.is_file():
            continue
        entries = repodata_entries(repodata_path.read_bytes(), f"{CHANNEL_DIR}/{subdir.name}/repodata.json")
        for file_name, rec in entries.items():
            package = subdir / file_name
            if package.is_symlink() or not package.is_file():
                raise ArchiveError(f"package {file_name} is listed in repodata.json but missing from the pack")
            rel = f"{CHANNEL_DIR}/{subdir.name}/{file_name}"
            expected_sha, expected_md5 = rec.get("sha256"), rec.get("md5")
            if expected_sha:
                sha = digests.get(rel) or file_digest(package, "sha256")
                if str(expected_sha).lower() != sha:
                    raise ArchiveError(
                        f"package {file_name} does not match its sha256 in repodata.json; the pack is corrupt"
                    )
            elif expected_md5:
                if str(expected_md5).lower() != file_digest(package, "md5"):
                    raise ArchiveError(
                        f"package {file_name} does not match its md5 in repodata.json; the pack is corrupt"
                    )
            else:
                raise ArchiveError(f"package {file_name} has no sha256 or md5 in repodata.json; refusing to install it")
        by_name = {r.file_name: r for r in repodata_records(repodata_path, channel.as_uri() + "/")}
        for file_name in entries:
            record = by_name.get(file_name)
            if record is None:
                raise ArchiveError(f"repodata.json in {subdir.name} has an unreadable entry {file_name!r}")
            record.url = (subdir / file_name).as_uri()
            records.append(record)
    return records  # none for an empty environment: it unpacks to an empty prefix


def pack_wheels(root: Path) -> list[Path]:
    folder = root / PYPI_DIR
    if not folder.is_dir():
        return []
    wheels = sorted(p for p in folder.iterdir() if p.name.endswith(".whl"))
    for wheel in wheels:
        if wheel.is_symlink() or not wheel.is_file():
            raise UnsafeArchiveError(f"{PYPI_DIR}/{wheel.name} is not a regular file")
    return wheels


@contextlib.contextmanager
def opened_pack(source: str) -> Iterator[BinaryIO]:
    if source == "-":
        yield sys.stdin.buffer
        return
    try:
        fh = open(source, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise UnpackError(f"pack does not exist: {source}") from None
    except OSError as exc:
        raise UnpackError(f"cannot read pack {source}: {exc.strerror}") from None
    with fh:
        yield fh


def read_pack(source: str, work: Path) -> ExtractedPack:
    """A pack folder as it is (never modified), or a pack file or ``-`` (stdin) extracted into ``work``."""
    if source != "-" and Path(source).is_dir():
        return ExtractedPack(Path(source).absolute(), {}, disposable=False)
    with opened_pack(source) as stream:
        return extract_pack(stream, work)


@dataclass
class PackIndex:
    """What ``inspect`` needs from a pack: its metadata, repodata and file sizes."""

    metadata: bytes
    repodata: dict[str, bytes] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def _wanted(name: str) -> bool:
    parts = name.split("/")
    return name == METADATA_FILE or (len(parts) == 3 and parts[0] == CHANNEL_DIR and parts[2] == "repodata.json")


def scan_pack(path: Path) -> PackIndex:
    """Read a pack file's metadata, repodata and sizes without extracting it, refusing what
    :func:`extract_pack` refuses (unsafe names, links, special files, too many entries)."""
    if not path.exists():
        raise ArchiveError(f"pack does not exist: {path}")
    index = PackIndex(b"")
    found_metadata = False
    try:
        with tarfile.open(path, mode="r|") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_ENTRIES:
                    raise UnsafeArchiveError(f"archive has more than {MAX_ENTRIES} entries; refusing it")
                name = str(_safe_member_path(member.name))
                if member.isdir():
                    continue
                if not member.isreg() or member.issparse():
                    kind = "link" if (member.issym() or member.islnk()) else "special file"
                    raise UnsafeArchiveError(f"refusing archive entry {member.name!r}: it is a {kind}")
                index.sizes[name] = member.size
                if _wanted(name):
                    fh = tar.extractfile(member)
                    assert fh is not None
                    raw = fh.read((MAX_METADATA_BYTES if name == METADATA_FILE else MAX_REPODATA_BYTES) + 1)
                    if name == METADATA_FILE:
                        index.metadata, found_metadata = raw, True
                    else:
                        index.repodata[name.split("/")[1]] = raw
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{path} is not a valid pack archive: {exc or 'truncated'}") from None
    if not found_metadata:
        raise ArchiveError(f"not a pixi-pack archive: {METADATA_FILE} is missing from {path}")
    return index


def scan_folder(path: Path) -> PackIndex:
    """The same for a pack folder (its files are read where they are)."""
    metadata_path = path / METADATA_FILE
    if metadata_path.is_symlink() or not metadata_path.is_file():
        raise ArchiveError(f"not a pixi-pack archive: {METADATA_FILE} is missing")
    sizes = {p.relative_to(path).as_posix(): p.stat().st_size for p in path.rglob("*") if p.is_file()}
    repodata = {p.parent.name: p.read_bytes() for p in (path / CHANNEL_DIR).glob("*/repodata.json")}
    return PackIndex(metadata_path.read_bytes()[: MAX_METADATA_BYTES + 1], repodata, sizes)
