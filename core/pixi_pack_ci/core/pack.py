"""lockfile → plans → fetch → archives: the packing pipeline."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from .atomic import atomic_output, remove_stale_partials, temp_prefix
from .builds import build_pypi_sources
from .cache import ArtifactHash, PackageCache
from .config import load_auth, load_config
from .errors import ArchiveError, PixiPackError, UsageError
from .executable import HashingSink, executable_suffix, resolve_unpacker, write_executable
from .fetch import FetchContext, fetch_artifacts
from .layout import Entry, pack_entries, write_entries
from .lockfile import build_plan, load_lockfile, settle_pypi_sources
from .model import Artifact, CondaArtifact, PackOptions, PackPlan, PackResult, artifact_summary
from .progress import ProgressReporter
from .slots import (
    POSITIONED_IO,
    FrontierHasher,
    SlotSizeError,
    file_sha256,
    fill_slot,
    slot_digest,
    slot_sizes,
    write_skeleton,
)
from .tarwriter import DeterministicTarWriter, Writable, archive_size
from .wheels import check_wheel_fits, find_python

log = logging.getLogger("pixi_pack_ci")


def _output_name(kind: str, platform: str, stem: str = "environment") -> str:
    if kind == "directory":
        return stem
    if kind == "executable":
        return stem + executable_suffix(platform)
    return stem + ".tar"


def plan_packs(options: PackOptions, hook: Any) -> list[PackPlan]:
    """Read the lockfile and decide every pack of this run, with plugins' changes applied."""
    loaded = load_lockfile(options.manifest_path)
    pairs = [(e, p) for e in options.environments for p in options.platforms]
    pairs = list(dict.fromkeys(pairs))
    if options.directory_only and options.create_executable:
        raise UsageError("--directory-only and --create-executable cannot be combined")
    if options.pixi_unpack_source and not options.create_executable:
        raise UsageError("--pixi-unpack-source needs --create-executable")
    kind = "directory" if options.directory_only else "executable" if options.create_executable else "tar"
    single = len(pairs) == 1 and options.output_dir is None
    if not single and options.output is not None:
        raise UsageError("-o/--output names a single pack; with several -e/-p use --output-dir")
    plans: list[PackPlan] = []
    for environment, platform in pairs:
        plan = build_plan(loaded, environment, platform)
        if any((p.environment, p.platform_name) == (environment, plan.platform_name) for p in plans):
            continue  # -p linux-64 and -p p1 can name the same lockfile platform
        plan.kind = kind  # type: ignore[assignment]
        if single:
            if options.output == "-":
                if kind == "directory":
                    raise UsageError("--directory-only cannot write to standard output")
                plan.output = None
            elif options.output is None:
                plan.output = Path(_output_name(kind, plan.platform)).absolute()
            else:
                output = Path(options.output)
                if kind == "executable":  # as pixi-pack: the extension follows the target platform
                    output = output.with_suffix(executable_suffix(plan.platform))
                plan.output = output.absolute()
        else:
            # The lockfile's platform name, so two names on one subdir get two files.
            name = _output_name(kind, plan.platform, f"{environment}-{plan.platform_name}")
            plan.output = ((options.output_dir or Path(".")) / name).absolute()
        hook.pixi_pack_ci_modify_plan(plan=plan, options=options)
        if options.ignore_pypi_non_wheel or options.no_build:
            settle_pypi_sources(plan, ignore=options.ignore_pypi_non_wheel)
        check_wheels(plan)
        plans.append(plan)
    return plans


def check_wheels(plan: PackPlan) -> None:
    """Every wheel must fit the environment's Python; checked before anything is downloaded."""
    if not plan.pypi:
        return
    python = find_python((a.record for a in plan.conda), plan.platform)
    if python is None:
        raise PixiPackError(
            f"environment {plan.environment!r} on {plan.platform} has PyPI wheels but no python conda package"
        )
    for wheel in plan.pypi:
        check_wheel_fits(wheel.file_name, python)


