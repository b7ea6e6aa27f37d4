"""Fetching the artifacts of one or more plans into the cache, verified, concurrently.

The core owns the loop: cache lookup, the URL of each attempt (mirrors rotate with the attempts),
retries with backoff, hash checks and the atomic commit. The bytes come from the
``pixi_pack_ci_fetch_artifact`` hook, whose last resort is the built-in HTTP fetcher
(:mod:`.http_fetcher`). What a run shares with the pack writers (slots of a pack written in place,
cache hits still to be checked) is a :class:`FetchRun`, never shown to plugins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import ArtifactHash, CacheMode, PackageCache, file_digest
from .errors import ChecksumMismatchError, DownloadError, TransientFetchError
from .fetch_context import Digests, FetchContext
from .model import Artifact
from .redact import redact_url
from .slots import ArchiveSlot, SlotSizeError, SlotWriter, copy_into_slot, fill_slot, slot_digest

if TYPE_CHECKING:
    from .plugin_manager import PluginManager
    from .progress import ProgressReporter

log = logging.getLogger("pixi_pack_ci")

RETRY_ENV = "PIXI_PACK_CI_DOWNLOAD_ATTEMPTS"


@dataclass
class FetchRun:
    """One run's fetching: the plugins' context, the cache and how it is used, and what the
    fetch loop and the pack writers share."""

    context: FetchContext
    cache: PackageCache
    plugins: PluginManager
    cache_mode: CacheMode = CacheMode.STAGING
    attempts: int = 10
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    #: False: cache hits are returned unread and listed in ``unverified`` (archive path → artifact)
    #: for the writer to check while it streams them.
    verify_cache_hits: bool = True
    unverified: dict[str, Artifact] = field(default_factory=dict)
    #: cache key → the place in a pack being written in place where that artifact's bytes go.
    slots: dict[str, ArchiveSlot] = field(default_factory=dict)
    _slot_writers: dict[str, SlotWriter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.context._slot_opener = self._open_slot
        env_attempts = os.environ.get(RETRY_ENV)
        if env_attempts and env_attempts.isdigit():
            self.attempts = int(env_attempts)

    @property
    def downloads_into_slots(self) -> bool:
        """Fetchers write into slots themselves; with a kept cache, downloads go to the cache
        first and are copied into their slots from there (in the kernel)."""
        return self.cache_mode is CacheMode.STAGING

    def _open_slot(self, artifact: Artifact) -> SlotWriter | None:
        slot = self.slots.get(artifact.cache_key)
        if slot is None or not self.downloads_into_slots:
            return None
        writer = SlotWriter(slot, artifact)
        with self._lock:
            self._slot_writers[artifact.cache_key] = writer
        return writer

    def show_progress(self, progress: ProgressReporter | None) -> None:
        """Bytes fetchers report (:meth:`FetchContext.advance`) move ``progress``."""
        self.context._progress = progress.advance if progress is not None else None

    def take_slot_writer(self, artifact: Artifact) -> SlotWriter | None:
        with self._lock:
            return self._slot_writers.pop(artifact.cache_key, None)

    def mark_unverified(self, artifact: Artifact) -> None:
        with self._lock:
            self.unverified[artifact.archive_path] = artifact


def _verify(artifact: Artifact, digests: Digests | None, read_digest: Callable[[str], str]) -> str:
    """Check fetched bytes against the lockfile, with the fetcher's digest or, when it did not hash
    with the algorithm needed, ``read_digest(algorithm)``; returns the sha256 when that was checked."""
    check = ArtifactHash(artifact)
    got = (digests.sha256 if check.algorithm == "sha256" else digests.md5) if digests is not None else ""
    if not got:
        got = read_digest(check.algorithm)
    if check.expected and got.lower() != check.expected:
        raise ChecksumMismatchError(
            f"checksum mismatch for {artifact.file_name} from {redact_url(artifact.url)}: "
            f"lockfile says {check.expected}, got {got}"
        )
    return got.lower() if check.algorithm == "sha256" else ""


def _fill_slot_from_cache(artifact: Artifact, path: Path, slot: ArchiveSlot, cache: PackageCache) -> bool:
    """Copy a cache entry into its slot; False when the entry is missing or does not match.

    What landed in the slot is what gets checked: the open file's own fingerprint against its
    record (nothing read), else the slot's bytes against the lockfile. So an entry replaced or
    changed by another run between lookup and copy can never slip in unchecked."""
    try:
        fh = path.open("rb", buffering=0)
    except FileNotFoundError:
        return False
    with fh:
        copied = fill_slot(fh.fileno(), slot)
        info = os.fstat(fh.fileno())
        if copied == slot.size and info.st_size == slot.size and cache.recall(artifact, path, info) is not None:
            slot.filled.set()
            return True
        check = ArtifactHash(artifact)
        if copied != slot.size or info.st_size != slot.size:
            if check.expected and file_digest(path, check.algorithm) != check.expected:
                return False
            raise SlotSizeError(f"{artifact.file_name} has {info.st_size} bytes, its lockfile says {slot.size}")
        digest = slot_digest(slot, check.algorithm)
        if check.expected and digest != check.expected:
            return False
        if check.algorithm == "sha256":
            cache.remember(artifact, path, digest, info)
    slot.filled.set()
    return True


def _from_cache(artifact: Artifact, run: FetchRun) -> tuple[bool, Path | None]:
    """``(True, path)`` when the cache answers (``path`` None: it went into its slot), else ``(False, None)``."""
    slot = run.slots.get(artifact.cache_key)
    cached = run.cache.lookup(artifact, verify=run.verify_cache_hits and slot is None)
    if cached is not None and slot is not None:
        if _fill_slot_from_cache(artifact, cached, slot, run.cache):
            run.context.advance(artifact.size or 0)
            log.debug("cache hit copied into the pack: %s", artifact.cache_key)
            return True, None
        log.warning("cached %s does not match the lockfile; downloading it again", artifact.file_name)
        run.cache.discard(artifact)
        return False, None
    if cached is None:
        return False, None
    if not run.verify_cache_hits and artifact.cache_key not in run.cache.trusted:
        run.mark_unverified(artifact)
    run.context.advance(artifact.size or 0)
    log.debug("cache hit: %s", artifact.cache_key)
    return True, cached


def _place(artifact: Artifact, temp: Path, digests: Digests | None, run: FetchRun) -> Path | None:
    """Check one fetched attempt and put it where it belongs: the cache, its slot, or both."""
    slot = run.slots.get(artifact.cache_key)
    if slot is None or not run.downloads_into_slots:
        path = run.cache.commit(artifact, temp, _verify(artifact, digests, partial(file_digest, temp)))
        if slot is None:
            return path
        if not _fill_slot_from_cache(artifact, path, slot, run.cache):
            raise TransientFetchError(f"{artifact.file_name} changed in the cache while it was copied")
        return None
    written = run.take_slot_writer(artifact)
    if written is not None:  # the fetcher wrote into the pack itself
        _verify(artifact, digests, partial(slot_digest, slot))
        written.check_complete()
    else:  # it wrote to ``destination``, as a plugin may: check there, then copy in
        _verify(artifact, digests, partial(file_digest, temp))
        with temp.open("rb") as fh:
            copy_into_slot(fh, slot, artifact)
    slot.filled.set()
    return None


def _fetch_one(artifact: Artifact, run: FetchRun) -> Path | None:
    """Fetch one artifact; returns its cache file, or None when it went straight into its slot."""
    answered, path = _from_cache(artifact, run)
    if answered:
        return path
    candidates = run.context.candidate_urls(artifact.url)
    last: DownloadError | None = None
    for attempt in range(max(1, run.attempts)):
        temp = run.cache.temp_path(artifact)
        try:
            run.take_slot_writer(artifact)  # forget an earlier attempt's
            url = candidates[attempt % len(candidates)]  # each retry moves on to the next mirror
            result = run.plugins.fetch_artifact(artifact, temp, run.context, attempt, url)
            if result is None:
                raise DownloadError(f"no plugin could fetch {artifact.file_name} from {redact_url(artifact.url)}")
            return _place(artifact, temp, result if isinstance(result, Digests) else None, run)
        except (TransientFetchError, ChecksumMismatchError) as exc:
            last = exc
            log.info("attempt %d for %s failed: %s", attempt + 1, artifact.file_name, exc)
            delay = min(run.backoff_max, run.backoff_base * (2**attempt))
            time.sleep(delay * (0.5 + random.random() / 2))
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
    assert last is not None
    if isinstance(last, ChecksumMismatchError):
        raise last
    raise DownloadError(f"could not download {artifact.file_name} after {run.attempts} attempts: {last}")


def unique_artifacts(artifacts: Iterable[Artifact]) -> list[Artifact]:
    """Each file once, even when several packs share it; two different files under one name is an error."""
    seen: dict[str, Artifact] = {}
    for artifact in artifacts:
        other = seen.get(artifact.cache_key)
        if other is None:
            seen[artifact.cache_key] = artifact
        elif (other.sha256 or other.md5) != (artifact.sha256 or artifact.md5):
            raise DownloadError(
                f"two different packages are both named {artifact.cache_key} "
                f"({redact_url(other.url)} and {redact_url(artifact.url)}); pack them separately"
            )
    return list(seen.values())


def fetch_artifacts(artifacts: Iterable[Artifact], run: FetchRun) -> dict[str, Path]:
    """Make every artifact available in the run's cache (or its slot); returns cache key → verified file.

    Stops at the first permanent failure; already committed cache entries stay (they are valid).
    """
    todo = unique_artifacts(artifacts)
    results: dict[str, Path] = {}
    if not todo:
        return results
    workers = max(1, min(run.context.config.concurrency, len(todo)))
    if run.slots:
        # In archive order: the pack's hash follows the downloads from the first byte on.
        todo.sort(key=lambda a: run.slots[a.cache_key].offset if a.cache_key in run.slots else -1)
    else:
        # Biggest first: the long downloads start early and the tail of the run stays short.
        todo.sort(key=lambda a: -(a.size or 0))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        futures = {pool.submit(_fetch_one, a, run): a for a in todo}
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in pending:
            fut.cancel()
        errors = [f.exception() for f in done if f.exception() is not None]
        if errors:
            pool.shutdown(wait=True, cancel_futures=True)
            err = errors[0]
            assert err is not None
            raise err
        for fut, artifact in futures.items():
            path = fut.result()
            if path is not None:
                results[artifact.cache_key] = path
    return results
