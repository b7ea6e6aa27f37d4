"""``oci://`` packages: conda packages mirrored into an OCI registry, as rattler and pixi read them.

The layout (CEP "OCI registries as conda channels", rattler_networking ``oci_middleware.rs``, and
what conda-oci-mirror pushes to ``ghcr.io/channel-mirrors``): the package
``oci://REGISTRY/CHANNEL/SUBDIR/NAME-VERSION-BUILD.conda`` is one OCI artifact in the repository
``CHANNEL/SUBDIR/NAME`` (``zzz`` put before a name starting with ``_``, which OCI forbids), tagged
``VERSION-BUILD`` with ``+ ! =`` spelled ``__p__ __e__ __eq__``; its manifest has the package as a
layer of media type ``application/vnd.conda.package.v2`` (``.v1`` for ``.tar.bz2``). As rattler
does, a package whose sha256 the lockfile knows is pulled straight as the blob of that digest, and
through the manifest only when the registry has no such blob in that repository.

Authentication as rattler's: the credential sources' entry for the URL (its host, usually); a
``BearerToken`` is sent as the registry token itself; otherwise the registry's ``WWW-Authenticate:
Bearer realm=…,service=…`` challenge is answered at its token endpoint for a ``pull`` token, with
``BasicHTTP`` credentials if there are any, anonymously if not (public repositories, ghcr.io's
mirrors); a registry without a challenge gets the Basic credentials directly. Credentials go to
an https token endpoint only. A registry on this machine (``localhost``, 127.0.0.0/8, ::1) is
spoken to over plain http, as Docker and go-containerregistry do, with a token endpoint there too.

No library: this is a handful of requests, through the run's shared httpx client, with the same
retry policy as any download.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..credentials import Credential
from ..errors import DownloadError, TransientFetchError
from ..fetch_context import Digests, FetchContext
from ..hookspecs import hookimpl
from ..http_fetcher import stream_download
from ..model import Artifact
from ..redact import SECRETS
from . import is_loopback

if TYPE_CHECKING:
    import httpx

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
PACKAGE_TYPES = {".conda": "application/vnd.conda.package.v2", ".tar.bz2": "application/vnd.conda.package.v1"}
#: Seconds a token is used for when the token endpoint does not say (the distribution spec's default).
TOKEN_LIFETIME = 60
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class OciReference:
    """Where one package is in a registry."""

    url: str
    #: ``host[:port]``
    registry: str
    repository: str
    tag: str
    media_type: str

    @property
    def base(self) -> str:
        host = urlsplit(f"//{self.registry}").hostname or ""
        return f"{'http' if is_loopback(host) else 'https'}://{self.registry}"


def parse_reference(url: str) -> OciReference | None:
    """rattler's mapping of an ``oci://`` package URL (module docstring); None if it names no package."""
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not parts.netloc or len(segments) < 2:
        return None
    filename = segments[-1]
    suffix = next((s for s in PACKAGE_TYPES if filename.endswith(s)), None)
    pieces = filename[: -len(suffix)].rsplit("-", 2) if suffix else []
    if suffix is None or len(pieces) != 3 or not all(pieces):
        return None
    name, version, build = pieces
    if name.startswith("_"):
        name = "zzz" + name
    tag = f"{version}-{build}".replace("+", "__p__").replace("!", "__e__").replace("=", "__eq__")
    repository = "/".join([*segments[:-1], name])
    return OciReference(url, parts.netloc, repository, tag, PACKAGE_TYPES[suffix])


@dataclass(frozen=True)
class _Challenge:
    realm: str
    service: str | None


def _bearer_challenge(header: str) -> _Challenge | None:
    if not header.lower().startswith("bearer"):
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(header)}
    realm = params.get("realm")
    return _Challenge(realm, params.get("service")) if realm else None


def _check(resp: httpx.Response, what: str, artifact: Artifact) -> None:
    """The download policy for the registry's small requests (probe, token, manifest)."""
    if resp.status_code >= 500 or resp.status_code in (408, 429):
        raise TransientFetchError(f"{what}: registry answered {resp.status_code}")
    if resp.status_code >= 400:
        raise DownloadError(f"could not download {artifact.file_name}: {what} answered {resp.status_code}")