@contextlib.contextmanager
def _cache_for(options: PackOptions, plans: list[PackPlan]) -> Iterator[PackageCache]:
    if options.cache_dir is not None:
        yield PackageCache(options.cache_dir)
        return
    # No cache asked for: download beside the first output so the archive copy stays on one disk.
    # The folder is named after that output and this process, so a run that was killed has its
    # leftovers removed by the next run for the same output.
    first = next((p.output for p in plans if p.output is not None), None) or Path.cwd() / "stdout"
    first.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(first, ".download")
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(first), suffix=".download", dir=first.parent))
    try:
        yield PackageCache(staging, persistent=False)  # its records die with it: no per-user key needed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class CorruptCacheEntryError(Exception):
    """A cache hit streamed into a pack did not match its lockfile hash (the pack is discarded)."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact.cache_key)
        self.artifact = artifact


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


def _open_cached(path: Path, artifact: Artifact | None) -> BinaryIO:
    """Open a fetched file; if it vanished (another run sharing the cache dropped it as corrupt
    after we fetched it), say which artifact to fetch again."""
    try:
        return path.open("rb", buffering=0)
    except FileNotFoundError:
        if artifact is None:
            raise
        raise CorruptCacheEntryError(artifact) from None


def _write_tar(
    entries: list[Entry],
    out: Writable,
    progress: ProgressReporter | None,
    unverified: dict[str, Artifact] | None = None,
    cache: PackageCache | None = None,
    owners: dict[str, Artifact] | None = None,
) -> None:
    writer = DeterministicTarWriter(out)
    unverified = {} if unverified is None else unverified

    def copy(entry: Entry) -> None:
        assert entry.source is not None
        artifact = unverified.get(entry.path)
        with _open_cached(entry.source, owners.get(entry.path) if owners else None) as fh:
            size = os.fstat(fh.fileno()).st_size
            if artifact is None:
                writer.add_file(entry.path, fh, size)
            else:
                reader = _HashingReader(fh, artifact)
                writer.add_file(entry.path, reader, size)  # type: ignore[arg-type]
                if not reader.hash.matches():
                    raise CorruptCacheEntryError(artifact)
                unverified.pop(entry.path, None)  # checked once is enough for the other packs
                if cache is not None and reader.hash.algorithm == "sha256":
                    # The record names the file that was read, whatever the path names by now.
                    cache.remember(artifact, entry.source, reader.hash.hexdigest(), os.fstat(fh.fileno()))
        if progress is not None:
            progress.advance(size)

    write_entries(writer, entries, copy)


def _write_directory(entries: list[Entry], target: Path) -> None:
    for entry in entries:
        path = target / entry.path
        if entry.is_dir:
            path.mkdir(exist_ok=True)
        elif entry.data is not None:
            path.write_bytes(entry.data)
        else:
            assert entry.source is not None
            shutil.copyfile(entry.source, path)


def _pack_result(plan: PackPlan, path: Path | None, sha256: str | None, size: int) -> PackResult:
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


def _forget_corrupt_entry(exc: CorruptCacheEntryError, cache: PackageCache, context: FetchContext) -> None:
    """A cache hit failed its check while being packed: drop it, and the hits still to be checked
    with it, so the next attempt downloads it again."""
    log.warning("cached %s does not match the lockfile; downloading it again", exc.artifact.file_name)
    cache.discard(exc.artifact)
    context.unverified.clear()


def _in_place_sizes(plans: list[PackPlan], cache: PackageCache) -> dict[str, int] | None:
    """Archive path → size when this run's one pack can be written in place (see ``slots``), else None.

    That needs one plain tar going to a file, every conda package's size known from the lockfile
    and positioned I/O. (Lockfiles give no wheel sizes: wheels are appended after the packages.)
    With a download cache whose entries are all trusted already, the ordinary path is faster
    still: it copies them and may know the pack's sha256 without reading it."""
    if len(plans) != 1 or not POSITIONED_IO:
        return None
    plan = plans[0]
    if plan.kind != "tar" or plan.output is None:
        return None
    if all(cache.recall(a, cache.path_for(a)) is not None for a in plan.artifacts):
        return None
    return slot_sizes([a for a in plan.artifacts if isinstance(a, CondaArtifact)])


