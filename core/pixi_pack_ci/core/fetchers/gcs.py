"""``gcs://bucket/object`` packages, as rattler's GCS middleware fetches them, with google-auth.

rattler (``gcs_middleware.rs``) turns ``gcs://bucket/path`` into
``https://storage.googleapis.com/bucket/path`` and sends an OAuth token for the
``devstorage.read_only`` scope from Google's Application Default Credentials; so does this.

Why google-auth: it is Google's own implementation of Application Default Credentials, the same
chain google-cloud-auth follows inside rattler: ``GOOGLE_APPLICATION_CREDENTIALS`` (service
account keys, workload identity federation, e.g. from GitHub's OIDC token), the file
``gcloud auth application-default login`` writes, and the metadata server on Google Cloud. The
object itself comes through the run's shared httpx client, with the same retry policy as any
https download.

``STORAGE_EMULATOR_HOST`` (the variable Google's client libraries read) points the requests at an
emulator instead; there, as with those libraries, a request goes out without a token when no
credentials are found.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..errors import DownloadError, TransientFetchError
from ..fetch_context import Digests, FetchContext
from ..hookspecs import hookimpl
from ..http_fetcher import stream_download
from ..model import Artifact
from ..redact import SECRETS
from . import missing_library

GCS_ENDPOINT = "https://storage.googleapis.com"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
_NO_CREDENTIALS = (
    "no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS, run "
    "'gcloud auth application-default login', or run on Google Cloud"
)


class GcsFetcherPlugin:
    """Fetches ``gcs://`` URLs; answers None for every other scheme."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._looked = False

    @hookimpl
    def pixi_pack_ci_fetch_artifact(
        self, artifact: Artifact, destination: Path, context: FetchContext, attempt: int, url: str
    ) -> Digests | None:
        parts = urlsplit(url)
        if parts.scheme != "gcs":
            return None
        if not parts.netloc or not parts.path.strip("/"):
            raise DownloadError(f"cannot fetch {artifact.file_name}: {url} names no bucket and object")
        emulator = os.environ.get(EMULATOR_ENV, "").rstrip("/")
        if emulator and "://" not in emulator:
            emulator = "http://" + emulator  # the libraries accept host:port too
        base = emulator or GCS_ENDPOINT
        target = f"{base}/{parts.netloc}/{quote(unquote(parts.path.lstrip('/')))}"
        token = self._token(required=not emulator)
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        def hint(status: int) -> str:
            if status not in (401, 403):
                return ""
            return " (the Google credentials were refused)" if token else f" ({_NO_CREDENTIALS})"

        return stream_download(context, artifact, destination, target, shown=url, headers=headers, hint=hint)

    def _token(self, *, required: bool) -> str | None:
        """A valid access token from Application Default Credentials, refreshed when it expires;
        None where there are none and none are required (an emulator)."""
        try:
            import google.auth
            import google.auth.exceptions
            import google.auth.transport.requests
        except ImportError:
            raise missing_library("gcs", "gcs", "google-auth") from None
        with self._lock:  # one token for all downloads: refreshed by one thread at a time
            if not self._looked:
                self._looked = True
                try:
                    self._credentials, _project = google.auth.default(scopes=[SCOPE])
                except google.auth.exceptions.DefaultCredentialsError:
                    self._credentials = None
            if self._credentials is None:
                if required:
                    raise DownloadError(_NO_CREDENTIALS)
                return None
            if not self._credentials.valid:
                try:
                    self._credentials.refresh(google.auth.transport.requests.Request())
                except google.auth.exceptions.TransportError as exc:
                    raise TransientFetchError(f"could not reach Google's token endpoint: {exc}") from None
                except google.auth.exceptions.RefreshError as exc:
                    raise DownloadError(f"Google refused to issue a token: {_first_line(exc)}") from None
            token = self._credentials.token
        SECRETS.add(token)
        return str(token) if token else None


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0] if exc.args else exc)
    return text.splitlines()[0] if text else type(exc).__name__