class OciFetcherPlugin:
    """Fetches ``oci://`` URLs; answers None for every other scheme."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: registry → its Bearer challenge (None: no token service, credentials go straight to it)
        self._challenges: dict[str, _Challenge | None] = {}
        #: (registry, repository) → (token, when to stop using it)
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    @hookimpl
    def pixi_pack_ci_fetch_artifact(
        self, artifact: Artifact, destination: Path, context: FetchContext, attempt: int, url: str
    ) -> Digests | None:
        if urlsplit(url).scheme != "oci":
            return None
        ref = parse_reference(url)
        if ref is None:
            raise DownloadError(f"cannot fetch {artifact.file_name}: {url} is not an oci:// package URL "
                                "(registry/channel/subdir/name-version-build.conda or .tar.bz2)")  # fmt: skip
        cred = context.auth.lookup(url)
        headers = self._authorization(ref, cred, context, artifact)
        hint = _refused_hint(ref, cred)
        if artifact.sha256:
            blob = f"{ref.base}/v2/{ref.repository}/blobs/sha256:{artifact.sha256}"
            try:
                return stream_download(context, artifact, destination, blob, shown=url, headers=headers, hint=hint)
            except DownloadError as exc:
                # Pull-through caches import a package only once its manifest is pulled (rattler too).
                if isinstance(exc, TransientFetchError) or " answered 404" not in str(exc):
                    raise
        digest = self._layer_digest(ref, headers, context, artifact)
        blob = f"{ref.base}/v2/{ref.repository}/blobs/{digest}"
        return stream_download(context, artifact, destination, blob, shown=url, headers=headers, hint=hint)

    def _layer_digest(
        self, ref: OciReference, headers: dict[str, str], context: FetchContext, artifact: Artifact
    ) -> str:
        import httpx

        what = f"{ref.url} (manifest {ref.repository}:{ref.tag})"
        try:
            resp = context.client.get(f"{ref.base}/v2/{ref.repository}/manifests/{ref.tag}",
                                      headers={**headers, "Accept": MANIFEST_TYPE})  # fmt: skip
        except httpx.TransportError as exc:
            raise TransientFetchError(f"{what}: {type(exc).__name__}: {exc or 'connection failed'}") from None
        _check(resp, what, artifact)
        try:
            layers: Any = resp.json().get("layers", [])
            return next(str(layer["digest"]) for layer in layers if layer.get("mediaType") == ref.media_type)
        except (ValueError, AttributeError, TypeError, KeyError, StopIteration):
            raise DownloadError(
                f"could not download {artifact.file_name}: {what} has no {ref.media_type} layer"
            ) from None

    def _authorization(
        self, ref: OciReference, cred: Credential | None, context: FetchContext, artifact: Artifact
    ) -> dict[str, str]:
        if cred is not None and cred.kind == "bearer":  # a stored bearer token is a registry token
            return {"Authorization": f"Bearer {cred.token}"}
        basic = cred if cred is not None and cred.kind == "basic" else None
        challenge = self._challenge(ref, context, artifact)
        if challenge is None:
            return {"Authorization": _basic(basic)} if basic is not None else {}
        return {"Authorization": f"Bearer {self._token(ref, challenge, basic, context, artifact)}"}

    def _challenge(self, ref: OciReference, context: FetchContext, artifact: Artifact) -> _Challenge | None:
        """What the registry's ``/v2/`` answers an anonymous request with, asked once per registry."""
        import httpx

        with self._lock:
            if ref.registry in self._challenges:
                return self._challenges[ref.registry]
        what = f"{ref.base}/v2/"
        try:
            resp = context.client.get(what)
        except httpx.TransportError as exc:
            raise TransientFetchError(f"{what}: {type(exc).__name__}: {exc or 'connection failed'}") from None
        if resp.status_code != 401:
            _check(resp, what, artifact)
        challenge = _bearer_challenge(resp.headers.get("WWW-Authenticate", "")) if resp.status_code == 401 else None
        if challenge is not None and not _safe_realm(challenge.realm, ref):
            challenge = None  # as rattler: never hand credentials to a token endpoint in clear text
        with self._lock:
            self._challenges[ref.registry] = challenge
        return challenge

    def _token(
        self, ref: OciReference, challenge: _Challenge, basic: Credential | None, context: FetchContext,
        artifact: Artifact,
    ) -> str:  # fmt: skip
        import httpx

        key = (ref.registry, ref.repository)
        with self._lock:
            token, until = self._tokens.get(key, ("", 0.0))
        if token and time.monotonic() < until:
            return token
        params = {"scope": f"repository:{ref.repository}:pull"}
        if challenge.service:
            params["service"] = challenge.service
        auth = httpx.BasicAuth(basic.username or "", basic.password or "") if basic is not None else None
        what = f"the token service of {ref.registry}"
        try:
            resp = context.client.get(challenge.realm, params=params, auth=auth or httpx.USE_CLIENT_DEFAULT)
        except httpx.TransportError as exc:
            raise TransientFetchError(f"{what}: {type(exc).__name__}: {exc or 'connection failed'}") from None
        if resp.status_code in (401, 403):
            who = f"the credentials from {basic.source}" if basic is not None else "an anonymous request"
            raise DownloadError(f"could not download {artifact.file_name}: {what} refused {who} "
                                f"for {ref.repository} ({resp.status_code})")  # fmt: skip
        _check(resp, what, artifact)
        try:
            body = resp.json()
            token = str(body.get("token") or body.get("access_token") or "")
            lifetime = int(body.get("expires_in") or TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token, lifetime = "", 0
        if not token:
            raise DownloadError(f"could not download {artifact.file_name}: {what} answered without a token")
        SECRETS.add(token)
        with self._lock:  # a little early: a download that starts must not carry a token about to expire
            self._tokens[key] = (token, time.monotonic() + max(0, lifetime - 10))
        return token


def _basic(cred: Credential) -> str:
    import base64

    pair = f"{cred.username or ''}:{cred.password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _safe_realm(realm: str, ref: OciReference) -> bool:
    parts = urlsplit(realm)
    if parts.scheme == "https":
        return True
    registry_host = urlsplit(f"//{ref.registry}").hostname or ""
    return parts.scheme == "http" and is_loopback(parts.hostname or "") and is_loopback(registry_host)


def _refused_hint(ref: OciReference, cred: Credential | None) -> Callable[[int], str]:
    def hint(status: int) -> str:
        if status not in (401, 403):
            return " (not in the registry)" if status == 404 else ""
        if cred is not None and cred.kind in ("bearer", "basic"):
            return f" (the credentials for {ref.registry} from {cred.source} were refused)"
        return f" (no credentials for {ref.registry}: see --auth-file)"

    return hint