def _split_tail(entries: list[Entry], sizes: dict[str, int]) -> tuple[list[Entry], list[Entry]]:
    """The entries that get slots, and the ones after them that are appended once downloaded
    (wheels: ``pypi/`` sorts last). Raises :class:`SlotSizeError` if a file without a known size
    came before a slot, which the layout never does today."""
    first = next((i for i, e in enumerate(entries) if e.source is not None and e.path not in sizes), len(entries))
    head, tail = entries[:first], entries[first:]
    if any(e.path in sizes for e in tail):
        raise SlotSizeError(f"{tail[0].path} has no size and comes before packages that do")
    return head, tail


def write_pack_in_place(
    plan: PackPlan,
    sizes: dict[str, int],
    cache: PackageCache,
    context: FetchContext,
    hook: Any,
    *,
    quiet: bool,
    keep_downloads: bool = False,
) -> PackResult:
    """Write the skeleton of the pack, download every package into its slot, then hash the file.

    With ``keep_downloads`` (a ``--use-cache`` folder) each download is committed to the cache
    first and copied into its slot from there, in the kernel; cache hits are copied the same way.
    Wheels, whose sizes are not known in advance, are appended after the last slot."""
    assert plan.output is not None
    owners = {a.archive_path: a for a in plan.artifacts}
    # The sources of slots are never read: each of those entries becomes a hole its download fills.
    entries = pack_entries(plan, {a.cache_key: Path(a.cache_key) for a in plan.artifacts})
    head, tail = _split_tail(entries, sizes)
    target = plan.output
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create output directory {target.parent}: {exc.strerror}") from None
    how = "copied from the cache" if keep_downloads else "downloaded straight into it"
    log.info("writing %s in place: each package is %s", target.name, how)
    context.fill_from_cache = keep_downloads
    try:
        with atomic_output(target) as out:
            slots = write_skeleton(head, sizes, out, finish=not tail)
            out.flush()
            context.slots = {owners[path].cache_key: slot for path, slot in slots.items()}
            total = sum(a.size or 0 for a in plan.artifacts)
            end = os.fstat(out.fileno()).st_size
            hasher = FrontierHasher(out.fileno(), list(slots.values()), end)
            try:
                with ProgressReporter(f"Fetching {len(plan.artifacts)} packages", total, enabled=not quiet) as progress:
                    context.progress = progress
                    files = fetch_artifacts(plan.artifacts, cache, context, hook)
            except BaseException:
                hasher.cancel()
                raise
            if tail:
                out.seek(end)
                sink = HashingSink(out, hasher.running_hash(), end)
                appended = [replace(e, source=files[owners[e.path].cache_key]) if e.source else e for e in tail]
                _write_tar(appended, sink, None, context.unverified, cache, owners)
                out.flush()
                sha256, size = sink.sha256.hexdigest(), sink.size
            else:
                sha256, size = hasher.result()
    except OSError as exc:
        raise ArchiveError(f"could not write pack {target}: {exc}") from None
    finally:
        context.slots, context.fill_from_cache = {}, False
    if keep_downloads and not tail:
        # Every slot was checked as it was filled: the next pack of the same layout from this
        # cache knows its sha256 without reading it. (Wheels appended after the slots may be
        # copied unread, trusted by their records: such a pack is remembered by the next one.)
        layout = layout_digest(entries, owners, cache.trusted)
        if layout is not None:
            cache.remember_pack(layout, sha256, size)
    return _pack_result(plan, target, sha256, size)


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


