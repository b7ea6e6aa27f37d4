"""What a fetch plugin may use, and nothing more.

``pixi_pack_ci_fetch_artifact`` receives a :class:`FetchContext`: the settings, credentials, a
shared HTTP client, where to write the bytes, and a way to report progress. How the core decides
what to fetch, retries, checks hashes and places bytes in a pack is the core's own state
(:class:`pixi_pack_ci.core.fetch.FetchRun`), which plugins never see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from . import __version__
from .config import PackConfig
from .credentials import AuthStorage
from .model import Artifact

if TYPE_CHECKING:
    import httpx

    from .slots import SlotWriter

#: Opens the place in a pack being written in place where an artifact's bytes go, if it has one.
SlotOpener = Callable[[Artifact], "SlotWriter | None"]


@dataclass(frozen=True)
class Digests:
    """Hashes a fetcher computed while writing, so the core need not read the file again.

    Either may be empty: the core checks the one the lockfile has (sha256 first) and reads the
    file itself only when that one is missing here."""

    sha256: str = ""
    md5: str = ""


@dataclass
class FetchContext:
    """Settings, mirrors, credentials and a shared HTTP client for fetchers.

    The core picks the URL of each attempt (mirrors rotate with the attempts), so a fetcher for a
    new scheme gets mirrors for free; it writes the bytes to :meth:`open_destination` and may
    report them with :meth:`advance`."""

    config: PackConfig = field(default_factory=PackConfig)
    auth: AuthStorage = field(default_factory=AuthStorage)
    _slot_opener: SlotOpener | None = None
    _progress: Callable[[int], None] | None = None
    _client: httpx.Client | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open_destination(self, artifact: Artifact, destination: Path) -> BinaryIO | SlotWriter:
        """Where to write ``artifact``'s bytes: straight into its place in the pack when the pack
        is written in place (no second copy), else ``destination``. Use as a context manager."""
        writer = self._slot_opener(artifact) if self._slot_opener is not None else None
        return writer if writer is not None else destination.open("wb")

    def advance(self, nbytes: int) -> None:
        """Report ``nbytes`` more (or, negative, fewer after a failed attempt) bytes fetched."""
        if self._progress is not None:
            self._progress(nbytes)

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
