"""The environment an image holds: its packages from a lockfile (through the pack pipeline and
its cache) or from a pack, installed at the image's prefix with the core's install API, then made
free of anything of this machine (staging paths in ``conda-meta``), and what activating it sets."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import rattler

from ..builds import build_pypi_sources
from ..cache import CacheMode, PackageCache
from ..config import load_config
from ..credentials import load_auth
from ..extract import load_records, pack_wheels, read_metadata, read_pack
from ..fetch import FetchRun, fetch_artifacts
from ..fetch_context import FetchContext
from ..model import PackOptions, PackPlan, artifact_summary
from ..planning import plan_packs
from ..plugin_manager import PluginManager
from ..records import records_from_dicts
from ..redact import redact_url
from .errors import ImageError

log = logging.getLogger("pixi_pack_ci")


@dataclass
class EnvironmentSource:
    """One environment for one platform, ready to install: verified local package files."""

    environment: str
    platform: str
    records: list[rattler.RepoDataRecord]
    wheels: list[Path]
    #: package file name → the URL ``conda-meta`` should name (the lockfile's, credentials removed;
    #: from a pack, its place in the pack).
    urls: dict[str, str] = field(default_factory=dict)
    #: Every package, credential-free (name, version, URL, sha256), for provenance.
    packages: list[dict[str, Any]] = field(default_factory=list)
    lockfile: Path | None = None
    #: wheel file name → its sha256, where the fetch checked the file against it.
    wheel_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def record_dicts(self) -> list[dict[str, Any]]:
        return [json.loads(r.to_json()) for r in self.records]

    @property
    def newest_timestamp(self) -> int:
        """The newest package build time (seconds), the image's time without ``SOURCE_DATE_EPOCH``."""
        stamps = [int(d.get("timestamp") or 0) for d in self.record_dicts]
        newest = max(stamps, default=0)
        return newest // 1000 if newest > 10**11 else newest  # repodata has milliseconds


@contextmanager
def from_lockfile(
    options: PackOptions, plugins: PluginManager, work: Path, check: Callable[[PackPlan], object]
) -> Iterator[list[EnvironmentSource]]:
    """Plan (with the plan hooks), ``check`` each plan, build PyPI sources and fetch, as ``pack``
    does, into the ``--use-cache`` folder or one of this run; yields one source per platform."""
    plans = plan_packs(options, plugins)
    for plan in plans:
        check(plan)
    context = FetchContext(config=load_config(options.config_path), auth=load_auth(options.auth_file))
    try:
        if options.cache_dir is not None:
            cache, mode = PackageCache(options.cache_dir), CacheMode.KEEP
        else:
            cache, mode = PackageCache(work / "downloads", persistent=False), CacheMode.STAGING
        run = FetchRun(context, cache, plugins, cache_mode=mode, verify_cache_hits=True)
        builds = build_pypi_sources(plans, run, quiet=options.quiet)
        if builds:
            options.report["builds"] = builds
        files = fetch_artifacts([a for p in plans for a in p.artifacts], run)
        yield [_plan_source(plan, files) for plan in plans]
    finally:
        context.close()


def _plan_source(plan: PackPlan, files: dict[str, Path]) -> EnvironmentSource:
    records = records_from_dicts((a.file_name, a.record) for a in plan.conda)
    by_name = {a.file_name: a for a in plan.conda}
    for record in records:
        # absolute(): a relative --use-cache has no file URI.
        record.url = files[by_name[record.file_name].cache_key].absolute().as_uri()
    wheels = [files[w.cache_key] for w in plan.pypi]
    urls = {a.file_name: public_url(a.url) for a in plan.conda}
    packages = [artifact_summary(a) for a in plan.artifacts]
    checked = {files[w.cache_key].name: w.sha256.lower() for w in plan.pypi if w.sha256}
    return EnvironmentSource(plan.environment, plan.platform, records, wheels, urls, packages, plan.lockfile, checked)


def from_pack(pack: str, work: Path) -> EnvironmentSource:
    """A pack file or folder, read with unpack's checks (every package against its hash)."""
    extracted = read_pack(pack, work / "pack")
    metadata = read_metadata(extracted.root)
    records = load_records(extracted.root, extracted.digests)
    urls = {r.file_name: f"channel/{r.subdir}/{r.file_name}" for r in records}
    packages = [
        {
            "kind": "conda",
            "name": r.name.normalized,
            "version": str(r.version),
            "build": r.build,
            "file_name": r.file_name,
            "url": urls[r.file_name],
            "sha256": r.sha256.hex() if r.sha256 else None,
        }
        for r in records
    ]
    return EnvironmentSource("", metadata.platform, records, pack_wheels(extracted.root), urls, packages)


def install(source: EnvironmentSource, work: Path, prefix: PurePosixPath) -> Path:
    """Install for ``prefix`` into a folder of ``work``; nothing of the target is run."""
    from ..install import install_environment  # here: an image whose layers are all cached installs nothing

    root = install_environment(source.records, source.wheels, work, Path(prefix), source.platform, quiet=True)
    normalize_conda_meta(root, source.urls)
    return root


#: What :func:`redact_url` leaves of a conda token in a path.
_REDACTED_TOKEN = re.compile(r"/t/\*\*\*(?=/|$)")