def _copy_pack_from_cache(
    plan: PackPlan,
    entries: list[Entry],
    sizes: dict[str, int],
    owners: dict[str, Artifact],
    cache: PackageCache,
    layout: str,
) -> tuple[str, int]:
    """Write a tar pack whose files are all trusted cache entries: the skeleton, then each file
    copied into its slot in the kernel. Its sha256 comes from the pack remembered for the same
    layout, else from reading the finished file (and is remembered for next time)."""
    assert plan.output is not None
    remembered = cache.recall_pack(layout)
    all_trusted = True  # until a file turns out changed while it was copied
    with atomic_output(plan.output) as out:
        slots = write_skeleton(entries, sizes, out)
        out.flush()
        for entry in entries:
            if entry.source is None:
                continue
            artifact = owners[entry.path]
            with _open_cached(entry.source, artifact) as src:
                copied = fill_slot(src.fileno(), slots[entry.path])
                copied_from = os.fstat(src.fileno())  # the file copied, whatever the path names now
            if copied != sizes[entry.path]:
                raise CorruptCacheEntryError(artifact)
            if cache.recall(artifact, entry.source, copied_from) is None:
                # Changed or replaced while we copied it (another run sharing the cache may have
                # committed its own download): check the bytes that did land in the pack.
                remembered, all_trusted = None, False
                if artifact.sha256 and slot_digest(slots[entry.path], "sha256") != artifact.sha256.lower():
                    raise CorruptCacheEntryError(artifact)
        size = os.fstat(out.fileno()).st_size
        if remembered is not None and remembered[1] == size:
            log.info(
                "%s: %d files copied from the cache; sha256 remembered from an earlier pack",
                plan.output.name,
                len(owners),
            )
            sha256 = remembered[0]
        else:
            log.info("%s: %d files copied from the cache", plan.output.name, len(owners))
            sha256, size = file_sha256(out.fileno())
    if all_trusted and remembered is None:
        cache.remember_pack(layout, sha256, size)
    return sha256, size


def write_pack(
    plan: PackPlan,
    files: dict[str, Path],
    *,
    quiet: bool,
    unpacker: Path | None = None,
    unverified: dict[str, Artifact] | None = None,
    cache: PackageCache | None = None,
) -> PackResult:
    """Write one pack atomically: a temporary sibling first, renamed into place when complete."""
    entries = pack_entries(plan, files)
    owners = {a.archive_path: a for a in plan.artifacts}
    sizes: dict[str, int] = {}
    for e in entries:
        if e.source is not None:
            with _open_cached(e.source, owners.get(e.path)) as fh:
                sizes[e.path] = os.fstat(fh.fileno()).st_size
    total = sum(sizes.values())

    def write_stream(out: Writable, progress: ProgressReporter) -> HashingSink:
        sink = HashingSink(out)
        if plan.kind == "executable":
            members: list[tuple[str, int | None]] = [
                (e.path, None if e.is_dir else (len(e.data) if e.data is not None else sizes[e.path])) for e in entries
            ]
            write_executable(
                sink,
                platform=plan.platform,
                environment=plan.environment,
                name=plan.output.name if plan.output else "environment" + executable_suffix(plan.platform),
                unpacker=unpacker,
                archive_bytes=archive_size(members),
                write_archive=lambda payload: _write_tar(entries, payload, progress, unverified, cache, owners),
            )
        else:
            _write_tar(entries, sink, progress, unverified, cache, owners)
        return sink

    with ProgressReporter(f"Writing {plan.environment}-{plan.platform_name}", total, enabled=not quiet) as progress:
        if plan.output is None:
            sink = write_stream(sys.stdout.buffer, progress)
            return _pack_result(plan, None, sink.sha256.hexdigest(), sink.size)
        target = plan.output
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveError(f"cannot create output directory {target.parent}: {exc.strerror}") from None
        if plan.kind == "directory":
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
            old: Path | None = None
            try:
                _write_directory(entries, tmp_dir)
                os.chmod(tmp_dir, 0o755)
                if target.exists():
                    if not target.is_dir():
                        raise ArchiveError(f"{target} exists and is not a directory")
                    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                    os.rename(target, old / "previous")
                os.rename(tmp_dir, target)
            except OSError as exc:
                raise ArchiveError(f"could not write pack directory {target}: {exc}") from None
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            return _pack_result(plan, target, None, total)
        layout = layout_digest(entries, owners, cache.trusted) if cache is not None and plan.kind == "tar" else None
        if layout is not None and cache is not None and POSITIONED_IO:
            try:
                sha256, size = _copy_pack_from_cache(plan, entries, sizes, owners, cache, layout)
            except OSError as exc:
                raise ArchiveError(f"could not write pack {target}: {exc}") from None
            progress.advance(total)
            return _pack_result(plan, target, sha256, size)
        executable = plan.kind == "executable" and not plan.platform.startswith("win")
        try:
            with atomic_output(target, 0o755 if executable else 0o644) as out:
                sink = write_stream(out, progress)
        except OSError as exc:
            raise ArchiveError(f"could not write pack {target}: {exc}") from None
        return _pack_result(plan, target, sink.sha256.hexdigest(), sink.size)


