"""The download cache: pixi-pack's layout, but verified, atomic and safe to share.

Layout (as pixi-pack's ``--use-cache``): ``DIR/CACHEDIR.TAG``, ``DIR/<subdir>/<file>`` for conda
packages and ``DIR/pypi/<wheel>``. Unlike pixi-pack, every hit is re-hashed before use, entries
appear only by ``os.replace`` of a finished file, and several processes may share one folder:
the worst a race can do is download the same file twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from .atomic import remove_stale_partials, temp_prefix
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


class PackageCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
            tag = root / "CACHEDIR.TAG"
            if not tag.exists():
                self._write_atomic(tag, CACHEDIR_TAG.encode())
        except OSError as exc:
            raise PixiPackError(f"cannot use cache directory {root}: {exc.strerror or exc}") from None

    def _write_atomic(self, target: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
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

    def lookup(self, artifact: Artifact, *, verify: bool = True) -> Path | None:
        """The cached file if present and its hash matches; a corrupt entry is removed.

        With ``verify=False`` the caller promises to check the hash itself while it reads the file
        (the tar writer does), which spares a full read of every cache hit.
        """
        path = self.path_for(artifact)
        if not verify:
            return path if path.is_file() else None
        try:
            if file_matches(artifact, path):
                return path
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def discard(self, artifact: Artifact) -> None:
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

    def commit(self, artifact: Artifact, temp: Path) -> Path:
        final = self.path_for(artifact)
        os.chmod(temp, 0o644)
        os.replace(temp, final)
        return final
