"""Fetching the artifacts of one or more plans into the cache, verified, concurrently.

The core owns the loop (cache lookup, retries with backoff, hash checks, atomic commit); the
bytes come from the ``pixi_pack_ci_fetch_artifact`` hook, whose last resort is
:class:`HttpFetcherPlugin` (httpx, mirrors, credentials).
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
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit

from . import __version__
from .cache import CHUNK, ArtifactHash, PackageCache, file_digest
from .config import AuthStorage, PackConfig
from .errors import ChecksumMismatchError, DownloadError
from .hookspecs import hookimpl
from .model import Artifact
from .progress import ProgressReporter
from .redact import redact_url
from .slots import ArchiveSlot, SlotSizeError, SlotWriter, copy_into_slot, fill_slot, slot_digest

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("pixi_pack_ci")

RETRY_ENV = "PIXI_PACK_CI_DOWNLOAD_ATTEMPTS"


class TransientFetchError(DownloadError):
    """A failure worth retrying: 5xx, 408/429, a reset or timed-out connection, a truncated body."""


@dataclass(frozen=True)
class Digests:
    """Hashes a fetcher computed while writing, so the core need not read the file again.

    Either may be empty: the core checks the one the lockfile has (sha256 first) and reads the
    file itself only when that one is missing here."""

    sha256: str = ""
    md5: str = ""


@dataclass
class FetchContext:
    """What a fetcher may use: settings, mirrors, credentials and a shared HTTP client."""

    config: PackConfig = field(default_factory=PackConfig)
    auth: AuthStorage = field(default_factory=AuthStorage)
    attempts: int = 10
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    progress: ProgressReporter | None = None
    #: False: cache hits are returned unread and listed in ``unverified`` (archive path → artifact)
    #: for the writer to check while it streams them.
    verify_cache_hits: bool = True
    unverified: dict[str, Artifact] = field(default_factory=dict)
    #: cache key → the place in a pack being written in place where that artifact's bytes go.
    slots: dict[str, ArchiveSlot] = field(default_factory=dict)
    #: True: downloads still go to the cache (which keeps them) and each slot is then filled
    #: from its cache entry in the kernel; False: fetchers write into the slots themselves.
    fill_from_cache: bool = False
    _slot_writers: dict[str, SlotWriter] = field(default_factory=dict)
    _client: httpx.Client | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open_destination(self, artifact: Artifact, destination: Path) -> BinaryIO | SlotWriter:
        """Where a fetcher should write ``artifact``'s bytes: its slot in the pack when the pack is
        written in place (no second copy), else ``destination``. Use as a context manager."""
        slot = self.slots.get(artifact.cache_key)
        if slot is None or self.fill_from_cache:
            return destination.open("wb")
        writer = SlotWriter(slot, artifact)
        with self._lock:
            self._slot_writers[artifact.cache_key] = writer
        return writer

    def take_slot_writer(self, artifact: Artifact) -> SlotWriter | None:
        with self._lock:
            return self._slot_writers.pop(artifact.cache_key, None)

    @property
    def client(self) -> httpx.Client:
        # Imported here: httpx (with its CLI) is a tenth of a second of start-up that a pack from
        # a warm cache, an unpack or --version never needs.
        import httpx

        with self._lock:
            if self._client is None:
                n = self.config.concurrency
                self._client = httpx.Client(
                    http2=False,
                    follow_redirects=True,
                    timeout=httpx.Timeout(connect=30.0, read=300.0, write=60.0, pool=None),
                    limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
                    headers={"User-Agent": f"pixi-pack-ci/{__version__}", "Accept-Encoding": "identity"},
                    trust_env=True,
                )
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def candidate_urls(self, url: str) -> list[str]:
        """The URLs to try for ``url``: its mirrors when one is configured (longest prefix wins), else itself."""
        best = ""
        for prefix in self.config.mirrors:
            if url.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        if not best:
            return [url]
        rest = url[len(best) :]
        return [mirror + rest for mirror in self.config.mirrors[best]]

    def advance(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress.advance(nbytes)


def _apply_credentials(url: str, auth: AuthStorage) -> tuple[str, dict[str, str], httpx.BasicAuth | None]:
    import httpx

    cred = auth.lookup(url)
    if cred is None:
        return url, {}, None
    if cred.kind == "bearer":
        return url, {"Authorization": f"Bearer {cred.token}"}, None
    if cred.kind == "basic":
        return url, {}, httpx.BasicAuth(cred.username or "", cred.password or "")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/t/{cred.token}{parts.path}")), {}, None


class _HashingWriter:
    """Writes and hashes in one pass, with the algorithm the lockfile can check."""

    def __init__(self, fh: Any, artifact: Artifact) -> None:
        self.fh = fh
        self.hash = ArtifactHash(artifact)
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.fh.write(data)
        self.hash.update(data)
        self.size += len(data)

    def digests(self) -> Digests:
        digest = self.hash.hexdigest()
        return Digests(sha256=digest) if self.hash.algorithm == "sha256" else Digests(md5=digest)


class HttpFetcherPlugin:
    """The built-in fetcher: ``file://`` copies and HTTP(S) downloads with httpx."""

    @hookimpl(trylast=True)
    def pixi_pack_ci_fetch_artifact(
        self, artifact: Artifact, destination: Path, context: FetchContext, attempt: int
    ) -> Digests:
        candidates = context.candidate_urls(artifact.url)
        # Each retry moves on to the next mirror.
        url = candidates[attempt % len(candidates)]
        scheme = urlsplit(url).scheme
        if scheme == "file":
            return self._copy_file(url, destination, artifact, context)
        if scheme in ("http", "https"):
            return self._download(url, destination, artifact, context)
        raise DownloadError(f"cannot fetch {artifact.file_name}: unsupported URL scheme in {redact_url(url)}")

    def _copy_file(self, url: str, destination: Path, artifact: Artifact, context: FetchContext) -> Digests:
        source = Path(unquote(urlsplit(url).path))
        try:
            with source.open("rb") as src, context.open_destination(artifact, destination) as dst:
                writer = _HashingWriter(dst, artifact)
                while chunk := src.read(CHUNK):
                    writer.write(chunk)
                    context.advance(len(chunk))
        except FileNotFoundError:
            raise DownloadError(f"local package does not exist: {source}") from None
        except OSError as exc:
            raise DownloadError(f"could not read local package {source}: {exc.strerror}") from None
        return writer.digests()

    def _download(self, url: str, destination: Path, artifact: Artifact, context: FetchContext) -> Digests:
        import httpx

        request_url, headers, basic = _apply_credentials(url, context.auth)
        shown = redact_url(url)
        written = 0
        try:
            with context.client.stream(
                "GET", request_url, headers=headers, auth=basic or httpx.USE_CLIENT_DEFAULT
            ) as resp:
                if resp.status_code >= 500 or resp.status_code in (408, 429):
                    raise TransientFetchError(f"{shown}: server answered {resp.status_code}")
                if resp.status_code >= 400:
                    hint = " (check --auth-file / RATTLER_AUTH_FILE)" if resp.status_code in (401, 403) else ""
                    raise DownloadError(
                        f"could not download {artifact.file_name}: {shown} answered {resp.status_code}{hint}"
                    )
                expected = resp.headers.get("Content-Length")
                with context.open_destination(artifact, destination) as fh:
                    writer = _HashingWriter(fh, artifact)
                    for chunk in resp.iter_raw():
                        writer.write(chunk)
                        written += len(chunk)
                        context.advance(len(chunk))
                if expected is not None and expected.isdigit() and int(expected) != written:
                    raise TransientFetchError(f"{shown}: body truncated ({written} of {expected} bytes)")
                return writer.digests()
        except httpx.TransportError as exc:
            context.advance(-written)
            raise TransientFetchError(f"{shown}: {type(exc).__name__}: {str(exc) or 'connection failed'}") from None
        except TransientFetchError:
            context.advance(-written)
            raise


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


