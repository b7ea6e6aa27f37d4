"""A distribution-spec client on httpx: what pushing an image and reading a base image need.

HEAD before upload, cross-repository mount, monolithic upload with a chunked fallback (413),
manifests after the blobs, tags last; retries with backoff for 5xx, 429 and broken connections; Bearer
tokens from the ``WWW-Authenticate`` challenge (RFC 7235 quoted strings: ``scope`` holds commas)
or Basic. Credentials come from ``PIXI_PACK_CI_REGISTRY_USERNAME``/``_PASSWORD`` (for the
registries pushed to only), else a plugin, else Docker's ``config.json`` (its credential helpers
too); they are registered as secrets, so never printed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from .. import __version__
from ..redact import SECRETS
from .blobs import INDEX, MANIFEST, canonical_json
from .errors import RegistryError

log = logging.getLogger("pixi_pack_ci")

USERNAME_ENV = "PIXI_PACK_CI_REGISTRY_USERNAME"
PASSWORD_ENV = "PIXI_PACK_CI_REGISTRY_PASSWORD"
ATTEMPTS = 5
CHUNK = 8 << 20
#: Answers worth the same request again after a pause.
RETRIED = (429, 500, 502, 503, 504)
_CHALLENGE = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…",scope="repository:a:push,pull"`` → ``("bearer", {…})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _CHALLENGE.finditer(rest)
    }
    return scheme.lower(), {k: re.sub(r"\\(.)", r"\1", v) for k, v in params.items()}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    @property
    def identity_token(self) -> bool:
        """A Docker identity token (a credential helper's ``<token>`` user): an OAuth2 refresh
        token for the registry's token service, not a password."""
        return self.username == IDENTITY_TOKEN


#: Asks plugins for a registry's credentials (``pixi_pack_ci_registry_credentials``).
CredentialHook = Callable[[str], "tuple[str, str] | None"]

#: The user name with which a Docker credential helper hands out an identity token.
IDENTITY_TOKEN = "<token>"
#: Docker Hub's name in Docker's config.json and for its credential helpers.
DOCKER_HUB = "https://index.docker.io/v1/"


def find_credentials(
    registry: str, plugins: CredentialHook | None = None, *, pushed: bool = False
) -> Credentials | None:
    """From the environment (only for a registry ``pushed`` to: one pair of variables names no
    registry, and a base's registry elsewhere, or its token service, must never see a token
    meant for the push target), else a plugin, else Docker's ``config.json``; None: anonymous."""
    user, password = os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV)
    if pushed and user and password:
        return _secret(Credentials(user, password))
    answer = plugins(registry) if plugins is not None else None
    if answer is not None:
        return _secret(Credentials(*answer))
    return docker_credentials(registry)


def docker_credentials(registry: str) -> Credentials | None:
    """Docker's ``config.json`` in Docker's order: the registry's ``credHelpers`` entry, else
    ``credsStore`` (each a ``docker-credential-<name>`` program), else the ``auths`` entry.
    Where the helper is missing, fails or knows no such registry, docker goes anonymous; here
    the ``auths`` entry is tried first (it was written for this registry), with a -v note."""
    folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    hub = registry == "docker.io"
    helpers = _table(config, "credHelpers")
    named = next((n for n in ([DOCKER_HUB, registry] if hub else [registry]) if n in helpers), None)
    helper = helpers[named] if named is not None else config.get("credsStore")
    if isinstance(helper, str) and helper:
        found = _from_helper(helper, named or (DOCKER_HUB if hub else registry))
        if found is not None:
            return found
    auths = _table(config, "auths")
    for name in [registry, f"https://{registry}", f"http://{registry}", *([DOCKER_HUB] if hub else [])]:
        entry = auths.get(name)
        if not isinstance(entry, dict):
            continue
        # Before ``auth``: ``az acr login`` writes both, ``auth`` with an empty password, and docker
        # takes the identity token when there is one.
        if entry.get("identitytoken"):
            return _secret(Credentials(IDENTITY_TOKEN, str(entry["identitytoken"])))
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except ValueError:  # not base64, or not text
                log.info("Docker's config.json: the auth of %s is not base64 user:password; skipped", name)
                continue
            return _secret(Credentials(user, password))
        if entry.get("username") and entry.get("password"):
            return _secret(Credentials(str(entry["username"]), str(entry["password"])))
    return None


