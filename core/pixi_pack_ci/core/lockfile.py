"""From a manifest path to :class:`PackPlan` objects, through py-rattler's lockfile parser."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import rattler

from .errors import (
    EnvironmentNotFoundError,
    LockfileError,
    ManifestNotFoundError,
    PlatformNotFoundError,
)
from .model import CondaArtifact, PackPlan, PypiArtifact, PypiSource
from .records import repodata_entry
from .redact import SECRETS
from .sources import locked_source

LOCKFILE_NAME = "pixi.lock"


@dataclass
class LoadedLockfile:
    path: Path
    lock: rattler.LockFile

    @property
    def directory(self) -> Path:
        return self.path.parent

    def environment_names(self) -> list[str]:
        return sorted(name for name, _ in self.lock.environments())


def find_lockfile(manifest_path: Path) -> Path:
    """``pixi.lock`` beside a ``pixi.toml``/``pyproject.toml``, or inside a project folder."""
    if not manifest_path.exists():
        raise ManifestNotFoundError(f"manifest path does not exist: {manifest_path}")
    directory = manifest_path if manifest_path.is_dir() else manifest_path.parent
    lock = directory / LOCKFILE_NAME
    if not lock.is_file():
        raise LockfileError(f"no {LOCKFILE_NAME} in {directory}; run `pixi lock` there first", file=str(lock))
    return lock


def load_lockfile(manifest_path: Path) -> LoadedLockfile:
    path = find_lockfile(manifest_path).resolve()
    try:
        lock = rattler.LockFile.from_path(path)
    except Exception as exc:  # py-rattler raises its own exception types with multi-line text
        detail = " ".join(str(exc).split())
        at = re.search(r"\bat line (\d+)", detail)
        raise LockfileError(
            f"could not read lockfile {path}: {detail}", file=str(path), line=int(at.group(1)) if at else None
        ) from None
    return LoadedLockfile(path, lock)


def line_of(path: Path, pattern: str) -> int | None:
    """The 1-based line of ``path`` where ``pattern`` (a regex) first matches, for CI annotations."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(pattern, text, flags=re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _location_to_url(location: str, lock_dir: Path) -> str:
    """Lockfile locations are URLs, absolute paths, or paths relative to the lockfile."""
    scheme = urlsplit(location).scheme
    if scheme in ("http", "https", "file", "s3", "gcs", "oci"):
        return location
    if location.startswith("direct+"):
        return location[len("direct+") :]
    path = Path(unquote(location))
    if not path.is_absolute():
        path = (lock_dir / path).resolve()
    return path.as_uri()


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value else None


def _conda_artifact(pkg: rattler.CondaLockedBinaryPackage, lock_dir: Path) -> CondaArtifact:
    # package_record, not repo_data_record(): the latter fails on paths relative to the lockfile.
    record = pkg.package_record
    if record is None:
        raise LockfileError(f"package {pkg.name!r} has no record in the lockfile")
    data = repodata_entry(record)
    url = _location_to_url(pkg.location, lock_dir)
    file_name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not file_name.endswith((".conda", ".tar.bz2")):
        raise LockfileError(f"package {pkg.name!r}: {file_name!r} is not a .conda or .tar.bz2 archive")
    return CondaArtifact(
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        subdir=record.subdir,
        file_name=file_name,
        url=url,
        sha256=_hex(record.sha256),
        md5=_hex(record.md5),
        size=record.size,
        record=data,
    )


def _pypi_artifact(pkg: rattler.PypiLockedPackage, lock_dir: Path) -> PypiArtifact:
    url = _location_to_url(pkg.location, lock_dir)
    file_name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return PypiArtifact(name=pkg.name, version=pkg.version, file_name=file_name, url=url, sha256=_pypi_sha256(pkg))


def _pypi_sha256(pkg: rattler.PypiLockedPackage) -> str | None:
    # py-rattler wraps a missing hash in a PackageHashes whose properties raise AttributeError.
    try:
        hashes = pkg.hashes
        return _hex(hashes.sha256) if hashes is not None else None
    except AttributeError:
        return None


def _platform_choices(loaded: LoadedLockfile, env: rattler.Environment) -> dict[str, str] | None:
    """The platforms an environment can be packed for: lockfile name → conda subdir.

    An environment with no packages at all has no platforms of its own: it is empty on every
    platform the lockfile declares (v7), or on any platform when the lockfile declares none
    (``None``; older versions keep platforms per environment only).
    """
    platforms = env.platforms() or loaded.lock.platforms()
    if not platforms:
        return None
    return {p.name: str(p.subdir) for p in platforms}


def resolve_platform(choices: dict[str, str] | None, requested: str, where: str) -> tuple[str, str]:
    """``(name, subdir)`` for ``-p requested``: a lockfile platform name, or a subdir that exactly
    one of the names is for (``-p linux-64`` picks ``p1`` when ``p1`` is the only linux-64 one)."""
    if choices is None:
        try:
            return requested, str(rattler.Subdir(requested))
        except Exception:
            raise PlatformNotFoundError(f"unknown platform {requested!r} ({where})") from None
    if requested in choices:
        return requested, choices[requested]
    named = sorted(name for name, subdir in choices.items() if subdir == requested)
    if len(named) == 1:
        return named[0], requested
    listed = ", ".join(name if subdir == name else f"{name} ({subdir})" for name, subdir in sorted(choices.items()))
    if named:
        raise PlatformNotFoundError(
            f"platform {requested!r} is ambiguous for {where}: it is the subdir of {', '.join(named)}; "
            "pass one of those names with -p"
        )
    raise PlatformNotFoundError(f"platform {requested!r} not found for {where}; it has: {listed or 'none'}")


