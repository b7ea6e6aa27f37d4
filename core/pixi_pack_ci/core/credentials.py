"""Credentials, found where rattler (and so pixi and pixi-pack) looks for them, in its order.

Sources, first to last (rattler_networking's ``AuthenticationStorage::from_env_and_defaults``,
with pixi-pack's ``--auth-file`` put in front of them):

1. ``--auth-file FILE``
2. ``$RATTLER_AUTH_FILE``
3. the system keyring: service ``rattler``, one entry per host holding the credential's JSON
   (what ``pixi auth login`` writes), read with Python's ``keyring`` where it finds a backend
4. ``~/.rattler/credentials.json``
5. netrc: ``$NETRC``, else ``~/.netrc`` (``~/_netrc`` on Windows)

A URL is looked up key by key (its host, for ``s3://`` its bucket's URL prefixes, then the
``*.domain`` wildcards), and each key source by source: the first source that has the key wins.
So, as in rattler, a host's entry in netrc beats a wildcard in the auth file. Two keys are ours
alone and come first: ``host/path`` prefixes and ``host:port`` (auth files only; rattler never
asks for them, so neither do we of the keyring).

Every secret is registered with :data:`~.redact.SECRETS` the moment it is read, so it never
reaches any output; debug logs name the source of a credential, never its value.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from .errors import ConfigError
from .redact import SECRETS

log = logging.getLogger("pixi_pack_ci")

AUTH_FILE_ENV = "RATTLER_AUTH_FILE"
NETRC_ENV = "NETRC"
#: rattler's keyring service name (``KeyringAuthenticationStorage::default``).
KEYRING_SERVICE = "rattler"

CredentialKind = Literal["bearer", "basic", "conda-token", "s3"]


@dataclass(frozen=True)
class Credential:
    kind: CredentialKind
    token: str | None = None
    username: str | None = None
    password: str | None = None
    #: ``s3``: an ``S3Credentials`` entry.
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    #: Where it was found (``--auth-file x.json``, ``keyring``, ``netrc (~/.netrc)``), for logs.
    source: str = field(default="", compare=False)


class CredentialSource(Protocol):
    """One place credentials are kept; ``get`` answers for one key (host, wildcard, s3 prefix)."""

    name: str

    def get(self, key: str) -> Credential | None: ...


_FORMATS = (
    '{"BearerToken": "..."}, {"CondaToken": "..."}, {"BasicHTTP": {"username": "...", "password": "..."}}, '
    '{"S3Credentials": {"access_key_id": "...", "secret_access_key": "...", "session_token": null}}, '
    '{"OAuth": {"access_token": "...", ...}}'
)


def _strings(body: Any, *names: str) -> list[str] | None:
    if not isinstance(body, dict):
        return None
    values = [body.get(n) for n in names]
    return values if all(isinstance(v, str) for v in values) else None  # type: ignore[return-value]


def parse_credential(value: Any, source: str) -> Credential | None:
    """One entry in rattler's JSON form (serde's externally tagged ``Authentication``), or None."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    kind, body = next(iter(value.items()))
    cred: Credential | None = None
    if kind in ("BearerToken", "CondaToken") and isinstance(body, str):
        cred = Credential("bearer" if kind == "BearerToken" else "conda-token", token=body, source=source)
    elif kind == "BasicHTTP" and (pair := _strings(body, "username", "password")):
        cred = Credential("basic", username=pair[0], password=pair[1], source=source)
    elif kind == "S3Credentials" and (keys := _strings(body, "access_key_id", "secret_access_key")):
        session = body.get("session_token")
        if session is not None and not isinstance(session, str):
            return None
        cred = Credential("s3", access_key_id=keys[0], secret_access_key=keys[1], session_token=session, source=source)
    elif kind == "OAuth" and (access := _strings(body, "access_token")):
        # Used as the bearer token it is; rattler would also refresh an expired one.
        cred = Credential("bearer", token=access[0], source=source)
    if cred is not None:
        for secret in (cred.token, cred.password, cred.secret_access_key, cred.session_token, cred.access_key_id):
            SECRETS.add(secret)
    return cred


class FileSource:
    """A rattler credentials JSON file: ``{"host": {"BearerToken": "..."}, ...}``."""

    def __init__(self, path: Path, name: str, *, required: bool) -> None:
        self.name = name
        self.entries: dict[str, Credential] = {}
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if required:
                raise ConfigError(f"authentication file does not exist: {path}") from None
            return
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"could not read authentication file {path}: {exc}") from None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"authentication file {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"authentication file {path} must be a JSON object mapping hosts to credentials")
        for key, value in data.items():
            cred = parse_credential(value, name)
            if cred is None:
                raise ConfigError(f"auth file {path}: entry for {key!r} must be one of {_FORMATS}")
            self.entries[str(key).lower()] = cred

    def get(self, key: str) -> Credential | None:
        return self.entries.get(key)


class MemorySource:
    """Credentials given in code (plugins, tests)."""

    def __init__(self, entries: Mapping[str, Credential], name: str = "memory") -> None:
        self.name = name
        self.entries = {k.lower(): v for k, v in entries.items()}

    def get(self, key: str) -> Credential | None:
        return self.entries.get(key)


