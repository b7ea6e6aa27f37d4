"""The built-in fetcher: ``file://`` copies and HTTP(S) downloads with httpx.

It is the last resort of ``pixi_pack_ci_fetch_artifact`` (``trylast``): a plugin for another
scheme answers first. The core has already applied mirrors to ``url``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .cache import CHUNK, ArtifactHash
from .credentials import AuthStorage
from .errors import DownloadError, TransientFetchError
from .fetch_context import Digests, FetchContext
from .hookspecs import hookimpl
from .model import Artifact
from .redact import redact_url

if TYPE_CHECKING:
    import httpx


def _apply_credentials(url: str, auth: AuthStorage) -> tuple[str, dict[str, str], httpx.BasicAuth | None]:
    import httpx

    cred = auth.lookup(url)
    if cred is None or cred.kind == "s3":  # S3 keys sign s3:// requests only
        return url, {}, None
    if cred.kind == "bearer":
        return url, {"Authorization": f"Bearer {cred.token}"}, None
    if cred.kind == "basic":
        return url, {}, httpx.BasicAuth(cred.username or "", cred.password or "")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/t/{cred.token}{parts.path}")), {}, None


class HashingWriter:
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
        self, artifact: Artifact, destination: Path, context: FetchContext, attempt: int, url: str
    ) -> Digests:
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
                writer = HashingWriter(dst, artifact)
                while chunk := src.read(CHUNK):
                    writer.write(chunk)
                    context.advance(len(chunk))
        except FileNotFoundError:
            raise DownloadError(f"local package does not exist: {source}") from None
        except OSError as exc:
            raise DownloadError(f"could not read local package {source}: {exc.strerror}") from None
        return writer.digests()

    def _download(self, url: str, destination: Path, artifact: Artifact, context: FetchContext) -> Digests:
        request_url, headers, basic = _apply_credentials(url, context.auth)
        cred = context.auth.lookup(url)
        host = urlsplit(url).hostname or url

        def hint(status: int) -> str:
            if status not in (401, 403):
                return ""
            if cred is not None and cred.kind != "s3":
                return f" (the credentials for {host} from {cred.source} were refused)"
            return f" (no credentials for {host}: see --auth-file)"

        return stream_download(context, artifact, destination, request_url, shown=redact_url(url),
                               headers=headers, auth=basic, hint=hint)  # fmt: skip


def stream_download(
    context: FetchContext,
    artifact: Artifact,
    destination: Path,
    url: str,
    *,
    shown: str,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
    hint: Callable[[int], str] | None = None,
) -> Digests:
    """GET ``url`` and write its body, hashed, where ``artifact`` goes; every fetcher that speaks HTTP
    (this one, GCS, OCI blobs) shares the policy: 5xx, 408, 429, transport errors and truncated bodies
    are worth a retry (:class:`TransientFetchError`), another 4xx fails at once with one line naming
    the file, ``shown`` (a URL without secrets) and ``hint(status)``."""
    import httpx

    written = 0
    try:
        with context.client.stream("GET", url, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT) as resp:
            if resp.status_code >= 500 or resp.status_code in (408, 429):
                raise TransientFetchError(f"{shown}: server answered {resp.status_code}")
            if resp.status_code >= 400:
                extra = hint(resp.status_code) if hint is not None else ""
                raise DownloadError(
                    f"could not download {artifact.file_name}: {shown} answered {resp.status_code}{extra}"
                )
            expected = resp.headers.get("Content-Length")
            with context.open_destination(artifact, destination) as fh:
                writer = HashingWriter(fh, artifact)
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
