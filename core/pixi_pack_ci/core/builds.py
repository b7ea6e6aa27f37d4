"""Pack what pixi installs: the planned packs' non-wheel PyPI entries, built into wheels.

Each distinct source is got exactly as the lockfile pins it (:mod:`.sources`), built once per run
through PEP 517 (:mod:`.wheelbuild`), and kept in ``--use-cache`` under ``built/<key>/``, the key
being the source's digest with everything else that shapes the wheel. The built wheel then takes
the entry's place in every plan that has it, after the same fit check as any locked wheel.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform as host_platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

from .cache import PackageCache, file_digest
from .errors import PixiPackError
from .fetch import FetchRun, fetch_artifacts
from .lockfile import pypi_build_indexes
from .model import PackPlan, PypiArtifact, PypiSource
from .redact import scrub
from .sources import FIXED_EPOCH, LockedSource, SourceError, checkout_git, folder_digest
from .wheelbuild import BuildError, BuildSettings, build_wheel
from .wheels import canonical, check_wheel_fits, find_python

log = logging.getLogger("pixi_pack_ci")
BUILT_DIR = "built"


@dataclass
class _Job:
    """One source to build, and the plans (with their entry) that wait for its wheel."""

    entry: PypiSource
    source: LockedSource
    settings: BuildSettings
    waiting: list[tuple[PackPlan, PypiSource]] = field(default_factory=list)


def _jobs(plans: list[PackPlan]) -> list[_Job]:
    jobs: dict[str, _Job] = {}
    settings: dict[tuple[Path, str], BuildSettings] = {}
    for plan in plans:
        key_env = (plan.lockfile, plan.environment)
        if key_env not in settings and plan.pypi_sources:
            indexes, find_links = pypi_build_indexes(plan.lockfile, plan.environment)
            settings[key_env] = BuildSettings(indexes=indexes or BuildSettings().indexes, find_links=find_links)
        for entry in plan.pypi_sources:
            assert entry.source is not None
            job_key = json.dumps([entry.source.__dict__, entry.sha256, settings[key_env].__dict__], sort_keys=True)
            job = jobs.setdefault(job_key, _Job(entry, entry.source, settings[key_env]))
            job.waiting.append((plan, entry))
    return list(jobs.values())


def _fetch_sdists(jobs: list[_Job], run: FetchRun) -> dict[str, Path]:
    """Every sdist once, through the fetch loop: retried, mirrored, cached and checked against
    the lockfile's sha256 like any package (an sdist without one is refused)."""
    artifacts = []
    for job in jobs:
        if job.source.kind != "sdist" or not job.source.location.startswith(("http://", "https://")):
            continue
        if not job.entry.sha256:
            raise SourceError(
                f"sdist of {job.entry.name} has no sha256 in the lockfile; refusing to build unchecked code"
            )
        name = job.source.location.rsplit("/", 1)[-1]
        version = job.entry.version or ""
        artifacts.append(PypiArtifact(job.entry.name, version, name, job.source.location, job.entry.sha256))
    if not artifacts:
        return {}
    checked, run.verify_cache_hits = run.verify_cache_hits, True  # never packed: check hits now
    try:
        files = fetch_artifacts(artifacts, run)
    finally:
        run.verify_cache_hits = checked
    return {a.url: files[a.cache_key] for a in artifacts}


@dataclass
class _Prepared:
    path: Path
    digest: dict[str, str]
    epoch: int


def _prepare(job: _Job, sdists: dict[str, Path], scratch: Path) -> _Prepared:
    source = job.source
    if source.kind == "git":
        checkout = scratch / "checkout"
        epoch = checkout_git(source, checkout)
        assert source.commit is not None
        return _Prepared(checkout, {"gitCommit": source.commit}, epoch)
    if source.kind == "sdist":
        local = sdists.get(source.location) or Path(source.location)
        if not local.is_file():
            raise SourceError(f"the locked sdist {source.location} does not exist")
        digest = file_digest(local)
        if job.entry.sha256 and digest != job.entry.sha256:
            raise SourceError(f"the sdist {local.name} does not match its sha256 in the lockfile")
        return _Prepared(local, {"sha256": digest}, FIXED_EPOCH)
    folder = Path(source.location)
    return _Prepared(folder, {"sha256": folder_digest(folder)}, FIXED_EPOCH)


def _build_key(job: _Job, prepared: _Prepared) -> str:
    # Everything that shapes the wheel: the source, where build requirements come from, and the
    # interpreter and machine (a platform wheel is built for them).
    shape = {
        "source": [job.source.kind, prepared.digest, job.source.subdirectory],
        "settings": job.settings.indexes + job.settings.find_links,
        "python": [sys.implementation.name, *map(str, sys.version_info[:2])],
        "machine": [sys.platform, host_platform.machine()],
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:32]


def _cached_build(folder: Path, key: str, cache: PackageCache) -> tuple[Path, str] | None:
    """The wheel in ``built/<key>/`` and its sha256, if this user made it: its ``record.json``
    carries this user's MAC (the cache folder itself is not trusted, see docs/trust.md) and the
    wheel still has the recorded sha256."""
    try:
        record = json.loads((folder / "record.json").read_text())
        name, sha256 = str(record["wheel"]), str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    wheel = folder / name
    if "/" in name or not cache.sealed(record.get("mac"), "built", key, name, sha256):
        return None
    return (wheel, sha256) if wheel.is_file() and file_digest(wheel) == sha256 else None