class KeyringSource:
    """The system keyring through Python's ``keyring``: service ``rattler``, user = the key, password =
    the credential's JSON, as rattler stores them (``pixi auth login``). Where keyring has no usable
    backend (a server without a Secret Service, ``PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring``)
    it is skipped, as rattler skips an unavailable keyring."""

    name = "keyring"

    def __init__(self) -> None:
        self._usable: bool | None = None

    def _keyring(self) -> Any:
        if self._usable is False:
            return None
        try:
            import keyring
            from keyring.backends import fail, null

            backend = keyring.get_keyring()
            # A chainer with no backends behind it, or the ones that hold nothing: nothing to ask.
            usable = not isinstance(backend, fail.Keyring | null.Keyring)
            if usable and hasattr(backend, "backends"):
                usable = bool(backend.backends)
        except Exception as exc:  # keyring's backends may fail in many ways; rattler carries on too
            log.debug("no system keyring: %s", exc)
            usable = False
        self._usable = usable
        return keyring if usable else None

    def get(self, key: str) -> Credential | None:
        if "/" in key and not key.startswith("s3://"):
            return None  # rattler asks the keyring for hosts, wildcards and s3:// prefixes only
        keyring = self._keyring()
        if keyring is None:
            return None
        try:
            stored = keyring.get_password(KEYRING_SERVICE, key)
        except Exception as exc:  # a locked or broken keyring: rattler logs and goes on
            log.debug("keyring lookup for %s failed: %s", key, type(exc).__name__)
            return None
        if not stored:
            return None
        try:
            cred = parse_credential(json.loads(stored), self.name)
        except json.JSONDecodeError:
            cred = None
        if cred is None:
            SECRETS.add(stored)  # not rattler's form, but a secret all the same
            log.warning("the keyring's %r entry for %s is not a rattler credential; ignoring it", KEYRING_SERVICE, key)
        return cred


def _default_netrc() -> Path:
    return Path.home() / ("_netrc" if sys.platform == "win32" else ".netrc")


class NetrcSource:
    """A netrc file (curl's ``$NETRC``, else the home folder's): ``machine`` entries, as BasicHTTP."""

    def __init__(self) -> None:
        import netrc

        explicit = os.environ.get(NETRC_ENV)
        path = Path(explicit) if explicit else _default_netrc()
        self.name = f"netrc ({path})"
        self.machines: dict[str, Credential] = {}
        if not explicit and not path.exists():
            return
        try:
            hosts = netrc.netrc(str(path)).hosts
        except (OSError, netrc.NetrcParseError) as exc:
            # rattler too warns and goes on without it
            log.warning("could not read netrc file %s (%s); ignoring it", path, getattr(exc, "msg", None) or exc)
            return
        for host, (login, _account, password) in hosts.items():
            if host == "default":
                continue  # rattler reads named machines only
            SECRETS.add(password)
            self.machines[host.lower()] = Credential(
                "basic", username=login or "", password=password or "", source=self.name
            )

    def get(self, key: str) -> Credential | None:
        return self.machines.get(key)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def lookup_keys(url: str) -> Iterator[str]:
    """The keys a URL's credentials may be stored under, most specific first (see the module)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return
    segments = [s for s in parts.path.split("/") if s]
    for i in range(len(segments), 0, -1):
        yield f"{host}/{'/'.join(segments[:i])}"
    if parts.port:
        yield f"{host}:{parts.port}"
    yield host
    if parts.scheme == "s3":
        for i in range(len(segments), 0, -1):
            yield f"s3://{host}/{'/'.join(segments[:i])}"
        yield f"s3://{host}"
    if not _is_ip(host):
        labels = host.split(".")
        yield from ("*." + ".".join(labels[i:]) for i in range(len(labels)))


class AuthStorage:
    """Credentials from several sources, looked up the way rattler looks them up (module docstring)."""

    def __init__(self, sources: Iterable[CredentialSource] = ()) -> None:
        self.sources = list(sources)
        self._cache: dict[str, Credential | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_entries(cls, entries: Mapping[str, Credential]) -> AuthStorage:
        return cls([MemorySource(entries)])

    def get(self, key: str) -> Credential | None:
        """The first source's credential for exactly ``key``; answers are remembered (a keyring
        lookup can be a D-Bus round trip)."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            found = next((c for s in self.sources if (c := s.get(key)) is not None), None)
            self._cache[key] = found
        if found is not None:
            log.debug("credentials for %s from %s", key, found.source)
        return found

    def lookup(self, url: str) -> Credential | None:
        return next((c for key in lookup_keys(url) if (c := self.get(key)) is not None), None)


def load_auth(path: Path | None) -> AuthStorage:
    """Every source of the module docstring, in rattler's order; ``path`` is ``--auth-file``."""
    sources: list[CredentialSource] = []
    if path is not None:
        sources.append(FileSource(path, f"--auth-file {path}", required=True))
    env = os.environ.get(AUTH_FILE_ENV)
    if env:
        if not Path(env).exists():  # rattler reads a missing file as an empty one
            log.warning("$%s names %s, which does not exist; going on without it", AUTH_FILE_ENV, env)
        sources.append(FileSource(Path(env), f"${AUTH_FILE_ENV} ({env})", required=False))
    sources.append(KeyringSource())
    home_file = Path.home() / ".rattler" / "credentials.json"
    sources.append(FileSource(home_file, str(home_file), required=False))
    sources.append(NetrcSource())
    return AuthStorage(sources)
