"""The download cache: pixi-pack's layout, but verified, atomic and safe to share.

Layout (as pixi-pack's ``--use-cache``): ``DIR/CACHEDIR.TAG``, ``DIR/<subdir>/<file>`` for conda
packages and ``DIR/pypi/<wheel>``. Unlike pixi-pack, every hit is checked against the lockfile
before use (hashed again unless its record shows the very file unchanged since it was checked),
entries appear only by ``os.replace`` of a finished file, and several processes may share one
folder: the worst a race can do is download the same file twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from .atomic import remove_stale_partials, remove_stale_partials_in, temp_prefix
from .errors import PixiPackError
from .model import Artifact

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pixi-pack-ci.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
CHUNK = 1 << 20


class ArtifactHash:
    """A running hash with the one algorithm that can check an artifact: its sha256 when the
    lockfile has one, else its md5. Hashing md5 as well would cost more CPU than sha256 itself
    (about 0.7 GiB/s against 1.7 GiB/s with SHA extensions) and prove nothing more."""

    def __init__(self, artifact: Artifact) -> None:
        self.algorithm = "sha256" if artifact.sha256 or not artifact.md5 else "md5"
        self.expected = ((artifact.sha256 if self.algorithm == "sha256" else artifact.md5) or "").lower()
        self._hash = hashlib.new(self.algorithm, usedforsecurity=self.algorithm != "md5")

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def matches(self) -> bool:
        """True when the bytes so far are what the lockfile promised (or it promised nothing)."""
        return not self.expected or self._hash.hexdigest() == self.expected


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read once."""
    with path.open("rb", buffering=0) as fh:
        return hashlib.file_digest(fh, lambda: hashlib.new(algorithm, usedforsecurity=algorithm != "md5")).hexdigest()


def file_matches(artifact: Artifact, path: Path) -> bool:
    """True when the file at ``path`` hashes to what the lockfile promised for ``artifact``."""
    check = ArtifactHash(artifact)
    if not check.expected:
        return True
    return file_digest(path, check.algorithm) == check.expected


VERIFIED_DIR = ".verified"


def _fingerprint(info: os.stat_result) -> list[int]:
    # ctime cannot be set by a user and changes on any write, rename or chmod; with the inode and
    # device it ties a record to this very file on this very machine. A cache restored from
    # elsewhere (actions/cache, a copied folder) never matches and is hashed again.
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


class PackageCache:
    """Entries are hashed once, when they arrive or are first read; a record beside each entry
    (``.verified/<key>``) remembers the hash with the file's fingerprint (device, inode, size,
    mtime, ctime), and later runs trust an unchanged file without reading it. Packs made only of
    such files are also remembered by the digest of their layout (``.verified/packs/``), so a
    pack from a warm cache can be copied in the kernel without being hashed again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: cache key → sha256 of the content, for every entry known good in this run.
        self.trusted: dict[str, str] = {}
        try:
            root.mkdir(parents=True, exist_ok=True)
            tag = root / "CACHEDIR.TAG"
            if not tag.exists():
                self._write_atomic(tag, CACHEDIR_TAG.encode())
        except OSError as exc:
            raise PixiPackError(f"cannot use cache directory {root}: {exc.strerror or exc}") from None
        self._remove_stale_records()

    def _remove_stale_records(self) -> None:
        """Records half-written by a run that was killed (entries' own partial downloads are
        removed as each entry is fetched again)."""
        verified = self.root / VERIFIED_DIR
        if not verified.is_dir():
            return
        for folder in [self.root, verified, *(p for p in verified.iterdir() if p.is_dir() and not p.is_symlink())]:
            remove_stale_partials_in(folder, ".part")

    def _write_atomic(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target), suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def path_for(self, artifact: Artifact) -> Path:
        return self.root / artifact.cache_key

    def _record_path(self, key: str) -> Path:
        return self.root / VERIFIED_DIR / key

    def remember(self, artifact: Artifact, path: Path, sha256: str, info: os.stat_result | None = None) -> None:
        """Record that ``path`` (just checked against the lockfile) has content ``sha256``; ``info``
        is the ``fstat`` of the file that was checked, when it was read through an open descriptor."""
        self.trusted[artifact.cache_key] = sha256
        try:
            record = {"sha256": sha256, "fingerprint": _fingerprint(info or path.stat())}
            self._write_atomic(self._record_path(artifact.cache_key), json.dumps(record).encode())
        except OSError:
            pass  # a read-only cache still works; it is just hashed every time

    def recall(self, artifact: Artifact, path: Path, info: os.stat_result | None = None) -> str | None:
        """The content sha256 if ``path`` is unchanged since it was checked and matches ``artifact``.
        With ``info`` (the ``fstat`` of an open file) the question is about that very file."""
        try:
            record = json.loads(self._record_path(artifact.cache_key).read_bytes())
            sha256, fingerprint = record["sha256"], record["fingerprint"]
            info = info or path.stat()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if fingerprint != _fingerprint(info) or not isinstance(sha256, str):
            return None
        if artifact.sha256 and artifact.sha256.lower() != sha256:
            return None
        if not artifact.sha256 and artifact.md5:
            return None  # the record proves a sha256; an md5-only lockfile entry is hashed each time
        self.trusted[artifact.cache_key] = sha256
        return sha256

    def lookup(self, artifact: Artifact, *, verify: bool = True) -> Path | None:
        """The cached file if present and its hash matches; a corrupt entry is removed.

        An entry whose record still matches is returned unread. With ``verify=False`` the caller
        promises to check the hash itself while it reads the file (the tar writer does), which
        spares a full read of the other cache hits.
        """
        path = self.path_for(artifact)
        if self.recall(artifact, path) is not None:
            return path
        if not verify:
            return path if path.is_file() else None
        try:
            check = ArtifactHash(artifact)
            digest = file_digest(path, check.algorithm)
        except FileNotFoundError:
            return None
        if not check.expected or digest == check.expected:
            if check.algorithm == "sha256":
                self.remember(artifact, path, digest)
            return path
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def discard(self, artifact: Artifact) -> None:
        self.trusted.pop(artifact.cache_key, None)
        with contextlib.suppress(OSError):
            self._record_path(artifact.cache_key).unlink()
        with contextlib.suppress(OSError):
            self.path_for(artifact).unlink()

    def temp_path(self, artifact: Artifact) -> Path:
        """A fresh temporary path beside the final entry, so the final ``os.replace`` is atomic."""
        final = self.path_for(artifact)
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(final, ".part")  # downloads of runs that were killed
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=temp_prefix(final), suffix=".part")
        os.close(fd)
        return Path(tmp)

    def commit(self, artifact: Artifact, temp: Path, sha256: str | None = None) -> Path:
        """Move a verified download into place; ``sha256`` (when known) is remembered with it."""
        final = self.path_for(artifact)
        os.chmod(temp, 0o644)
        os.replace(temp, final)
        if sha256:
            self.remember(artifact, final, sha256)
        return final

    def _pack_record(self, layout_digest: str) -> Path:
        return self.root / VERIFIED_DIR / "packs" / layout_digest

    def recall_pack(self, layout_digest: str) -> tuple[str, int] | None:
        """sha256 and size of the pack a layout gave before, if remembered."""
        try:
            record = json.loads(self._pack_record(layout_digest).read_bytes())
            return str(record["sha256"]), int(record["size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember_pack(self, layout_digest: str, sha256: str, size: int) -> None:
        with contextlib.suppress(OSError):
            self._write_atomic(self._pack_record(layout_digest), json.dumps({"sha256": sha256, "size": size}).encode())