def _table(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _from_helper(helper: str, server: str) -> Credentials | None:
    """``docker-credential-<helper> get``, ``server`` on standard input, ``{"Username",
    "Secret"}`` on standard output (the helper protocol). None, with a -v note, when the helper
    is missing, fails (as it does for a registry it has nothing for) or answers otherwise."""
    name = f"docker-credential-{helper}"
    program = shutil.which(name)
    if program is None:
        log.info("Docker's config.json names the credential helper %s, which is not on PATH", name)
        return None
    try:
        proc = subprocess.run([program, "get"], input=server.encode(), capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("%s could not run: %s", name, exc)
        return None
    try:
        answer = json.loads(proc.stdout) if proc.returncode == 0 else None
        user, secret = (str(answer["Username"]), str(answer["Secret"])) if isinstance(answer, dict) else ("", "")
    except (ValueError, KeyError):
        user, secret = "", ""
    SECRETS.add(secret)  # before anything about this answer is printed
    if not secret:
        # What a failing helper says ("credentials not found in native keychain"), unless it
        # looks like an answer, which may hold a secret never registered.
        said = (proc.stdout or proc.stderr).decode(errors="replace").strip().splitlines()
        reason = f": {said[0][:200]}" if said and proc.returncode != 0 and not said[0].startswith("{") else ""
        log.info("%s gave no credentials for %s (exit %d%s)", name, server, proc.returncode, reason)
        return None
    return _secret(Credentials(user, secret))


def _secret(credentials: Credentials) -> Credentials:
    SECRETS.add(credentials.password)
    SECRETS.add(base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode())
    return credentials


def _explain(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        detail = ""
    return f"{response.status_code} {response.reason_phrase}" + (f" ({detail})" if detail else "")


class _Broken(RegistryError):
    """A request of an upload session that failed the way a retry may cure (the connection
    broke, 5xx, 429): the caller starts a new session rather than send to this one again."""


class Registry:
    """One registry (``host[:port]``), its tokens per scope, and the requests an image needs."""

    def __init__(
        self,
        host: str,
        api: str,
        client: httpx.Client,
        *,
        backoff: float = 0.2,
        plugins: CredentialHook | None = None,
        credentials: Credentials | None = None,
        pushed: bool = False,
    ) -> None:
        self.host = host
        self.api = api
        self.client = client
        # Given on the command line (for the registries pushed to), else looked up; ``pushed``:
        # a ``--push`` registry, which alone gets the environment's credentials.
        self.credentials = (
            _secret(credentials) if credentials is not None else find_credentials(host, plugins, pushed=pushed)
        )
        self.backoff = backoff
        self._tokens: dict[str, str] = {}

    # --- the transport: auth and retries -----------------------------------------------------

    def _authorization(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        return {"Authorization": token} if token else {}

    def _authenticate(self, response: httpx.Response, scope: str) -> bool:
        """Answer a 401's challenge; False when there is nothing more to try."""
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if self.credentials is None or self.credentials.identity_token:
                return False  # an identity token is for a token service only
            if self._tokens.get(scope, "").startswith("Basic "):
                return False
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            self._tokens[scope] = "Basic " + base64.b64encode(raw).decode()
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        # One ``scope`` parameter per scope, as the token spec asks: a challenge names several
        # (a cross-repository mount's) in one space-separated string, which some services take
        # as one scope they do not know.
        scopes = list(dict.fromkeys(s for s in (*params.get("scope", "").split(" "), *scope.split(" ")) if s))
        query: list[tuple[str, str | int | float | bool | None]] = [("scope", s) for s in scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        try:
            reply = self._token_request(params, query, scopes)
        except httpx.TransportError as exc:
            raise RegistryError(f"cannot reach the token service of {self.host}: {exc}") from None
        if reply.status_code != 200:
            raise RegistryError(f"the token service of {self.host} refused: {_explain(reply)}")
        try:
            body = reply.json()
        except ValueError:
            body = None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not token:
            raise RegistryError(f"the token service of {self.host} gave no token")
        SECRETS.add(str(token))
        if self._tokens.get(scope) == f"Bearer {token}":
            return False  # the same token again: it does not allow this
        self._tokens[scope] = f"Bearer {token}"
        return True

    def _token_request(
        self, params: dict[str, str], query: list[tuple[str, str | int | float | bool | None]], scopes: list[str]
    ) -> httpx.Response:
        """GET with Basic credentials, or, for an identity token, an OAuth2 POST
        (``grant_type=refresh_token``) as docker sends it; a token service without OAuth2 (404,
        405) is then asked anonymously, as docker does."""
        credentials = self.credentials
        if credentials is not None and credentials.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credentials.password,
                "client_id": "pixi-pack-ci",
                "scope": " ".join(scopes),
                **({"service": params["service"]} if params.get("service") else {}),
            }
            reply = self.client.post(params["realm"], data=form)
            if reply.status_code not in (404, 405):
                return reply
            credentials = None
        auth = (credentials.username, credentials.password) if credentials is not None else None
        return self.client.get(params["realm"], params=query, auth=auth)

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        scope: str,
        *,
        headers: dict[str, str] | None = None,
        body: Callable[[], bytes | Iterator[bytes]] | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        auth_tries: int = 2,
        retry: bool = True,
        what: str,
    ) -> httpx.Response:
        """One request, authenticated and retried; a status outside ``ok`` (404 included: the
        caller may allow it) raises one line naming ``what``. ``auth_tries``: how many 401s are
        answered with a new token (a caller that allows 401 takes the one after). ``retry=False``:
        a broken connection, 5xx or 429 raises ``_Broken`` at once, for a caller that must start
        over otherwise (an upload session)."""
        target = url if isinstance(url, httpx.URL) or url.startswith("http") else f"{self.api}{url}"
        last = ""
        authenticated = 0
        for attempt in range(ATTEMPTS):
            try:
                response = self.client.request(
                    method,
                    target,
                    headers={**(headers or {}), **self._authorization(scope)},
                    content=body() if body is not None else None,
                )
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                if not retry:
                    raise _Broken(last) from None
                self._sleep(attempt)
                continue
            if response.status_code == 401 and authenticated < auth_tries and self._authenticate(response, scope):
                authenticated += 1
                continue
            if response.status_code in ok:
                return response
            if response.status_code in RETRIED and not retry:
                raise _Broken(_explain(response))
            if response.status_code in RETRIED and attempt + 1 < ATTEMPTS:
                last = _explain(response)
                self._sleep(attempt)
                continue
            raise RegistryError(f"{self.host} refused to {what}: {_explain(response)}")
        raise RegistryError(f"{self.host} failed to {what} after {ATTEMPTS} attempts: {last}")

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(5.0, self.backoff * 2**attempt) * (0.5 + random.random() / 2))

    # --- reading ----------------------------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str, accept: list[str]) -> tuple[bytes, str]:
        response = self.request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            f"repository:{repo}:pull",
            headers={"Accept": ", ".join(accept)},
            ok=(200,),
            what=f"give the manifest {repo}:{reference}",
        )
        return response.content, response.headers.get("Content-Type", "").split(";")[0]

    def get_blob(self, repo: str, digest: str) -> bytes:
        what = f"give the blob {digest} of {repo}"
        return self.request(
            "GET", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull", ok=(200,), what=what
        ).content

    def download_blob(self, repo: str, digest: str, out: Callable[[bytes], object]) -> None:
        """Stream a blob into ``out`` a MiB at a time (a base layer for a layout output): memory
        stays flat however big the layer. The HEAD first answers any auth challenge; a broken
        stream raises, and the caller starts again with a fresh file."""
        scope = f"repository:{repo}:pull"
        url = f"{self.api}/v2/{repo}/blobs/{digest}"
        self.request("HEAD", url, scope, ok=(200,), what=f"give the blob {digest} of {repo}")
        try:
            with self.client.stream("GET", url, headers=self._authorization(scope)) as response:
                if response.status_code != 200:
                    raise RegistryError(
                        f"{self.host} refused to give the blob {digest} of {repo}: {_explain(response)}"
                    )
                for chunk in response.iter_bytes(1 << 20):
                    out(chunk)
        except httpx.TransportError as exc:
            raise RegistryError(f"{self.host} broke off sending {digest}: {exc}") from None

    # --- writing ----------------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: str) -> bool:
        scope = f"repository:{repo}:pull,push"
        what = f"check for {digest} in {repo}"
        return self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope, ok=(200, 404), what=what).status_code == 200

    def push_blob(
        self, repo: str, digest: str, size: int, opener: Callable[[], BinaryIO], mount_from: str | None
    ) -> str:
        """Make ``digest`` exist in ``repo``: ``"present"``, ``"mounted"`` or ``"uploaded"``.
        ``opener`` is called only when the bytes must go up (so it may fetch them first: a base
        layer whose mount was refused), once, before any upload request."""
        if self.has_blob(repo, digest):
            return "present"
        scope = f"repository:{repo}:pull,push"
        session: httpx.URL | None = None
        if mount_from:
            both = f"{scope} repository:{mount_from}:pull"
            start = self.request(
                "POST",
                f"/v2/{repo}/blobs/uploads/?mount={digest}&from={mount_from}",
                both,
                ok=(201, 202, 401, 403, 404),
                auth_tries=1,
                what=f"start an upload to {repo}",
            )
            if start.status_code == 201:
                return "mounted"
            # Refused. 202: an upload session instead (distribution when the blob is not in
            # ``mount_from``, GHCR and Docker Hub when the token may not read it); 401/403: the
            # token service would not add the pull on ``mount_from`` (distribution then asks for
            # it again). The bytes go up, into the session when there is one.
            log.info("%s did not mount %s from %s (%s): uploading it", self.host, digest, mount_from, start.status_code)
            if start.status_code == 202:
                session, scope = self._location(start), both
        with opener() as fh:
            self._upload(repo, digest, size, fh, scope, session)
        return "uploaded"

    def _upload(self, repo: str, digest: str, size: int, fh: BinaryIO, scope: str, session: httpx.URL | None) -> None:
        """The bytes of ``fh`` as ``digest``: one PUT into ``session`` (or a new one), in chunks
        when the registry says the request is too big (413). A broken connection, 5xx or 429
        during a PUT or PATCH starts again from a new session (POST): the old one may be gone or
        hold part of the blob, and sending to it again fails (distribution: 404
        BLOB_UPLOAD_INVALID) or stores wrong bytes. At most ``ATTEMPTS`` tries in all."""
        chunked = False
        minimum = 0
        failures = 0
        while True:
            if session is None:
                what = f"start an upload to {repo}"
                start = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(202,), what=what)
                session = self._location(start)
                minimum = int(start.headers.get("OCI-Chunk-Min-Length") or 0)
            try:
                if chunked:
                    self._send_chunks(session, digest, size, fh, scope, max(CHUNK, minimum))
                    return
                if self._send_whole(session, digest, size, fh, scope):
                    return
                chunked, session = True, None  # too big for one request here: in chunks, from a new session
                continue
            except _Broken as exc:
                failures += 1
                if failures == ATTEMPTS:
                    raise RegistryError(
                        f"{self.host} failed to take {digest} after {ATTEMPTS} attempts: {exc}"
                    ) from None
                log.info("%s broke off taking %s (%s); starting its upload again", self.host, digest, exc)
                self._sleep(failures - 1)
                session = None

    def _send_whole(self, session: httpx.URL, digest: str, size: int, fh: BinaryIO, scope: str) -> bool:
        """One PUT of the whole blob; False when it is too big for one request (413)."""

        def whole() -> Iterator[bytes]:
            fh.seek(0)
            while chunk := fh.read(1 << 20):
                yield chunk

        url = session.copy_merge_params({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        response = self.request(
            "PUT", url, scope, headers=headers, body=whole, ok=(201, 413), retry=False, what=f"take {digest}"
        )
        return response.status_code == 201

    def _send_chunks(self, location: httpx.URL, digest: str, size: int, fh: BinaryIO, scope: str, chunk: int) -> None:
        fh.seek(0)
        offset = 0
        while offset < size:
            data = fh.read(chunk)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(data) - 1}",
                "Content-Length": str(len(data)),
            }
            reply = self.request(
                "PATCH",
                location,
                scope,
                headers=headers,
                body=partial(bytes, data),
                ok=(202,),
                retry=False,
                what=f"take part of {digest}",
            )
            location = self._location(reply)
            offset += len(data)
        url = location.copy_merge_params({"digest": digest})
        self.request("PUT", url, scope, ok=(201,), retry=False, what=f"take {digest}")

    def _location(self, response: httpx.Response) -> httpx.URL:
        """The upload URL, relative or absolute, with the query the registry put in it kept."""
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.host} started an upload without saying where to send it")
        return response.url.join(location)

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        response = self.put_manifest_response(repo, reference, data, media_type, f"take the manifest {reference}")
        return str(response.headers.get("Docker-Content-Digest", ""))

    def put_manifest_response(
        self, repo: str, reference: str, data: bytes, media_type: str, what: str
    ) -> httpx.Response:
        """PUT a manifest; the whole response, for callers that read more than its digest."""
        return self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            f"repository:{repo}:pull,push",
            headers={"Content-Type": media_type},
            body=lambda: data,
            ok=(200, 201),
            what=what,
        )


EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"


def push_referrer(
    registry: Registry,
    repo: str,
    subject: dict[str, object],
    artifact_type: str,
    data: bytes,
    annotations: dict[str, str],
) -> str:
    """An OCI 1.1 referrer of ``subject`` holding ``data`` (one layer of ``artifact_type``, the
    empty config), pushed by digest; without the referrers API (``OCI-Subject`` missing: GHCR,
    Docker Hub, distribution 2.8) it is also listed in the ``sha256-<hex>`` fallback index, with
    its artifactType and annotations, as the spec says. Returns its digest."""
    empty_digest = "sha256:" + hashlib.sha256(EMPTY_DATA).hexdigest()
    data_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    for digest, blob in ((empty_digest, EMPTY_DATA), (data_digest, data)):
        registry.push_blob(repo, digest, len(blob), partial(io.BytesIO, blob), None)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY, "digest": empty_digest, "size": len(EMPTY_DATA)},
            "layers": [{"mediaType": artifact_type, "digest": data_digest, "size": len(data)}],
            "subject": subject,
            "annotations": annotations,
        }
    )
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    response = registry.put_manifest_response(repo, digest, manifest, MANIFEST, "take a referrer")
    if not response.headers.get("OCI-Subject"):
        _add_to_fallback_index(
            registry,
            repo,
            str(subject["digest"]),
            {
                "mediaType": MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "artifactType": artifact_type,
                "annotations": annotations,
            },
        )
    return digest


