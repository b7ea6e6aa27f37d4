"""Reading the pixi-style config TOML (``-c``); credentials are :mod:`.credentials`."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_CONCURRENCY = 50


@dataclass(frozen=True)
class S3Options:
    """One ``[s3-options.<bucket>]`` table: where a bucket that is not on AWS lives."""

    endpoint_url: str
    region: str
    #: ``force-path-style = true`` (pixi, pixi-pack 0.7.10) or ``addressing-style = "path"`` (newer
    #: rattler): ``endpoint/bucket/key`` instead of ``bucket.endpoint/key``.
    force_path_style: bool


@dataclass(frozen=True)
class PackConfig:
    """The keys of a pixi/rattler config file that change how we pack; others are ignored, as pixi-pack does."""

    mirrors: dict[str, list[str]] = field(default_factory=dict)
    #: ``[concurrency] downloads`` when the config file sets it, else None.
    downloads: int | None = None
    #: ``[s3-options.<bucket>]``: the buckets not on AWS itself.
    s3_options: dict[str, S3Options] = field(default_factory=dict)

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
    return PackConfig(mirrors=mirrors, downloads=concurrency, s3_options=_s3_options(path, data))


def _s3_options(path: Path, data: dict[str, Any]) -> dict[str, S3Options]:
    """``[s3-options.<bucket>]`` as rattler_config reads it: ``endpoint-url`` and ``region`` required; path
    style from pixi-pack 0.7.10's ``force-path-style`` or newer rattler's ``addressing-style`` (default:
    virtual-host, as newer rattler)."""
    raw: Any = data.get("s3-options", {})
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"config file {path}: [s3-options] must hold one [s3-options.<bucket>] table per bucket")
    options: dict[str, S3Options] = {}
    for bucket, table in raw.items():
        where = f"config file {path}: [s3-options.{bucket}]"
        endpoint, region = table.get("endpoint-url"), table.get("region")
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{where} needs endpoint-url, an http(s) URL")
        if not isinstance(region, str) or not region:
            raise ConfigError(f"{where} needs region, a string")
        style, force = table.get("addressing-style"), table.get("force-path-style")
        if style is not None and style not in ("path", "virtual-host"):
            raise ConfigError(f'{where}: addressing-style must be "path" or "virtual-host"')
        if force is not None and not isinstance(force, bool):
            raise ConfigError(f"{where}: force-path-style must be true or false")
        if force is not None and style is not None and force != (style == "path"):
            raise ConfigError(f"{where}: force-path-style and addressing-style disagree")
        options[bucket] = S3Options(endpoint, region, bool(force) or style == "path")
    return options
