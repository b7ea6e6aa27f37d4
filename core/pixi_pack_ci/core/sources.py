"""The locked source of a PyPI entry that is not a wheel, and getting exactly that source.

pixi locks three kinds: a folder (``.``, ``./libs/sub``, relative to the lockfile), a git URL
pinned to a commit (``git+https://host/repo.git?rev=main#<commit>``; the fragment is the commit
pixi resolved, the query only says how it was asked for) and an sdist URL with its sha256. A
source is read from the lockfile alone, so ``--dry-run`` can name it without fetching anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from .errors import LockfileError, PixiPackError
from .redact import redact_url

SourceKind = Literal["path", "git", "sdist"]
SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz")
#: What is left out when a folder is copied for building: VCS data, pixi's own environments,
#: virtual environments and build leftovers. None of it is part of a source distribution.
IGNORED_NAMES = frozenset(
    {".git", ".hg", ".svn", ".pixi", ".venv", "venv", "__pycache__", ".tox", ".nox", ".mypy_cache",
     ".pytest_cache", ".ruff_cache", "node_modules", "build", "dist", ".eggs"}
)  # fmt: skip
#: SOURCE_DATE_EPOCH for sources with no time of their own (folders, sdists): 1980-01-01, the
#: earliest time a zip file (and so a wheel) can record.
FIXED_EPOCH = 315532800
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class SourceError(PixiPackError):
    """A locked source cannot be had as the lockfile pins it."""


@dataclass(frozen=True)
class LockedSource:
    """Where a non-wheel entry's code is, as the lockfile pins it."""

    kind: SourceKind
    #: A folder (absolute path), the git repository URL (without ``git+``, query and fragment),
    #: or the sdist URL.
    location: str
    #: The git commit, for ``git``.
    commit: str | None = None
    #: A folder inside the repository or sdist that holds the project (``?subdirectory=``).
    subdirectory: str | None = None

    def describe(self) -> str:
        where = f" (subdirectory {self.subdirectory})" if self.subdirectory else ""
        if self.kind == "git":
            return f"git {redact_url(self.location)} at {self.commit}{where}"
        if self.kind == "sdist":
            return f"sdist {redact_url(self.location)}{where}"
        return f"folder {self.location}{where}"


def locked_source(location: str, lock_dir: Path, *, lockfile: Path | None = None) -> LockedSource:
    """Classify a lockfile location; a git entry without a pinned commit is refused here, at plan time."""
    scheme = urlsplit(location).scheme
    if location.startswith("git+"):
        return _git_source(location, lockfile)
    raw = location[len("direct+") :] if location.startswith("direct+") else location
    parts = urlsplit(raw)
    subdirectory = parse_qs(parts.query).get("subdirectory", [None])[0]
    if parts.scheme in ("http", "https"):
        if not parts.path.endswith(SDIST_SUFFIXES):
            raise LockfileError(f"PyPI entry {redact_url(location)} is neither a wheel nor an sdist", file=_s(lockfile))
        return LockedSource("sdist", urlunsplit(parts._replace(query="", fragment="")), subdirectory=subdirectory)
    if scheme == "file":
        path = Path(unquote(parts.path))
    elif scheme and len(scheme) > 1:
        raise LockfileError(
            f"PyPI entry {redact_url(location)}: pixi-pack-ci cannot build from {scheme}://", file=_s(lockfile)
        )
    else:
        path = Path(unquote(raw.split("?", 1)[0]))  # a path relative to the lockfile
    path = path if path.is_absolute() else lock_dir / path
    kind: SourceKind = "sdist" if path.name.endswith(SDIST_SUFFIXES) else "path"
    return LockedSource(kind, os.path.normpath(path), subdirectory=subdirectory)


def _s(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _git_source(location: str, lockfile: Path | None) -> LockedSource:
    parts = urlsplit(location[len("git+") :])
    commit = parts.fragment.lower()
    if not _COMMIT.fullmatch(commit):
        raise LockfileError(
            f"git entry {redact_url(location)} pins no commit (a branch or tag moves); run `pixi lock` to pin one",
            file=_s(lockfile),
        )
    subdirectory = parse_qs(parts.query).get("subdirectory", [None])[0]
    return LockedSource("git", urlunsplit(parts._replace(query="", fragment="")), commit, subdirectory)


@dataclass(frozen=True)
class PreparedSource:
    """A source on disk, ready for a build frontend."""

    #: The folder or sdist file to build.
    path: Path
    #: What identifies the source: ``{"sha256": …}`` of a folder's files or an sdist, ``{"gitCommit": …}``.
    digest: dict[str, str]
    #: SOURCE_DATE_EPOCH for the build: the commit time for git, else :data:`FIXED_EPOCH`.
    epoch: int


def folder_digest(source: Path) -> str:
    """The sha256 of a project folder's files (each file's path, executable bit and content, in
    sorted order, without :data:`IGNORED_NAMES`): the source digest that names a build in the
    cache and in provenance. The folder is built where it is, as pixi and uv build it, so
    version plugins that read ``.git`` (setuptools-scm, hatch-vcs) work."""
    if not source.is_dir():
        raise SourceError(f"the locked folder {source} does not exist; is this the project's checkout?")
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_NAMES and not d.endswith(".egg-info"))
        rel_root = Path(root).relative_to(source)
        for name in sorted(files):
            path = Path(root) / name
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue  # links and special files are not part of a source distribution
            with path.open("rb") as fh:
                content = hashlib.file_digest(fh, "sha256").hexdigest()
            executable = int(bool(info.st_mode & stat.S_IXUSR))
            digest.update(f"{(rel_root / name).as_posix()}\0{executable}\0{content}\n".encode())
    return digest.hexdigest()


def checkout_git(source: LockedSource, target: Path) -> int:
    """Check out the locked commit into ``target``; returns its commit time. Fetching the commit
    alone is tried first (GitHub and most servers allow it); a full fetch is the fallback. The
    checkout keeps ``.git``: version plugins read it."""
    assert source.commit is not None
    git = shutil.which("git")
    if git is None:
        raise SourceError(f"building {source.describe()} needs git, which is not on PATH")
    target.mkdir(parents=True)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
        return subprocess.run([git, "-C", str(target), *args], capture_output=True, text=True, env=env, check=False)

    run("init", "-q")
    fetched = run("fetch", "-q", "--depth", "1", source.location, source.commit)
    if fetched.returncode != 0:
        fetched = run("fetch", "-q", source.location, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
    if fetched.returncode != 0:
        detail = (fetched.stderr.strip().splitlines() or ["no output"])[-1]
        raise SourceError(f"could not fetch {source.describe()}: {redact_url(detail)}")
    checked = run("-c", "advice.detachedHead=false", "checkout", "-q", source.commit)
    if checked.returncode != 0:
        raise SourceError(f"commit {source.commit} is not in {redact_url(source.location)}")
    head = run("rev-parse", "HEAD").stdout.strip()
    if head != source.commit:  # an abbreviated or ambiguous name resolved elsewhere
        raise SourceError(f"{redact_url(source.location)} gave commit {head}, not the locked {source.commit}")
    committed = run("log", "-1", "--format=%ct", head).stdout.strip()
    return int(committed) if committed.isdigit() else FIXED_EPOCH