def build_plan(loaded: LoadedLockfile, environment: str, platform: str) -> PackPlan:
    """The plan for one environment and platform (a lockfile platform name or a subdir), straight
    from the lockfile. PyPI entries that are not wheels are kept in ``plan.pypi_sources`` for
    plugins and ``--inject`` to replace; :func:`settle_pypi_sources` decides about the rest."""
    env = loaded.lock.environment(environment)
    if env is None:
        names = ", ".join(loaded.environment_names()) or "none"
        raise EnvironmentNotFoundError(
            f"environment {environment!r} not found in {loaded.path.name}; it has: {names}",
            file=str(loaded.path),
            line=line_of(loaded.path, r"^environments:"),
        )
    try:
        name, subdir = resolve_platform(
            _platform_choices(loaded, env), platform, f"environment {environment!r} in {loaded.path.name}"
        )
    except PlatformNotFoundError as exc:
        exc.file, exc.line = str(loaded.path), line_of(loaded.path, rf"^  {re.escape(environment)}:\s*$")
        raise
    plan = PackPlan(environment=environment, platform=subdir, platform_name=name, lockfile=loaded.path)
    lock_platform = next((p for p in env.platforms() if p.name == name), None)
    packages = env.packages(lock_platform) if lock_platform is not None else None
    for pkg in packages or []:
        _add_package(plan, pkg, loaded)
    return plan


def _add_package(plan: PackPlan, pkg: rattler.LockedPackage, loaded: LoadedLockfile) -> None:
    if isinstance(pkg, rattler.CondaLockedSourcePackage):
        raise LockfileError(
            f"package {pkg.name!r} is a source package ({pkg.location}); pixi-pack-ci packs built "
            "packages only: build it (pixi publish, rattler-build) and add the result with --inject",
            file=str(loaded.path),
            line=line_of(loaded.path, re.escape(str(pkg.location))),
        )
    if isinstance(pkg, rattler.CondaLockedBinaryPackage):
        plan.conda.append(_conda_artifact(pkg, loaded.directory))
        SECRETS.add_from_url(plan.conda[-1].url)
    elif isinstance(pkg, rattler.PypiLockedPackage):
        wheel = _pypi_artifact(pkg, loaded.directory)
        SECRETS.add_from_url(wheel.url)
        if wheel.file_name.endswith(".whl"):
            plan.pypi.append(wheel)
        else:
            # py-rattler reports a missing version (v7 folders) as "<dynamic>".
            version = None if pkg.version.startswith("<") else pkg.version
            location = str(pkg.location)
            source = locked_source(location, loaded.directory, lockfile=loaded.path)
            plan.pypi_sources.append(PypiSource(pkg.name, version, location, _pypi_sha256(pkg), source))
    else:
        raise LockfileError(f"package {pkg.name!r} has an entry kind pixi-pack-ci does not know", file=str(loaded.path))


def settle_pypi_sources(plan: PackPlan, *, ignore: bool) -> None:
    """After the plan hooks, when nothing may be built (``--no-build``, ``--ignore-pypi-non-wheel``):
    a non-wheel PyPI entry nothing replaced stops the plan, or with ``ignore`` is left out and
    named in ``plan.notes``."""
    for source in plan.pypi_sources:
        if not ignore:
            raise LockfileError(
                f"PyPI package {source.name} is not a wheel ({source.location}) and --no-build forbids building it; "
                "pass its wheel with --inject (it replaces the locked entry), or --ignore-pypi-non-wheel to leave it "
                "out",
                file=str(plan.lockfile),
                line=line_of(plan.lockfile, rf"^- pypi: {re.escape(source.location)}\s*$"),
            )
        version = f" {source.version}" if source.version else ""
        plan.notes.append(f"skipped PyPI package {source.name}{version}: not a wheel ({source.location})")
    plan.pypi_sources = []


def pypi_build_indexes(lockfile: Path, environment: str) -> tuple[list[str], list[str]]:
    """The environment's ``indexes:`` and ``find-links:`` (URLs or paths) from the lockfile text.

    py-rattler 0.28 parses but does not expose them, and builds need them: pixi gets build
    requirements from the same indexes. The block is plain YAML that pixi writes in one shape::

        environments:
          <env>:
            indexes:
            - https://pypi.org/simple
            find-links:
            - url: https://example.org/wheels/
            - path: ./wheels
    """
    indexes: list[str] = []
    find_links: list[str] = []
    section: list[str] | None = None
    inside = False
    for line in lockfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            inside = line.strip().rstrip(":").strip("'\"") == environment
            section = None
        elif not line.startswith(" "):
            inside = False
        elif inside and line.startswith("    ") and not line.startswith("    -"):
            key = line.strip()
            section = indexes if key == "indexes:" else find_links if key == "find-links:" else None
        elif inside and section is not None and line.startswith("    - "):
            value = line[len("    - ") :].strip()
            if section is find_links and value.startswith("path:"):
                value = str((lockfile.parent / value[len("path:") :].strip()).resolve())
            elif section is find_links and value.startswith("url:"):
                value = value[len("url:") :].strip()
            section.append(value.strip("'\""))
    return indexes, find_links