def public_url(url: str) -> str:
    """``url`` as conda writes it into ``conda-meta``: without user-info or a ``/t/<token>``
    segment, so the record names the channel anyone would name, not ``***@`` (no URL); what else
    looks secret (query values) stays redacted."""
    parts = urlsplit(redact_url(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = _REDACTED_TOKEN.sub("", parts.path)
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


#: Keys of rattler's prefix records that name this machine's staging folders.
_HOST_KEYS = ("extracted_package_dir", "package_tarball_full_path")


def normalize_conda_meta(root: Path, urls: dict[str, str]) -> None:
    """Rewrite ``conda-meta/*.json`` without this machine's paths: rattler records where it
    extracted and linked from (the staging cache), and the local file it installed."""
    for meta in sorted((root / "conda-meta").glob("*.json")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for key in _HOST_KEYS:
            data.pop(key, None)
        link = data.get("link")
        if isinstance(link, dict):
            link.pop("source", None)
        file_name = str(data.get("fn") or "")
        if file_name in urls:
            data["url"] = urls[file_name]
            # The channel the URL is in (records read back from plans name a placeholder one).
            data["channel"] = urls[file_name].rsplit("/", 2)[0] if urls[file_name].count("/") >= 2 else ""
        meta.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


#: Where the entrypoint of ``--activation script`` goes, inside the prefix.
ENTRYPOINT = "etc/pixi-pack-ci/entrypoint.sh"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def has_activate_scripts(root: Path) -> bool:
    folder = root / "etc" / "conda" / "activate.d"
    return folder.is_dir() and any(p.suffix == ".sh" for p in folder.iterdir())


@dataclass(frozen=True)
class Activation:
    """What the installed environment says about activating it: all the image's config needs of
    the installed files, so an image whose layers all come from the layer cache needs no install."""

    #: The packages' variables (:func:`package_env_vars`).
    env_vars: dict[str, str]
    #: It has ``etc/conda/activate.d/*.sh`` scripts.
    scripts: bool
    #: It has ``bin/bash`` (the entrypoint's shell).
    bash: bool

    @classmethod
    def of(cls, root: Path) -> Activation:
        return cls(package_env_vars(root), has_activate_scripts(root), (root / "bin" / "bash").exists())

    def to_json(self) -> dict[str, Any]:
        return {"env_vars": self.env_vars, "scripts": self.scripts, "bash": self.bash}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Activation:
        env_vars = data["env_vars"]
        if not isinstance(env_vars, dict):
            raise ValueError("env_vars is not a mapping")
        return cls({str(k): str(v) for k, v in env_vars.items()}, bool(data["scripts"]), bool(data["bash"]))


def package_env_vars(root: Path) -> dict[str, str]:
    """Variables the packages set on activation: ``etc/conda/env_vars.d/*.json`` in name order,
    then ``conda-meta/state``'s ``env_vars`` (conda's and rattler's order)."""
    out: dict[str, str] = {}
    for path in sorted((root / "etc" / "conda" / "env_vars.d").glob("*.json")):
        out.update(_string_map(path))
    state = root / "conda-meta" / "state"
    if state.is_file():
        out.update(_string_map(state, "env_vars"))
    return out


def _string_map(path: Path, key: str | None = None) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read {path.name} of the environment: {exc}") from None
    if key is not None:
        data = data.get(key) if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def activation_env(package_vars: dict[str, str], prefix: PurePosixPath, name: str, base_env: list[str]) -> list[str]:
    """The image config's ``Env``: the base's, with what activation sets: ``PATH`` first,
    ``CONDA_PREFIX``, ``CONDA_DEFAULT_ENV`` and the packages' variables (``package_vars``)."""
    env = dict(item.split("=", 1) for item in base_env if "=" in item)
    env["PATH"] = f"{prefix}/bin:{env.get('PATH', DEFAULT_PATH)}"
    env["CONDA_PREFIX"] = str(prefix)
    env["CONDA_DEFAULT_ENV"] = name
    env.update(package_vars)
    return [f"{k}={v}" for k, v in env.items()]


def write_entrypoint(root: Path, prefix: PurePosixPath) -> PurePosixPath:
    """``<prefix>/etc/pixi-pack-ci/entrypoint.sh``: what ``pixi shell-hook`` in an entrypoint does
    (the environment's variables, its ``activate.d`` scripts sourced in name order), then ``exec
    "$@"``. POSIX sh, run by the environment's bash if it has one, else the base's /bin/sh. The
    activation is written here rather than by rattler: rattler lists the activate.d scripts of the
    prefix on this machine, where the image's prefix does not exist."""
    shell = f"{prefix}/bin/bash" if (root / "bin" / "bash").exists() else "/bin/sh"
    quoted = shlex.quote(str(prefix))
    text = f"""#!{shell}
# Written by pixi-pack-ci image: activate the environment, then run the command.
CONDA_PREFIX={quoted}
export CONDA_PREFIX
# The config's Env has the prefix first on PATH already; add it only when someone cleared it.
case ":$PATH:" in
  *":$CONDA_PREFIX/bin:"*) ;;
  *) PATH="$CONDA_PREFIX/bin${{PATH:+:$PATH}}"; export PATH ;;
esac
for script in "$CONDA_PREFIX"/etc/conda/activate.d/*.sh; do
  if [ -f "$script" ]; then . "$script"; fi
done
unset script
exec "$@"
"""
    path = root / ENTRYPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o755)
    return prefix / ENTRYPOINT