def run_pack(options: PackOptions, hook: Any) -> tuple[list[PackPlan], list[PackResult]]:
    """The whole ``pack`` command. With ``dry_run`` nothing is downloaded and no pack is written."""
    config = load_config(options.config_path)
    auth = load_auth(options.auth_file)
    plans = plan_packs(options, hook)
    if options.dry_run:
        return plans, []
    context = FetchContext(config=config, auth=auth)
    # Cache hits are checked while they stream into the pack (one read instead of two), unless a
    # pack cannot be taken back once written: a folder, or bytes already sent to standard output.
    context.verify_cache_hits = not all(p.output is not None and p.kind != "directory" for p in plans)
    results: list[PackResult] = []
    try:
        with _cache_for(options, plans) as cache:
            builds = build_pypi_sources(plans, cache, context, hook, options)
            if builds:
                options.report["builds"] = builds
            in_place = _in_place_sizes(plans, cache)
            if in_place is not None:
                try:
                    results = [
                        write_pack_in_place(
                            plans[0],
                            in_place,
                            cache,
                            context,
                            hook,
                            quiet=options.quiet,
                            keep_downloads=options.cache_dir is not None,
                        )
                    ]
                except SlotSizeError as exc:
                    log.info("packing the ordinary way: %s", exc)
                except CorruptCacheEntryError as exc:
                    _forget_corrupt_entry(exc, cache, context)
            unpackers = {
                p.platform: resolve_unpacker(options.pixi_unpack_source, p.platform, options.cache_dir)
                for p in plans
                if p.kind == "executable"
            }
            artifacts = [a for plan in plans for a in plan.artifacts]  # built wheels included
            total = sum(a.size or 0 for a in artifacts)
            for _ in range(0 if results else 3):
                with ProgressReporter(
                    f"Fetching {len(artifacts)} packages", total, enabled=not options.quiet
                ) as progress:
                    context.progress = progress
                    files = fetch_artifacts(artifacts, cache, context, hook)
                try:
                    results = [
                        write_pack(
                            plan,
                            files,
                            quiet=options.quiet,
                            unpacker=unpackers.get(plan.platform),
                            unverified=context.unverified,
                            cache=cache,
                        )
                        for plan in plans
                    ]
                    break
                except CorruptCacheEntryError as exc:
                    _forget_corrupt_entry(exc, cache, context)
            if not results:
                raise PixiPackError("the package cache keeps changing under this run; is another tool writing to it?")
            for plan in plans:
                for note in plan.notes:
                    log.warning("%s", note)
    finally:
        context.close()
    if not results:
        raise PixiPackError("nothing was packed")
    hook.pixi_pack_ci_packs_written(packs=results, options=options)
    return plans, results
