"""Reading the pixi-style config TOML (``-c``) and rattler's credentials file (``--auth-file``)."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .redact import SECRETS

DEFAULT_CONCURRENCY = 50
AUTH_FILE_ENV = "RATTLER_AUTH_FILE"


@dataclass(frozen=True)
class PackConfig:
    """The keys of a pixi/rattler config file that change how we pack; others are ignored, as pixi-pack does."""

    mirrors: dict[str, list[str]] = field(default_factory=dict)
    #: ``[concurrency] downloads`` when the config file sets it, else None.
    downloads: int | None = None

    @property
    def concurrency(self) -> int:
        """Parallel downloads: the config's number, else 2 per CPU (4 to 50).

        pixi's default of 50 suits async Rust; Python threads past a few per core spend more on
        the GIL than they overlap. bench/run.py, 1 GiB in 300 files from nginx on 2 CPUs: 4
        threads 2.8 s, 8 3.6 s, 16 3.6 s, 50 4.3 s (user + system time grows the same way).
        A config that names a number gets exactly that (a far server may want more)."""
        if self.downloads is not None:
            return self.downloads
        return max(4, min(DEFAULT_CONCURRENCY, 2 * (os.cpu_count() or 1)))


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def load_config(path: Path | None) -> PackConfig:
    if path is None:
        return PackConfig()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file does not exist: {path}") from None
    except OSError as exc:
        raise ConfigError(f"could not read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None

    mirrors: dict[str, list[str]] = {}
    raw_mirrors: Any = data.get("mirrors", {})
    if not isinstance(raw_mirrors, dict):
        raise ConfigError(f"config file {path}: [mirrors] must be a table of URL = [mirror URLs]")
    for source, targets in raw_mirrors.items():
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise ConfigError(f"config file {path}: mirrors for {source!r} must be a non-empty list of URLs")
        for url in (source, *targets):
            # Any scheme a fetcher may know (s3://, oci://, a plugin's own): the core rotates
            # mirrors for every fetcher, and one that knows no fetcher fails at its download.
            parts = urlsplit(url)
            if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
                raise ConfigError(f"config file {path}: {url!r} in [mirrors] is not a URL")
        mirrors[_with_slash(source)] = [_with_slash(t) for t in targets]

    concurrency: int | None = None
    raw_concurrency: Any = data.get("concurrency", {})
    if not isinstance(raw_concurrency, dict):
        raise ConfigError(f"config file {path}: [concurrency] must be a table")
    if "downloads" in raw_concurrency:
        value = raw_concurrency["downloads"]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000:
            raise ConfigError(f"config file {path}: [concurrency] downloads must be a whole number from 1 to 1000")
        concurrency = value
    return PackConfig(mirrors=mirrors, downloads=concurrency)


@dataclass(frozen=True)
class Credential:
    kind: str  # "bearer" | "basic" | "conda-token"
    token: str | None = None
    username: str | None = None
    password: str | None = None


class AuthStorage:
    """Credentials keyed the way rattler keys them: ``host``, ``host/path/prefix`` or ``*.domain``."""

    def __init__(self, entries: dict[str, Credential] | None = None) -> None:
        self.entries = dict(entries or {})

    def lookup(self, url: str) -> Credential | None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            return None
        segments = [s for s in parts.path.split("/") if s]
        candidates = [f"{host}/{'/'.join(segments[:i])}" for i in range(len(segments), 0, -1)]
        if parts.port:
            candidates.append(f"{host}:{parts.port}")
        candidates.append(host)
        labels = host.split(".")
        candidates += ["*." + ".".join(labels[i:]) for i in range(1, len(labels))]
        for key in candidates:
            if key in self.entries:
                return self.entries[key]
        return None


def _parse_credential(path: Path, key: str, value: Any) -> Credential:
    if isinstance(value, dict) and len(value) == 1:
        kind, body = next(iter(value.items()))
        if kind == "BearerToken" and isinstance(body, str):
            SECRETS.add(body)
            return Credential("bearer", token=body)
        if kind == "CondaToken" and isinstance(body, str):
            SECRETS.add(body)
            return Credential("conda-token", token=body)
        if kind == "BasicHTTP" and isinstance(body, dict):
            user, password = body.get("username"), body.get("password")
            if isinstance(user, str) and isinstance(password, str):
                SECRETS.add(password)
                return Credential("basic", username=user, password=password)
    raise ConfigError(
        f"auth file {path}: entry for {key!r} must be one of "
        '{"BearerToken": "..."}, {"CondaToken": "..."}, {"BasicHTTP": {"username": "...", "password": "..."}}'
    )


def load_auth(path: Path | None) -> AuthStorage:
    """Load ``--auth-file``, or ``$RATTLER_AUTH_FILE`` when no flag is given."""
    if path is None:
        env = os.environ.get(AUTH_FILE_ENV)
        if not env:
            return AuthStorage()
        path = Path(env)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"authentication file does not exist: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"could not read authentication file {path}: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"authentication file {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"authentication file {path} must be a JSON object mapping hosts to credentials")
    entries = {str(k).lower(): _parse_credential(path, k, v) for k, v in data.items()}
    return AuthStorage(entries)
