"""The data that flows through a pack and an unpack, and that hooks receive.

These are plain dataclasses so plugins can read and change them without importing py-rattler.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .redact import redact_url
from .sources import LockedSource

PackKind = Literal["tar", "directory", "executable"]


@dataclass
class CondaArtifact:
    """One conda package file that goes into ``channel/<subdir>/``."""

    name: str
    version: str
    build: str
    subdir: str
    file_name: str
    #: Where to get it: an http(s) URL, or a ``file://`` URL for local packages.
    url: str
    sha256: str | None
    md5: str | None
    size: int | None
    #: The repodata record, exactly as it will be written into ``repodata.json`` (from the lockfile,
    #: so repodata patches survive).
    record: dict[str, Any]
    #: Who put it in the plan: ``"lockfile"``, or the name of the plugin or flag that added it.
    origin: str = "lockfile"

    @property
    def cache_key(self) -> str:
        return f"{self.subdir}/{self.file_name}"

    @property
    def archive_path(self) -> str:
        return f"channel/{self.subdir}/{self.file_name}"

    def describe(self) -> str:
        return f"{self.name}={self.version}={self.build}"


@dataclass
class PypiArtifact:
    """One wheel that goes into ``pypi/``."""

    name: str
    version: str
    file_name: str
    url: str
    sha256: str | None
    size: int | None = None
    origin: str = "lockfile"
    #: For a wheel built at pack time: the source it was built from (``location``, ``digest``),
    #: which provenance records beside the wheel.
    built_from: dict[str, Any] | None = None

    @property
    def cache_key(self) -> str:
        return f"pypi/{self.file_name}"

    @property
    def archive_path(self) -> str:
        return f"pypi/{self.file_name}"

    @property
    def md5(self) -> str | None:
        return None

    def describe(self) -> str:
        return f"{self.name}=={self.version}"


Artifact = CondaArtifact | PypiArtifact


@dataclass
class PypiSource:
    """A locked PyPI entry that is not a wheel: a folder (the project itself as ``pypi: .``, a
    sub-package), an sdist or a ``git+`` URL. Packs hold wheels only, so before anything is
    downloaded a plugin or ``--inject`` must replace it with a wheel of the same (normalized)
    name; what is left stops the plan, or is left out with ``--ignore-pypi-non-wheel``."""

    name: str
    #: ``None`` where the lockfile gives none (v7 writes no version for folders).
    version: str | None
    #: As written in the lockfile (``.``, ``./lib``, an sdist URL, ``git+https://…``).
    location: str
    sha256: str | None = None
    #: What the location pins, read from the lockfile alone (see :mod:`.sources`).
    source: LockedSource | None = None

    def describe(self) -> str:
        return f"{self.name} ({self.location})"


@dataclass
class PackPlan:
    """Everything one pack will contain, decided before anything is downloaded.

    Plugins receive it in ``pixi_pack_ci_modify_plan`` and may add, remove or replace artifacts.
    """

    environment: str
    #: The conda subdir the pack is for (``linux-64``): what ``pixi-pack.json`` records.
    platform: str
    lockfile: Path
    conda: list[CondaArtifact] = field(default_factory=list)
    pypi: list[PypiArtifact] = field(default_factory=list)
    #: Locked PyPI entries that are not wheels, still waiting for a wheel (see :class:`PypiSource`).
    pypi_sources: list[PypiSource] = field(default_factory=list)
    #: The lockfile's name of the platform (v7 lockfiles may name one ``linux-64-cuda`` on subdir
    #: ``linux-64``); the subdir itself when the lockfile gives no other name.
    platform_name: str = ""
    #: Where the pack goes; ``None`` means standard output (tar or executable).
    output: Path | None = None
    kind: PackKind = "tar"
    #: Messages for the user collected while planning (skipped entries, replacements, …).
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.platform_name = self.platform_name or self.platform

    @property
    def artifacts(self) -> list[Artifact]:
        return [*self.conda, *self.pypi]

    @property
    def download_size(self) -> int:
        return sum(a.size or 0 for a in self.artifacts)

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "platform": self.platform,
            "platform_name": self.platform_name,
            "output": str(self.output) if self.output else "-",
            "kind": self.kind,
            "size": self.download_size,
            "packages": [artifact_summary(a) for a in self.artifacts],
            # Non-wheel PyPI entries still to be built into wheels (named by --dry-run).
            "to_build": [
                {"name": s.name, "version": s.version, "source": s.source.describe() if s.source else s.location}
                for s in self.pypi_sources
            ],
            "notes": list(self.notes),
        }


def artifact_summary(artifact: Artifact) -> dict[str, Any]:
    """A credential-free description of one artifact, for output, logs and provenance."""
    summary: dict[str, Any] = {
        "kind": "conda" if isinstance(artifact, CondaArtifact) else "pypi",
        "name": artifact.name,
        "version": artifact.version,
        "file_name": artifact.file_name,
        "url": redact_url(artifact.url),
        "sha256": artifact.sha256,
        "size": artifact.size,
        "origin": artifact.origin,
    }
    if isinstance(artifact, CondaArtifact):
        summary["build"] = artifact.build
        summary["subdir"] = artifact.subdir
    elif artifact.built_from is not None:
        summary["built_from"] = artifact.built_from
    return summary


@dataclass(frozen=True)
class PackResult:
    """A finished pack, as passed to ``pixi_pack_ci_packs_written``."""

    environment: str
    platform: str
    kind: PackKind
    #: The file or folder written; ``None`` when the pack went to standard output.
    path: Path | None
    #: sha256 of the written bytes (``None`` for a folder).
    sha256: str | None
    size: int
    packages: tuple[dict[str, Any], ...]
    lockfile: Path
    #: The lockfile's name of the platform (equal to ``platform`` unless a v7 lockfile names it).
    platform_name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "platform": self.platform,
            "platform_name": self.platform_name or self.platform,
            "kind": self.kind,
            "path": str(self.path) if self.path else "-",
            "sha256": self.sha256,
            "size": self.size,
            "package_count": len(self.packages),
            "packages": list(self.packages),
        }


@dataclass(frozen=True)
class UnpackResult:
    """A finished unpack, as passed to ``pixi_pack_ci_unpacked``."""

    prefix: Path
    activation_script: Path
    platform: str
    packages: tuple[str, ...]
    shell: str

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": str(self.prefix),
            "activation_script": str(self.activation_script),
            "platform": self.platform,
            "shell": self.shell,
            "package_count": len(self.packages),
            "packages": list(self.packages),
        }


@dataclass
class PackOptions:
    """What the user asked for; ``args`` keeps every parsed flag, plugin flags included."""

    manifest_path: Path
    environments: list[str]
    platforms: list[str]
    output: str | None = None
    output_dir: Path | None = None
    cache_dir: Path | None = None
    config_path: Path | None = None
    auth_file: Path | None = None
    directory_only: bool = False
    ignore_pypi_non_wheel: bool = False
    #: Refuse, rather than build, PyPI entries that are not wheels.
    no_build: bool = False
    create_executable: bool = False
    #: Path or URL of the unpacker to embed in executables; "none" embeds none; None means pixi-pack's release.
    pixi_unpack_source: str | None = None
    #: Local .conda, .tar.bz2 and .whl files added to every pack.
    inject: list[Path] = field(default_factory=list)
    dry_run: bool = False
    quiet: bool = False
    args: argparse.Namespace = field(default_factory=argparse.Namespace)
    #: Machine-readable results plugins add in ``pixi_pack_ci_packs_written`` (e.g. ``"attestation"``);
    #: ``pack --json`` prints each key beside ``"packs"``, and later plugins can read earlier ones' entries.
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class UnpackOptions:
    """What the user asked ``unpack`` for; ``args`` keeps every parsed flag, plugin flags included."""

    pack: str
    output_directory: Path = Path(".")
    env_name: str = "env"
    shell: str = "bash"
    force: bool = False
    quiet: bool = False
    args: argparse.Namespace = field(default_factory=argparse.Namespace)


#: ``attach(artifact_type, data, annotations)`` → the references of the referrers pushed.
Attach = Callable[[str, bytes, dict[str, str]], list[str]]


@dataclass(frozen=True)
class ImageResult:
    """One image (or image index, for several platforms) as written and pushed."""

    #: ``sha256:…`` of the manifest (one platform) or the index: what is pushed, printed and signed.
    digest: str
    media_type: str
    platforms: tuple[str, ...]
    #: ``REGISTRY/REPO`` of every push (no tag), in the order of ``--push``.
    names: tuple[str, ...]
    #: Layout folders and archives written.
    outputs: tuple[Path, ...]
    #: The packages in it (as ``PackResult.packages``: name, version, URL, sha256).
    packages: tuple[dict[str, Any], ...]
    #: The lockfile it was built from; None for ``--from-pack``.
    lockfile: Path | None
    #: ``gzip:6``, ``zstd:3`` or ``none``.
    compression: str
    #: The compressor and its version (``zlib 1.3.1``; empty for none): gzip bytes depend on the zlib build.
    compressor: str = ""
    attach: Attach | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "media_type": self.media_type,
            "platforms": list(self.platforms),
            "names": list(self.names),
            "outputs": [str(p) for p in self.outputs],
            "compression": self.compression,
            "compressor": self.compressor,
        }


@dataclass
class ImageLayer:
    """One environment layer of an image, as ``pixi_pack_ci_image_layers`` sees it: the paths in
    it (relative to the prefix), what it holds (the config's history says it) and the time of its
    folders, links and newest files (seconds). Plugins may merge, split or reorder layers; every
    path must stay in exactly one."""

    paths: list[str]
    comment: str
    time: int


@dataclass
class ImageOptions:
    """What ``image`` was asked (``args`` keeps every flag, plugin flags included) and where plugins
    put their results for ``--json`` (``report``)."""

    args: argparse.Namespace
    quiet: bool = False
    report: dict[str, Any] = field(default_factory=dict)


def human_size(n: int) -> str:
    """``1.5 MiB``: sizes as the CLI, job summaries and logs print them."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
