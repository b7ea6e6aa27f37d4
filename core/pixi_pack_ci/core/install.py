"""Installing an environment from verified records and wheels: :func:`install_environment`.

Public for other outputs (an image builds its environment with it): records and wheels go into a
staging folder built for a final prefix, for any target platform, with no link scripts and no
network. ``rattler.install`` links the conda packages (relocated for the final prefix through
``alternative_target_prefix``); packages that install the same paths are settled the same way
every time (:mod:`.clobbers`); pypa ``installer`` installs the wheels into the locked python.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit
from urllib.request import url2pathname

import rattler
from rattler.install import InstallerReporter

from .clobbers import CLOBBERS_DIR, ClashPlan, plan_clashes, read_installed_paths, settle
from .errors import PixiPackError, UnpackError
from .progress import ProgressReporter
from .rattler_loop import run_rattler
from .wheels import find_python, install_wheels

log = logging.getLogger("pixi_pack_ci")


class _InstallEvents:
    """What ``rattler.install`` reports, put to use: the progress bar advances as packages are
    linked, and each package archive of an extracted pack is deleted once rattler has unpacked it
    into its cache. Deleting them then, in a background thread, overlaps that work with the rest
    of the install instead of leaving a GiB for the final clean-up.

    rattler calls these methods from its own threads; none of them may raise. It calls only the
    ones a reporter has (its documentation invites implementing a subset), which is why this is
    not a subclass: mypy takes the protocol's empty methods for abstract ones.

    It also knows which packages rattler is extracting into its cache: when an install fails, the
    others go on for a moment, and an install in rounds (:mod:`.clobbers`) must not start on the
    same cache before they are done.
    """

    def __init__(self, records: Sequence[rattler.RepoDataRecord], progress: ProgressReporter, *, delete: bool) -> None:
        self._archives = {r.name.normalized: (Path(url2pathname(urlsplit(r.url).path)), r.size or 0) for r in records}
        self._progress = progress
        self._tokens: dict[int, str] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._cache_idle = threading.Condition(self._lock)
        self._populating: set[int] = set()
        self._deleter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="free") if delete else None

    def _token(self, package_name: str) -> int:
        with self._lock:
            token = next(self._counter)
            self._tokens[token] = package_name
            return token

    def _name(self, token: int) -> str | None:
        with self._lock:
            return self._tokens.pop(token, None)

    def on_populate_cache_start(self, operation: int, package_name: str) -> int:
        token = self._token(package_name)
        with self._lock:
            self._populating.add(token)
        return token

    def on_populate_cache_complete(self, cache_entry: int) -> None:
        name = self._name(cache_entry)
        with self._lock:
            self._populating.discard(cache_entry)
            self._cache_idle.notify_all()
        if self._deleter is None:
            return
        archive = self._archives.get(name) if name is not None else None
        if archive is not None:
            self._deleter.submit(archive[0].unlink, missing_ok=True)

    def on_link_start(self, operation: int, package_name: str) -> int:
        return -self._token(package_name)  # negative: never mixed up with a cache token

    def on_link_complete(self, index: int) -> None:
        name = self._name(-index)
        archive = self._archives.get(name) if name is not None else None
        if archive is not None:
            self._progress.advance(archive[1])

    def wait_for_cache(self, timeout: float) -> bool:
        """True once rattler extracts no package into its cache any more (False after ``timeout``)."""
        with self._lock:
            return self._cache_idle.wait_for(lambda: not self._populating, timeout)

    def close(self) -> None:
        if self._deleter is not None:
            self._deleter.shutdown(wait=True)


def _rattler_install(
    records: list[rattler.RepoDataRecord],
    target: Path,
    prefix: Path,
    cache: Path,
    platform: str,
    events: _InstallEvents,
) -> UnpackError | None:
    """One ``rattler.install``; its failure is returned, to be raised or superseded."""
    try:
        run_rattler(
            rattler.install(
                records,
                target,
                alternative_target_prefix=prefix,  # what files that name their prefix get
                cache_dir=cache,
                execute_link_scripts=False,
                reporter=cast(InstallerReporter, events),
                platform=rattler.Subdir(platform),
            )
        )
    except Exception as exc:
        return UnpackError(f"could not install packages: {' '.join(str(exc).split())}")
    return None


def _install(
    records: list[rattler.RepoDataRecord], work: Path, prefix: Path, platform: str, *, disposable: bool, quiet: bool
) -> Path:
    """Install ``records`` for ``prefix`` into a folder of ``work``, which is returned.

    One ``rattler.install`` as usual. Only if it shows that packages install the same paths (it
    made ``__clobbers__``, or it failed) are the packages' file lists read: with clashes, the
    environment is installed again in rounds and settled (:mod:`.clobbers`), so that it is the
    same every time. Without, checking costs one ``lstat``.
    """
    staging, cache = work / "env", work / "cache"
    with ProgressReporter(f"Installing {len(records)} packages", _total(records), enabled=not quiet) as progress:
        events = _InstallEvents(records, progress, delete=disposable)
        try:
            failure = _rattler_install(records, staging, prefix, cache, platform, events)
            if failure is None and not os.path.lexists(staging / CLOBBERS_DIR):
                return staging
            plan = _clash_plan(records, cache, platform, failure)
            if plan is None:
                if failure is not None:
                    raise failure
                return staging
            # After a failure, packages still being extracted must be done before rattler reuses the cache.
            if failure is not None and not events.wait_for_cache(timeout=300):
                raise failure
        finally:
            events.close()
    return _install_in_rounds(records, plan, work, prefix, platform, disposable=disposable, quiet=quiet)


def _clash_plan(
    records: list[rattler.RepoDataRecord], cache: Path, platform: str, failure: UnpackError | None
) -> ClashPlan | None:
    try:
        return plan_clashes(records, read_installed_paths(records, cache, platform))
    except UnpackError:
        if failure is not None:
            raise failure from None  # what went wrong first is what the user needs to know
        raise


def _install_in_rounds(
    records: list[rattler.RepoDataRecord],
    plan: ClashPlan,
    work: Path,
    prefix: Path,
    platform: str,
    *,
    disposable: bool,
    quiet: bool,
) -> Path:
    """Install again, from rattler's cache, one round of ``plan`` at a time, each round adding its
    packages to those already installed; then put every clobbered copy where the plan says."""
    target, cache = work / "rounds", work / "cache"
    by_name = {r.name.normalized: r for r in records}
    log.info("%d packages install the same paths; installing in %d rounds", len(plan.records), len(plan.rounds))
    description = f"Installing {len(records)} packages in {len(plan.rounds)} rounds (some install the same paths)"
    installed: list[rattler.RepoDataRecord] = []
    with ProgressReporter(description, _total(records), enabled=not quiet) as progress:
        events = _InstallEvents(records, progress, delete=disposable)
        try:
            for names in plan.rounds:
                installed += [by_name[n] for n in names]
                failure = _rattler_install(installed, target, prefix, cache, platform, events)
                if failure is not None:
                    raise failure
        finally:
            events.close()
    settle(target, plan)
    return target


def _total(records: Sequence[rattler.RepoDataRecord]) -> int:
    return sum(r.size or 0 for r in records)


def install_environment(
    records: list[rattler.RepoDataRecord],
    wheels: Sequence[Path],
    work: Path,
    final_prefix: Path,
    platform: str,
    *,
    delete_archives: bool = False,
    quiet: bool = True,
) -> Path:
    """Install ``records`` (local, verified: see :mod:`.extract`) and ``wheels`` for
    ``final_prefix`` on ``platform`` into a new folder of ``work``, which is returned; the caller
    moves it to ``final_prefix`` or copies it elsewhere. Nothing is run (no link scripts, no
    Python), so any target platform can be installed from any host. ``delete_archives`` removes
    each package archive once rattler has cached it (they are the caller's to delete)."""
    python = find_python((json.loads(r.to_json()) for r in records), platform) if wheels else None
    if wheels and python is None:
        raise UnpackError("the pack has PyPI wheels but no python package to install them into")
    staging = _install(records, work, final_prefix, platform, disposable=delete_archives, quiet=quiet)
    if wheels:
        assert python is not None
        try:
            install_wheels(staging, list(wheels), python, final_prefix=final_prefix)
        except PixiPackError as exc:
            raise UnpackError(str(exc)) from None
    return staging
