"""Removing credentials from URLs before they reach any output, log or file we write."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

# A conda token lives in the path as /t/<token>/ (anaconda.org, quetz, prefix.dev style).
_CONDA_TOKEN = re.compile(r"/t/[^/]+(?=/|$)")
_SECRET_QUERY_KEYS = (
    "token",
    "access_token",
    "auth",
    "key",
    "signature",
    "sig",
    "password",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
)


def redact_url(url: str) -> str:
    """Return ``url`` with user-info, conda tokens and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    path = _CONDA_TOKEN.sub("/t/***", parts.path)
    query = parts.query
    if query:
        kept = []
        for pair in query.split("&"):
            key = pair.split("=", 1)[0]
            if key.lower() in _SECRET_QUERY_KEYS:
                kept.append(f"{key}=***")
            else:
                kept.append(pair)
        query = "&".join(kept)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


class SecretRegistry:
    """Secrets known to this run (auth-file values, tokens), scrubbed from any text we print."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._listeners: list[Callable[[str], None]] = []

    def add(self, secret: str | None) -> None:
        # Very short values would scrub innocent text; real credentials are longer.
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.add(secret)
            for listener in self._listeners:
                listener(secret)

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call ``listener`` with every secret known now and every one added later (CI log masking)."""
        self._listeners.append(listener)
        for secret in sorted(self._secrets):
            listener(secret)

    def add_from_url(self, url: str) -> None:
        """Register the password and conda token a URL carries, if any."""
        try:
            parts = urlsplit(url)
            self.add(unquote(parts.password) if parts.password else None)
        except ValueError:
            return
        token = _CONDA_TOKEN.search(parts.path)
        if token:
            self.add(token.group(0)[3:])

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


#: Process-wide registry: the CLI and every logger route text through it.
SECRETS = SecretRegistry()


def scrub(text: str) -> str:
    """Redact every URL-embedded credential and every registered secret in free text."""
    text = re.sub(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+", lambda m: redact_url(m.group(0)), text)
    return SECRETS.scrub(text)