def _built_wheel(job: _Job, prepared: _Prepared, cache: PackageCache) -> tuple[Path, str, bool]:
    """The wheel for this source: an earlier run's from ``built/<key>/``, else built now and
    committed there atomically (a wheel is small; checking it again costs nothing worth saving)."""
    key = _build_key(job, prepared)
    folder = cache.root / BUILT_DIR / key
    cached = _cached_build(folder, key, cache)
    if cached is not None:
        return *cached, True
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.{os.getpid()}.", dir=folder.parent))
    try:
        path = prepared.path / job.source.subdirectory if job.source.subdirectory else prepared.path
        built = build_wheel(path, work, epoch=prepared.epoch, settings=job.settings, what=_what(job))
        sha256 = file_digest(built)
        record = {"wheel": built.name, "sha256": sha256, "mac": cache.seal("built", key, built.name, sha256)}
        (work / "record.json").write_text(json.dumps(record) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # another run committed the same build first: as good
            os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # already gone when it was moved into place
    committed = _cached_build(folder, key, cache)
    if committed is None:
        raise BuildError(f"the wheel built for {_what(job)} changed in {folder}; is another tool writing there?")
    return *committed, False


def _what(job: _Job) -> str:
    version = f" {job.entry.version}" if job.entry.version else ""
    return f"{job.entry.name}{version} from {job.source.describe()}"


def _artifact(job: _Job, wheel: Path, sha256: str, prepared: _Prepared) -> PypiArtifact:
    name, version, _, _ = parse_wheel_filename(wheel.name)
    if canonical(str(name)) != canonical(job.entry.name):
        raise BuildError(f"building {_what(job)} gave a wheel of another package: {wheel.name}")
    return PypiArtifact(
        name=job.entry.name,
        version=str(version),
        file_name=wheel.name,
        url=wheel.as_uri(),
        sha256=sha256,  # checked against the wheel's record just now
        size=wheel.stat().st_size,
        origin="build",
        built_from={"location": job.entry.location, "source": job.source.describe(), "digest": prepared.digest},
    )


def _place(job: _Job, wheel: PypiArtifact) -> None:
    """Put the wheel in every plan that waits for it, if it fits that plan's Python and platform."""
    pure = all(t.platform == "any" for t in parse_wheel_filename(wheel.file_name)[3])
    for plan, entry in job.waiting:
        python = find_python((a.record for a in plan.conda), plan.platform)
        if python is None:
            raise PixiPackError(f"environment {plan.environment!r} on {plan.platform} has PyPI packages but no python")
        try:
            check_wheel_fits(wheel.file_name, python)
        except PixiPackError:
            if pure:
                raise
            raise BuildError(
                f"{job.entry.name} builds into {wheel.file_name}, a wheel for this machine, not for {plan.platform}: "
                f"build the pack on a {plan.platform} runner, or package {job.entry.name} as a conda package"
            ) from None
        if entry.version and entry.version != wheel.version and job.source.kind == "path":
            plan.notes.append(
                f"{job.entry.name} in {job.entry.location} is now {wheel.version}, locked as {entry.version}"
            )
        plan.pypi_sources.remove(entry)
        plan.pypi.append(wheel)


def _tell(message: str) -> None:
    # Progress for the user, like "Created pack": not a warning, and shown without -v.
    print(scrub(f"🔨 {message}"), file=sys.stderr)


def build_pypi_sources(plans: list[PackPlan], run: FetchRun, *, quiet: bool) -> list[dict[str, Any]]:
    """Build every non-wheel entry left in ``plans`` into a wheel; returns what was built, how
    (from the cache or not) and where the time went, for the output and ``--json``."""
    jobs = _jobs(plans)
    if not jobs:
        return []
    say: Callable[[str], None] = log.info if quiet else _tell
    cache = run.cache
    started = time.monotonic()
    sdists = _fetch_sdists(jobs, run)
    fetch_seconds = time.monotonic() - started
    report: list[dict[str, Any]] = []
    for job in jobs:
        with tempfile.TemporaryDirectory(prefix="pixi-pack-ci-source.") as scratch:
            t0 = time.monotonic()
            prepared = _prepare(job, sdists, Path(scratch))
            t1 = time.monotonic()
            wheel_path, sha256, cached = _built_wheel(job, prepared, cache)
            t2 = time.monotonic()
            wheel = _artifact(job, wheel_path, sha256, prepared)
        _place(job, wheel)
        entry = {
            "name": job.entry.name, "version": wheel.version, "source": job.source.describe(),
            "source_digest": prepared.digest, "wheel": wheel.file_name, "sha256": wheel.sha256, "cached": cached,
            "seconds": {"source": round(t1 - t0, 3), "build": round(t2 - t1, 3)},
        }  # fmt: skip
        report.append(entry)
        how = "taken from the cache" if cached else f"built in {t2 - t1:.1f} s"
        say(f"{wheel.file_name}: {how} from {job.source.describe()} (source ready in {t1 - t0:.1f} s)")
    if sdists:
        say(f"{len(sdists)} sdists fetched in {fetch_seconds:.1f} s")
    return report
