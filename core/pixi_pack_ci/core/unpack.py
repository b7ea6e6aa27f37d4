"""pack → environment: safe extraction, verification, ``rattler.install`` into a hidden sibling that
is renamed into place when whole, activation script."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, cast
from urllib.parse import urlsplit
from urllib.request import url2pathname

import rattler
from rattler.install import InstallerReporter
from rattler.platform import Subdir

from .activation import SHELLS, write_activation_script
from .atomic import remove_stale_partials, temp_prefix
from .cache import file_digest
from .clobbers import CLOBBERS_DIR, ClashPlan, plan_clashes, read_installed_paths, settle
from .compat import read_at
from .errors import ArchiveError, PixiPackError, TargetExistsError, UnpackError, UnsafeArchiveError
from .layout import CHANNEL_DIR, METADATA_FILE, PYPI_DIR, PackMetadata, parse_metadata, repodata_entries
from .model import UnpackResult
from .progress import ProgressReporter
from .records import repodata_records
from .wheels import find_python, install_wheels

log = logging.getLogger("pixi_pack_ci")

MAX_ENTRIES = 200_000
CHUNK = 1 << 20


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
                if str(rel) == METADATA_FILE and member.size > 64 * 1024:
                    raise UnsafeArchiveError(f"refusing {METADATA_FILE} of {member.size} bytes")
                _make_folder(dest.parent, member.name)
                inside.file(dest)
                if dest.exists() or dest.is_symlink():
                    raise UnsafeArchiveError(f"refusing archive with a duplicate entry: {member.name!r}")
                free = shutil.disk_usage(target).free
                if member.size > free:
                    raise UnpackError(f"not enough disk space for {member.name} ({member.size} bytes, {free} free)")
                if copier is not None and archive_size is not None and member.offset_data + member.size > archive_size:
                    raise ArchiveError(f"archive is truncated inside {member.name}")
                try:
                    out = open(dest, "xb", buffering=0)  # noqa: SIM115 - closed by the copy
                except OSError as exc:
                    raise UnpackError(f"cannot write {_short(member.name)}: {exc.strerror}") from None
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


def _load_records(root: Path, digests: dict[str, str]) -> list[rattler.RepoDataRecord]:
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


class _InstallEvents:
    """What ``rattler.install`` reports, put to use: the progress bar advances as packages are
    linked, and each package archive of an extracted pack is deleted once rattler has unpacked it
    into its cache. Deleting them then, in a background thread, overlaps that work with the rest
    of the install instead of leaving a GiB for the final clean-up.

    rattler calls these methods from its own threads; none of them may raise. It calls only the
    ones a reporter has (its documentation invites implementing a subset), which is why this is
    not a subclass: mypy takes the protocol's empty methods for abstract ones.

    It also knows which packages rattler is extracting into its cache: when an install fails, the
    others go on for a moment, and an install in rounds (:mod:`.clobbers`) must not start on the
    same cache before they are done.
    """

    def __init__(self, records: Sequence[rattler.RepoDataRecord], progress: ProgressReporter, *, delete: bool) -> None:
        self._archives = {r.name.normalized: (Path(url2pathname(urlsplit(r.url).path)), r.size or 0) for r in records}
        self._progress = progress
        self._tokens: dict[int, str] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._cache_idle = threading.Condition(self._lock)
        self._populating: set[int] = set()
        self._deleter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="free") if delete else None

    def _token(self, package_name: str) -> int:
        with self._lock:
            token = next(self._counter)
            self._tokens[token] = package_name
            return token

    def _name(self, token: int) -> str | None:
        with self._lock:
            return self._tokens.pop(token, None)

    def on_populate_cache_start(self, operation: int, package_name: str) -> int:
        token = self._token(package_name)
        with self._lock:
            self._populating.add(token)
        return token

    def on_populate_cache_complete(self, cache_entry: int) -> None:
        name = self._name(cache_entry)
        with self._lock:
            self._populating.discard(cache_entry)
            self._cache_idle.notify_all()
        if self._deleter is None:
            return
        archive = self._archives.get(name) if name is not None else None
        if archive is not None:
            self._deleter.submit(archive[0].unlink, missing_ok=True)

    def on_link_start(self, operation: int, package_name: str) -> int:
        return -self._token(package_name)  # negative: never mixed up with a cache token

    def on_link_complete(self, index: int) -> None:
        name = self._name(-index)
        archive = self._archives.get(name) if name is not None else None
        if archive is not None:
            self._progress.advance(archive[1])

    def wait_for_cache(self, timeout: float) -> bool:
        """True once rattler extracts no package into its cache any more (False after ``timeout``)."""
        with self._lock:
            return self._cache_idle.wait_for(lambda: not self._populating, timeout)

    def close(self) -> None:
        if self._deleter is not None:
            self._deleter.shutdown(wait=True)


def _rattler_install(
    records: list[rattler.RepoDataRecord],
    target: Path,
    prefix: Path,
    cache: Path,
    platform: str,
    events: _InstallEvents,
) -> UnpackError | None:
    """One ``rattler.install``; its failure is returned, to be raised or superseded."""
    try:
        asyncio.run(
            rattler.install(
                records,
                target,
                alternative_target_prefix=prefix,  # what files that name their prefix get
                cache_dir=cache,
                execute_link_scripts=False,
                reporter=cast(InstallerReporter, events),
                platform=rattler.Subdir(platform),
            )
        )
    except Exception as exc:
        return UnpackError(f"could not install packages: {' '.join(str(exc).split())}")
    return None


def _install(
    records: list[rattler.RepoDataRecord], work: Path, prefix: Path, platform: str, *, disposable: bool, quiet: bool
) -> Path:
    """Install ``records`` for ``prefix`` into a folder of ``work``, which is returned.

    One ``rattler.install`` as usual. Only if it shows that packages install the same paths (it
    made ``__clobbers__``, or it failed) are the packages' file lists read: with clashes, the
    environment is installed again in rounds and settled (:mod:`.clobbers`), so that it is the
    same every time. Without, checking costs one ``lstat``.
    """
    staging, cache = work / "env", work / "cache"
    with ProgressReporter(f"Installing {len(records)} packages", _total(records), enabled=not quiet) as progress:
        events = _InstallEvents(records, progress, delete=disposable)
        try:
            failure = _rattler_install(records, staging, prefix, cache, platform, events)
            if failure is None and not os.path.lexists(staging / CLOBBERS_DIR):
                return staging
            plan = _clash_plan(records, cache, platform, failure)
            if plan is None:
                if failure is not None:
                    raise failure
                return staging
            # After a failure, packages still being extracted must be done before rattler reuses the cache.
            if failure is not None and not events.wait_for_cache(timeout=300):
                raise failure
        finally:
            events.close()
    return _install_in_rounds(records, plan, work, prefix, platform, disposable=disposable, quiet=quiet)


def _clash_plan(
    records: list[rattler.RepoDataRecord], cache: Path, platform: str, failure: UnpackError | None
) -> ClashPlan | None:
    try:
        return plan_clashes(records, read_installed_paths(records, cache, platform))
    except UnpackError:
        if failure is not None:
            raise failure from None  # what went wrong first is what the user needs to know
        raise


def _install_in_rounds(
    records: list[rattler.RepoDataRecord],
    plan: ClashPlan,
    work: Path,
    prefix: Path,
    platform: str,
    *,
    disposable: bool,
    quiet: bool,
) -> Path:
    """Install again, from rattler's cache, one round of ``plan`` at a time, each round adding its
    packages to those already installed; then put every clobbered copy where the plan says."""
    target, cache = work / "rounds", work / "cache"
    by_name = {r.name.normalized: r for r in records}
    log.info("%d packages install the same paths; installing in %d rounds", len(plan.records), len(plan.rounds))
    description = f"Installing {len(records)} packages in {len(plan.rounds)} rounds (some install the same paths)"
    installed: list[rattler.RepoDataRecord] = []
    with ProgressReporter(description, _total(records), enabled=not quiet) as progress:
        events = _InstallEvents(records, progress, delete=disposable)
        try:
            for names in plan.rounds:
                installed += [by_name[n] for n in names]
                failure = _rattler_install(installed, target, prefix, cache, platform, events)
                if failure is not None:
                    raise failure
        finally:
            events.close()
    settle(target, plan)
    return target


def _total(records: Sequence[rattler.RepoDataRecord]) -> int:
    return sum(r.size or 0 for r in records)


def _move_into_place(staging: Path, prefix: Path, aside: Path) -> None:
    """Put the finished environment at ``prefix``; one that is there already (empty, or --force)
    is moved aside only now, and back if the new one cannot take its place."""
    moved_aside = False
    try:
        if prefix.exists() or prefix.is_symlink():
            os.rename(prefix, aside)
            moved_aside = True
        os.rename(staging, prefix)
    except OSError as exc:
        if moved_aside:
            with contextlib.suppress(OSError):
                os.rename(aside, prefix)
        raise UnpackError(f"cannot move the environment into {prefix}: {exc.strerror}") from None


def _remove_work_folder(work: Path, patience: float = 10.0) -> None:
    """Delete the work folder, again while something still writes into it: when one package fails,
    ``rattler.install`` returns while its tasks for the other packages go on extracting into the
    cache for a moment, and a single ``rmtree`` left their folders behind."""
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(work, ignore_errors=True)
        if not os.path.lexists(work) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _wheels_in(root: Path) -> list[Path]:
    folder = root / PYPI_DIR
    if not folder.is_dir():
        return []
    wheels = sorted(p for p in folder.iterdir() if p.name.endswith(".whl"))
    for wheel in wheels:
        if wheel.is_symlink() or not wheel.is_file():
            raise UnsafeArchiveError(f"{PYPI_DIR}/{wheel.name} is not a regular file")
    return wheels


@contextlib.contextmanager
def _opened_source(source: str) -> Iterator[BinaryIO]:
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


def run_unpack(
    source: str,
    output_dir: Path,
    env_name: str,
    shell: str,
    *,
    force: bool = False,
    quiet: bool = False,
) -> UnpackResult:
    if shell not in SHELLS:
        raise UnpackError(f"unknown shell {shell!r}; choose one of: {', '.join(SHELLS)}")
    if not env_name or "/" in env_name or "\\" in env_name or env_name in (".", ".."):
        raise UnpackError(f"invalid environment name {env_name!r}")
    output_dir = output_dir.absolute()
    prefix = output_dir / env_name
    script = output_dir / f"activate.{SHELLS[shell]}"
    if prefix.exists() and not force and (not prefix.is_dir() or any(prefix.iterdir())):
        raise TargetExistsError(f"{prefix} already exists; pass --force to replace it")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnpackError(f"cannot create output directory {output_dir}: {exc.strerror}") from None

    # The environment is built in a hidden work folder beside it and moved into place when complete:
    # a failed or killed unpack leaves no half-installed prefix, and --force keeps the old one until
    # the new one is whole. The folder names this process, so the next unpack removes what a killed
    # one left.
    remove_stale_partials(prefix)
    work = Path(tempfile.mkdtemp(prefix=temp_prefix(prefix), suffix=".partial", dir=output_dir))
    try:
        if source != "-" and Path(source).is_dir():
            pack = ExtractedPack(Path(source).absolute(), {}, disposable=False)
        else:
            with _opened_source(source) as stream:
                pack = extract_pack(stream, work / "pack")
        metadata = read_metadata(pack.root)
        current = str(Subdir.current())
        if metadata.platform != current:
            raise UnpackError(f"the pack was created for {metadata.platform} but this machine is {current}")
        records = _load_records(pack.root, pack.digests)
        wheels = _wheels_in(pack.root)
        python = find_python((json.loads(r.to_json()) for r in records), metadata.platform) if wheels else None
        if wheels and python is None:
            raise UnpackError("the pack has PyPI wheels but no python package to install them into")
        staging = _install(records, work, prefix, metadata.platform, disposable=pack.disposable, quiet=quiet)
        if wheels:
            assert python is not None
            try:
                install_wheels(staging, wheels, python, final_prefix=prefix)
            except PixiPackError as exc:
                raise UnpackError(str(exc)) from None
        _move_into_place(staging, prefix, work / "replaced")
        write_activation_script(prefix, script, shell, metadata.platform)
    finally:
        _remove_work_folder(work)
    names = tuple(sorted(f"{r.name.normalized}={r.version}={r.build}" for r in records))
    return UnpackResult(
        prefix=prefix, activation_script=script, platform=metadata.platform, packages=names, shell=shell
    )