def _add_to_fallback_index(registry: Registry, repo: str, subject: str, entry: dict[str, object]) -> None:
    tag = subject.replace(":", "-")
    scope = f"repository:{repo}:pull,push"
    found = registry.request(
        "GET",
        f"/v2/{repo}/manifests/{tag}",
        scope,
        headers={"Accept": INDEX},
        ok=(200, 404),
        what="give the referrers index",
    )
    index: dict[str, Any] = found.json() if found.status_code == 200 else {"schemaVersion": 2, "mediaType": INDEX}
    manifests: list[dict[str, Any]] = list(index.get("manifests") or [])
    if any(m.get("digest") == entry["digest"] for m in manifests):
        return
    index["manifests"] = [*manifests, entry]
    data = canonical_json(index)
    registry.request(
        "PUT",
        f"/v2/{repo}/manifests/{tag}",
        scope,
        headers={"Content-Type": INDEX},
        body=lambda: data,
        ok=(200, 201),
        what="take the referrers index",
    )


def new_client() -> httpx.Client:
    return httpx.Client(
        follow_redirects=True,  # httpx drops Authorization on a redirect to another host (a CDN)
        timeout=httpx.Timeout(connect=30.0, read=300.0, write=300.0, pool=None),
        headers={"User-Agent": f"pixi-pack-ci/{__version__}"},
        trust_env=True,
    )
