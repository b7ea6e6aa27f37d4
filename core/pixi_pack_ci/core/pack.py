"""The packing pipeline: options → plans → built wheels → fetch → writers → ``packs_written``.

Each step has its own module: :mod:`.planning` decides the packs, :mod:`.builds` turns non-wheel
PyPI entries into wheels, :mod:`.fetch` gets every artifact into the cache (or straight into a
pack written in place), and :mod:`.writers` holds one writer per output kind.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .atomic import remove_stale_partials, temp_prefix
from .builds import build_pypi_sources
from .cache import CacheMode, PackageCache
from .config import load_config
from .credentials import load_auth
from .errors import PixiPackError
from .executable import resolve_unpacker
from .fetch import FetchRun, fetch_artifacts
from .fetch_context import FetchContext
from .model import PackOptions, PackPlan, PackResult
from .planning import plan_packs
from .plugin_manager import PluginManager
from .progress import ProgressReporter
from .slots import SlotSizeError
from .writers import CorruptCacheEntryError, PackWriter, WriteJob, writer_for

log = logging.getLogger("pixi_pack_ci")
#: How often a run fetches and writes again after a cache entry went bad under it.
WRITE_ATTEMPTS = 3


@contextlib.contextmanager
def _cache_for(options: PackOptions, plans: list[PackPlan]) -> Iterator[tuple[PackageCache, CacheMode]]:
    if options.cache_dir is not None:
        yield PackageCache(options.cache_dir), CacheMode.KEEP
        return
    # No cache asked for: download beside the first output so the archive copy stays on one disk.
    # The folder is named after that output and this process, so a run that was killed has its
    # leftovers removed by the next run for the same output.
    first = next((p.output for p in plans if p.output is not None), None) or Path.cwd() / "stdout"
    first.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(first, ".download")
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(first), suffix=".download", dir=first.parent))
    try:
        # Its records die with it: no per-user key needed.
        yield PackageCache(staging, persistent=False), CacheMode.STAGING
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _forget_corrupt_entry(exc: CorruptCacheEntryError, run: FetchRun) -> None:
    """A cache hit failed its check while being packed: drop it, and the hits still to be checked
    with it, so the next attempt downloads it again."""
    log.warning("cached %s does not match the lockfile; downloading it again", exc.artifact.file_name)
    run.cache.discard(exc.artifact)
    run.unverified.clear()


def _write_while_fetching(plans: list[PackPlan], run: FetchRun, quiet: bool) -> list[PackResult]:
    """A run of one pack that a writer can fill while it downloads (a pack written in place)."""
    if len(plans) != 1:
        return []
    job = WriteJob(plans[0], run, quiet)
    writer = writer_for(job, fetches=True)
    if writer is None:
        return []
    try:
        return [writer.write(job)]
    except SlotSizeError as exc:
        log.info("packing the ordinary way: %s", exc)
    except CorruptCacheEntryError as exc:
        _forget_corrupt_entry(exc, run)
    return []


def _fetch_then_write(plans: list[PackPlan], run: FetchRun, options: PackOptions) -> list[PackResult]:
    unpackers = {
        p.platform: resolve_unpacker(options.pixi_unpack_source, p.platform, options.cache_dir)
        for p in plans
        if p.kind == "executable"
    }
    artifacts = [a for plan in plans for a in plan.artifacts]
    total = sum(a.size or 0 for a in artifacts)
    for _ in range(WRITE_ATTEMPTS):
        with ProgressReporter(f"Fetching {len(artifacts)} packages", total, enabled=not options.quiet) as progress:
            run.show_progress(progress)
            files = fetch_artifacts(artifacts, run)
        try:
            jobs = [WriteJob(plan, run, options.quiet, files, unpackers.get(plan.platform)) for plan in plans]
            return [_writer(job).write(job) for job in jobs]
        except CorruptCacheEntryError as exc:
            _forget_corrupt_entry(exc, run)
    raise PixiPackError("the package cache keeps changing under this run; is another tool writing to it?")


def _writer(job: WriteJob) -> PackWriter:
    writer = writer_for(job, fetches=False)
    if writer is None:  # every kind has a writer; a plugin that set another kind gets this line
        raise PixiPackError(f"no writer for a pack of kind {job.plan.kind!r}")
    return writer


def run_pack(options: PackOptions, plugins: PluginManager) -> tuple[list[PackPlan], list[PackResult]]:
    """The whole ``pack`` command. With ``dry_run`` nothing is downloaded and no pack is written."""
    config = load_config(options.config_path)
    auth = load_auth(options.auth_file)
    plans = plan_packs(options, plugins)
    if options.dry_run:
        return plans, []
    context = FetchContext(config=config, auth=auth)
    try:
        with _cache_for(options, plans) as (cache, mode):
            # Cache hits are checked while they stream into the pack (one read instead of two),
            # unless a pack cannot be taken back once written: a folder, or bytes sent to stdout.
            verify = not all(p.output is not None and p.kind != "directory" for p in plans)
            run = FetchRun(context, cache, plugins, cache_mode=mode, verify_cache_hits=verify)
            builds = build_pypi_sources(plans, run, quiet=options.quiet)
            if builds:
                options.report["builds"] = builds
            results = _write_while_fetching(plans, run, options.quiet) or _fetch_then_write(plans, run, options)
            for plan in plans:
                for note in plan.notes:
                    log.warning("%s", note)
    finally:
        context.close()
    plugins.packs_written(results, options)
    return plans, results
