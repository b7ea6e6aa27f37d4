"""lockfile → plans → fetch → archives: the packing pipeline."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .cache import PackageCache
from .config import load_auth, load_config
from .errors import ArchiveError, PixiPackError, UsageError
from .fetch import FetchContext, fetch_artifacts
from .layout import Entry, pack_entries
from .lockfile import build_plan, load_lockfile
from .model import PackOptions, PackPlan, PackResult, artifact_summary
from .progress import ProgressReporter
from .tarwriter import DeterministicTarWriter
from .wheels import check_wheel_fits, find_python

log = logging.getLogger("pixi_pack_ci")


def _default_name(kind: str) -> str:
    return "environment" if kind == "directory" else "environment.tar"


def plan_packs(options: PackOptions, hook: Any) -> list[PackPlan]:
    """Read the lockfile and decide every pack of this run, with plugins' changes applied."""
    loaded = load_lockfile(options.manifest_path)
    pairs = [(e, p) for e in options.environments for p in options.platforms]
    pairs = list(dict.fromkeys(pairs))
    kind = "directory" if options.directory_only else "tar"
    single = len(pairs) == 1 and options.output_dir is None
    if not single and options.output is not None:
        raise UsageError("-o/--output names a single pack; with several -e/-p use --output-dir")
    plans: list[PackPlan] = []
    for environment, platform in pairs:
        plan = build_plan(loaded, environment, platform, ignore_pypi_non_wheel=options.ignore_pypi_non_wheel)
        plan.kind = kind  # type: ignore[assignment]
        if single:
            if options.output == "-":
                if kind == "directory":
                    raise UsageError("--directory-only cannot write to standard output")
                plan.output, plan.kind = None, "stdout"
            else:
                plan.output = Path(options.output or _default_name(kind)).absolute()
        else:
            suffix = "" if kind == "directory" else ".tar"
            plan.output = ((options.output_dir or Path(".")) / f"{environment}-{platform}{suffix}").absolute()
        hook.pixi_pack_ci_modify_plan(plan=plan, options=options)
        check_wheels(plan)
        plans.append(plan)
    return plans


def check_wheels(plan: PackPlan) -> None:
    """Every wheel must fit the environment's Python; checked before anything is downloaded."""
    if not plan.pypi:
        return
    python = find_python((a.record for a in plan.conda), plan.platform)
    if python is None:
        raise PixiPackError(
            f"environment {plan.environment!r} on {plan.platform} has PyPI wheels but no python conda package"
        )
    for wheel in plan.pypi:
        check_wheel_fits(wheel.file_name, python)


@contextlib.contextmanager
def _cache_for(options: PackOptions, plans: list[PackPlan]) -> Iterator[PackageCache]:
    if options.cache_dir is not None:
        yield PackageCache(options.cache_dir)
        return
    # No cache asked for: download beside the first output so the archive copy stays on one disk.
    first = next((p.output for p in plans if p.output is not None), None)
    parent = first.parent if first is not None else Path.cwd()
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pixi-pack-ci-download-", dir=parent))
    try:
        yield PackageCache(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_tar(entries: list[Entry], out: BinaryIO, progress: ProgressReporter) -> DeterministicTarWriter:
    writer = DeterministicTarWriter(out)
    for entry in entries:
        if entry.is_dir:
            writer.add_directory(entry.path)
        elif entry.data is not None:
            writer.add_bytes(entry.path, entry.data)
        else:
            assert entry.source is not None
            with entry.source.open("rb", buffering=0) as fh:
                size = os.fstat(fh.fileno()).st_size
                writer.add_file(entry.path, fh, size)
            progress.advance(size)
    writer.finish()
    return writer


def _write_directory(entries: list[Entry], target: Path) -> None:
    for entry in entries:
        path = target / entry.path
        if entry.is_dir:
            path.mkdir(exist_ok=True)
        elif entry.data is not None:
            path.write_bytes(entry.data)
        else:
            assert entry.source is not None
            shutil.copyfile(entry.source, path)


def write_pack(plan: PackPlan, files: dict[str, Path], *, quiet: bool) -> PackResult:
    """Write one pack atomically: a temporary sibling first, renamed into place when complete."""
    entries = pack_entries(plan, files)
    total = sum(e.source.stat().st_size for e in entries if e.source is not None)
    packages = tuple(artifact_summary(a) for a in plan.artifacts)

    def result(path: Path | None, sha256: str | None, size: int) -> PackResult:
        return PackResult(
            environment=plan.environment,
            platform=plan.platform,
            kind=plan.kind,
            path=path,
            sha256=sha256,
            size=size,
            packages=packages,
            lockfile=plan.lockfile,
        )

    with ProgressReporter(f"Writing {plan.environment}-{plan.platform}", total, enabled=not quiet) as progress:
        if plan.kind == "stdout":
            writer = _write_tar(entries, sys.stdout.buffer, progress)
            return result(None, writer.sha256.hexdigest(), writer.size)
        assert plan.output is not None
        target = plan.output
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveError(f"cannot create output directory {target.parent}: {exc.strerror}") from None
        if plan.kind == "directory":
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
            old: Path | None = None
            try:
                _write_directory(entries, tmp_dir)
                os.chmod(tmp_dir, 0o755)
                if target.exists():
                    if not target.is_dir():
                        raise ArchiveError(f"{target} exists and is not a directory")
                    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                    os.rename(target, old / "previous")
                os.rename(tmp_dir, target)
            except OSError as exc:
                raise ArchiveError(f"could not write pack directory {target}: {exc}") from None
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            return result(target, None, total)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                writer = _write_tar(entries, out, progress)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError as exc:
            raise ArchiveError(f"could not write pack {target}: {exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return result(target, writer.sha256.hexdigest(), writer.size)


def run_pack(options: PackOptions, hook: Any) -> tuple[list[PackPlan], list[PackResult]]:
    """The whole ``pack`` command. With ``dry_run`` nothing is downloaded and no pack is written."""
    config = load_config(options.config_path)
    auth = load_auth(options.auth_file)
    plans = plan_packs(options, hook)
    if options.dry_run:
        return plans, []
    artifacts = [a for plan in plans for a in plan.artifacts]
    total = sum(a.size or 0 for a in artifacts)
    context = FetchContext(config=config, auth=auth)
    results: list[PackResult] = []
    try:
        with _cache_for(options, plans) as cache:
            with ProgressReporter(f"Fetching {len(artifacts)} packages", total, enabled=not options.quiet) as progress:
                context.progress = progress
                files = fetch_artifacts(artifacts, cache, context, hook)
            for plan in plans:
                results.append(write_pack(plan, files, quiet=options.quiet))
                for note in plan.notes:
                    log.warning("%s", note)
    finally:
        context.close()
    if not results:
        raise PixiPackError("nothing was packed")
    hook.pixi_pack_ci_packs_written(packs=results, options=options)
    return plans, results