def _fetch_one(artifact: Artifact, cache: PackageCache, context: FetchContext, hook: Any) -> Path | None:
    """Fetch one artifact; returns its cache file, or None when it went straight into its slot."""
    slot = context.slots.get(artifact.cache_key)
    cached = cache.lookup(artifact, verify=context.verify_cache_hits and slot is None)
    if cached is not None and slot is not None:
        if _fill_slot_from_cache(artifact, cached, slot, cache):
            context.advance(artifact.size or 0)
            log.debug("cache hit copied into the pack: %s", artifact.cache_key)
            return None
        log.warning("cached %s does not match the lockfile; downloading it again", artifact.file_name)
        cache.discard(artifact)
        cached = None
    if cached is not None:
        if not context.verify_cache_hits and artifact.cache_key not in cache.trusted:
            with context._lock:
                context.unverified[artifact.archive_path] = artifact
        context.advance(artifact.size or 0)
        log.debug("cache hit: %s", artifact.cache_key)
        return cached
    last: DownloadError | None = None
    for attempt in range(max(1, context.attempts)):
        temp = cache.temp_path(artifact)
        try:
            context.take_slot_writer(artifact)  # forget an earlier attempt's
            result = hook.pixi_pack_ci_fetch_artifact(
                artifact=artifact, destination=temp, context=context, attempt=attempt
            )
            if result is None:
                raise DownloadError(f"no plugin could fetch {artifact.file_name} from {redact_url(artifact.url)}")
            digests = result if isinstance(result, Digests) else None
            if slot is None or context.fill_from_cache:
                path = cache.commit(artifact, temp, _verify(artifact, digests, partial(file_digest, temp)))
                if slot is None:
                    return path
                if not _fill_slot_from_cache(artifact, path, slot, cache):
                    raise TransientFetchError(f"{artifact.file_name} changed in the cache while it was copied")
                return None
            written = context.take_slot_writer(artifact)
            if written is not None:  # the fetcher wrote into the pack itself
                _verify(artifact, digests, partial(slot_digest, slot))
                written.check_complete()
            else:  # it wrote to ``destination``, as a plugin may: check there, then copy in
                _verify(artifact, digests, partial(file_digest, temp))
                with temp.open("rb") as fh:
                    copy_into_slot(fh, slot, artifact)
            slot.filled.set()
            return None
        except (TransientFetchError, ChecksumMismatchError) as exc:
            last = exc
            log.info("attempt %d for %s failed: %s", attempt + 1, artifact.file_name, exc)
            delay = min(context.backoff_max, context.backoff_base * (2**attempt))
            time.sleep(delay * (0.5 + random.random() / 2))
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
    assert last is not None
    if isinstance(last, ChecksumMismatchError):
        raise last
    raise DownloadError(f"could not download {artifact.file_name} after {context.attempts} attempts: {last}")


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


def fetch_artifacts(
    artifacts: Iterable[Artifact], cache: PackageCache, context: FetchContext, hook: Any
) -> dict[str, Path]:
    """Make every artifact available in ``cache``; returns cache key → verified file.

    Stops at the first permanent failure; already committed cache entries stay (they are valid).
    """
    todo = unique_artifacts(artifacts)
    env_attempts = os.environ.get(RETRY_ENV)
    if env_attempts and env_attempts.isdigit():
        context.attempts = int(env_attempts)
    results: dict[str, Path] = {}
    if not todo:
        return results
    workers = max(1, min(context.config.concurrency, len(todo)))
    if context.slots:
        # In archive order: the pack's hash follows the downloads from the first byte on.
        todo.sort(key=lambda a: context.slots[a.cache_key].offset if a.cache_key in context.slots else -1)
    else:
        # Biggest first: the long downloads start early and the tail of the run stays short.
        todo.sort(key=lambda a: -(a.size or 0))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        futures = {pool.submit(_fetch_one, a, cache, context, hook): a for a in todo}
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
