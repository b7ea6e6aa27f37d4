"""The download cache: pixi-pack's layout, but verified, atomic and safe to share.

Layout (as pixi-pack's ``--use-cache``): ``DIR/CACHEDIR.TAG``, ``DIR/<subdir>/<file>`` for conda
packages and ``DIR/pypi/<wheel>``. Unlike pixi-pack, every hit is checked against the lockfile
before use (hashed again unless its record shows the very file unchanged since this user checked
it), entries appear only by ``os.replace`` of a finished file, and several processes may share one
folder: the worst a race can do is download the same file twice.

Records (``DIR/.verified/``) live with the cache, so anyone who can write the cache can write them.
Each therefore carries an HMAC made with a per-user key kept outside the cache
(:func:`state_dir`); a record without a valid one, from another user, machine or tool, is ignored
and its entry hashed again. What is trusted, by whom and why: ``docs/trust.md``.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import io
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from .atomic import remove_stale_partials, remove_stale_partials_in, temp_prefix
from .errors import PixiPackError
from .model import Artifact

log = logging.getLogger("pixi_pack_ci")

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pixi-pack-ci.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
CHUNK = 1 << 20


class CacheMode(enum.Enum):
    """How a run uses its cache folder, one name from ``--use-cache`` down to the pack writers."""

    #: A folder of this run only, beside the first output, removed when the run ends: downloads
    #: of a pack written in place go straight into their slots.
    STAGING = "staging"
    #: The user's ``--use-cache`` folder: entries and their records outlive the run, so every
    #: download is committed there first.
    KEEP = "keep"


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


def _digest_of(fh: io.FileIO, algorithm: str) -> str:
    return hashlib.file_digest(fh, lambda: hashlib.new(algorithm, usedforsecurity=algorithm != "md5")).hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read once."""
    with path.open("rb", buffering=0) as fh:
        return _digest_of(fh, algorithm)


def file_matches(artifact: Artifact, path: Path) -> bool:
    """True when the file at ``path`` hashes to what the lockfile promised for ``artifact``."""
    check = ArtifactHash(artifact)
    if not check.expected:
        return True
    return file_digest(path, check.algorithm) == check.expected


VERIFIED_DIR = ".verified"

#: Records vouch for a file only where any write to it is sure to move its change time (ctime)
#: and only its owner can write it: POSIX. On Windows ``st_ctime`` is the creation time and the
#: mtime can be set back after a write, so there every cache hit is hashed, every run.
PERSISTENT_RECORDS = sys.platform != "win32"


def _mine_alone(info: os.stat_result, others: int) -> bool:
    """The file is this user's and its ``others`` permission bits are clear."""
    if sys.platform == "win32":
        return False  # no owner in st_uid; only the key file asks, and Windows never loads one
    return info.st_uid == os.geteuid() and not info.st_mode & others


def _fingerprint(info: os.stat_result) -> list[int] | None:
    """What ties a record to one file, or None when no record may vouch for this file.

    ctime cannot be set by a user and moves on any write, rename, link or chmod; with the inode
    and device it names this very file, unchanged, on this very machine. Only a file that no one
    else may write is vouched for: anyone else can then only put another file (another inode, or
    a moved ctime) in its place, which the record does not name. A cache restored from elsewhere
    (actions/cache, a copied folder) never matches and is hashed again."""
    if not PERSISTENT_RECORDS or not _mine_alone(info, 0o022):
        return None
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


# --- the key that authenticates records -------------------------------------------------------

STATE_DIR_ENV = "PIXI_PACK_CI_STATE_DIR"
KEY_FILE = "cache-key"
KEY_BYTES = 32
#: Part of every MAC'd message: a record of another format never verifies.
RECORD_FORMAT = "pixi-pack-ci record 1"


class KeyUnusableError(Exception):
    """There is no per-user key this run may trust records with (the message says why)."""


def state_dir() -> Path | None:
    """Where this user's key lives: ``$PIXI_PACK_CI_STATE_DIR``, else ``$XDG_STATE_HOME/pixi-pack-ci``,
    else ``%LOCALAPPDATA%\\pixi-pack-ci`` (Windows) or ``~/.local/state/pixi-pack-ci``. Never in a
    cache: a key beside the records it authenticates would prove nothing."""
    if explicit := os.environ.get(STATE_DIR_ENV):
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / "pixi-pack-ci"
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return Path(local) / "pixi-pack-ci" if local else None
    try:
        return Path.home() / ".local" / "state" / "pixi-pack-ci"
    except RuntimeError:  # no home directory
        return None


def _parse_key(data: bytes) -> bytes | None:
    text = data.strip()
    if len(text) != 2 * KEY_BYTES:
        return None
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def _write_new_key(path: Path) -> bytes:
    """Replace an unreadable key file with a new key, atomically (a crash between creating and
    writing it, or an edit). Records made with the old one are then hashed again: nothing worse."""
    key = secrets.token_bytes(KEY_BYTES)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".part")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.hex().encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return key


def _read_key(path: Path) -> bytes:
    # A parallel first run may have created the file an instant ago and not written it yet.
    deadline = time.monotonic() + 1.0
    while True:
        with path.open("rb") as fh:
            info = os.fstat(fh.fileno())
            data = fh.read(4 * KEY_BYTES)
        if PERSISTENT_RECORDS and not _mine_alone(info, 0o077):
            # Readable by others: they could sign records. Writable: they could choose the key.
            raise KeyUnusableError(f"{path} is not private to this user (chmod 600 it, or remove it)")
        key = _parse_key(data)
        if key is not None:
            return key
        if time.monotonic() > deadline:
            return _write_new_key(path)
        time.sleep(0.01)


def load_record_key(directory: Path) -> bytes:
    """This user's key in ``directory``, created on first use: random, mode 0600, by exactly one
    of several processes starting at once (``O_EXCL``); the others read the one that won."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    except FileExistsError:
        return _read_key(path)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.hex().encode())
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return key


def record_mac(key: bytes, *fields: object) -> str:
    """HMAC-SHA256 of a record's fields: only a holder of ``key`` can make a record that verifies."""
    message = json.dumps([RECORD_FORMAT, *fields], separators=(",", ":")).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _mac_matches(mac: object, key: bytes, *fields: object) -> bool:
    return isinstance(mac, str) and hmac.compare_digest(mac.encode(), record_mac(key, *fields).encode())


# --- the cache ----------------------------------------------------------------------------------


class PackageCache:
    """Entries are hashed once, when they arrive or are first read; a record beside each entry
    (``.verified/<key>``) remembers the hash with the file's fingerprint (device, inode, size,
    mtime, ctime), and later runs of the same user trust an unchanged file without reading it.
    Packs made only of such files are also remembered by the digest of their layout
    (``.verified/packs/``), so a pack from a warm cache can be copied in the kernel without being
    hashed again. Every record is authenticated with this user's key (see the module).

    ``persistent`` False (a staging folder for one run): records are made with a key of this run
    only, so nothing is created outside the folder."""

    def __init__(self, root: Path, *, persistent: bool = True) -> None:
        self.root = root
        #: cache key → sha256 of the content, for every entry known good in this run.
        self.trusted: dict[str, str] = {}
        #: cache key → (sha256, fingerprint) of records this run wrote or found authentic.
        self._known: dict[str, tuple[str, list[int]]] = {}
        #: temporary path → (device, inode) of the file ``temp_path`` created there.
        self._temps: dict[str, tuple[int, int]] = {}
        try:
            root.mkdir(parents=True, exist_ok=True)
            tag = root / "CACHEDIR.TAG"
            if not tag.exists():
                self._write_atomic(tag, CACHEDIR_TAG.encode())
        except OSError as exc:
            raise PixiPackError(f"cannot use cache directory {root}: {exc.strerror or exc}") from None
        self._key = self._record_key() if persistent and PERSISTENT_RECORDS else secrets.token_bytes(KEY_BYTES)
        self._remove_stale_records()

    def seal(self, *fields: object) -> str:
        """A MAC over ``fields`` with this cache's record key, for records kept beside other
        things in the cache (built wheels): only this user can make one that :meth:`sealed` accepts."""
        return record_mac(self._key, *fields)

    def sealed(self, mac: object, *fields: object) -> bool:
        return _mac_matches(mac, self._key, *fields)

    def _record_key(self) -> bytes:
        """This user's key; without a usable one, a key of this run only (records of earlier runs
        are then not trusted: every hit is hashed, which is slower and just as correct)."""
        try:
            directory = state_dir()
            if directory is None:
                raise KeyUnusableError(f"no home folder; set {STATE_DIR_ENV}")
            if directory.resolve().is_relative_to(self.root.resolve()):
                raise KeyUnusableError(f"{directory} is inside the cache it would vouch for")
            return load_record_key(directory)
        except (OSError, KeyUnusableError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            log.warning("cache records of earlier runs are not trusted: %s", reason)
            return secrets.token_bytes(KEY_BYTES)

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
        """Trust the entry ``path`` (just checked against the lockfile: content ``sha256``) for this
        run, and record it for later runs when ``info`` is the ``fstat`` of the descriptor its
        bytes were read or written through. A path's own ``stat`` is never recorded: by then the
        path may name another file than the one that was checked."""
        key = artifact.cache_key
        self.trusted[key] = sha256
        fingerprint = _fingerprint(info) if info is not None else None
        if fingerprint is None:
            return
        self._known[key] = (sha256, fingerprint)
        mac = record_mac(self._key, "entry", key, sha256, fingerprint)
        record = {"sha256": sha256, "fingerprint": fingerprint, "mac": mac}
        with contextlib.suppress(OSError):  # a read-only cache still works; it is just hashed every time
            self._write_atomic(self._record_path(key), json.dumps(record).encode())

    def _authentic_record(self, key: str) -> tuple[str, list[int]] | None:
        """The entry's record if this user's key made it, else None (absent, foreign or forged)."""
        try:
            record = json.loads(self._record_path(key).read_bytes())
            sha256, fingerprint, mac = record["sha256"], record["fingerprint"], record["mac"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(sha256, str) or not isinstance(fingerprint, list):
            return None
        if not _mac_matches(mac, self._key, "entry", key, sha256, fingerprint):
            return None
        return sha256, fingerprint

    def recall(self, artifact: Artifact, path: Path, info: os.stat_result | None = None) -> str | None:
        """The content sha256 if ``path`` is unchanged since it was checked and matches ``artifact``.
        With ``info`` (the ``fstat`` of an open file) the question is about that very file."""
        key = artifact.cache_key
        if not artifact.sha256 and artifact.md5:
            return None  # a record proves a sha256; an md5-only lockfile entry is hashed each time
        try:
            fingerprint = _fingerprint(info or path.stat())
        except OSError:
            return None
        if fingerprint is None:
            return None
        known = self._known.get(key)
        if known is None or known[1] != fingerprint:
            # Not seen in this run, or another run sharing the cache has replaced the entry since.
            known = self._authentic_record(key)
            if known is None or known[1] != fingerprint:
                return None
            self._known[key] = known
        sha256 = known[0]
        if artifact.sha256 and artifact.sha256.lower() != sha256:
            return None
        self.trusted[key] = sha256
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
        check = ArtifactHash(artifact)
        try:
            with path.open("rb", buffering=0) as fh:
                digest = _digest_of(fh, check.algorithm)
                info = os.fstat(fh.fileno())  # the file that was hashed, whatever the path names now
        except FileNotFoundError:
            return None
        if not check.expected or digest == check.expected:
            if check.algorithm == "sha256":
                self.remember(artifact, path, digest, info)
            return path
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def discard(self, artifact: Artifact) -> None:
        self.trusted.pop(artifact.cache_key, None)
        self._known.pop(artifact.cache_key, None)
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
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        self._temps[tmp] = (info.st_dev, info.st_ino)
        return Path(tmp)

    def commit(self, artifact: Artifact, temp: Path, sha256: str | None = None) -> Path:
        """Move a verified download into place; ``sha256`` (when known) is remembered with it.

        The record names the file ``temp_path`` created (mode 0600: only this user wrote the bytes
        that were checked). If another file took its name meanwhile (a fetcher that renames its
        own file there, or someone else), it is trusted for this run, as checked, but not recorded."""
        final = self.path_for(artifact)
        created = self._temps.pop(str(temp), None)
        os.chmod(temp, 0o644)
        if not sha256 or created is None or not PERSISTENT_RECORDS:
            # (Windows cannot rename a file that is open, and records nothing anyway.)
            os.replace(temp, final)
            if sha256:
                self.remember(artifact, final, sha256)
            return final
        with temp.open("rb", buffering=0) as fh:
            os.replace(temp, final)
            info = os.fstat(fh.fileno())  # after the rename, which moves the ctime
        self.remember(artifact, final, sha256, info if (info.st_dev, info.st_ino) == created else None)
        return final

    def _pack_record(self, layout_digest: str) -> Path:
        return self.root / VERIFIED_DIR / "packs" / layout_digest

    def recall_pack(self, layout_digest: str) -> tuple[str, int] | None:
        """sha256 and size of the pack a layout gave before, if this user's key recorded them."""
        try:
            record = json.loads(self._pack_record(layout_digest).read_bytes())
            sha256, size, mac = record["sha256"], record["size"], record["mac"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(sha256, str) or type(size) is not int:
            return None
        if not _mac_matches(mac, self._key, "pack", layout_digest, sha256, size):
            return None
        return sha256, size

    def remember_pack(self, layout_digest: str, sha256: str, size: int) -> None:
        """Record the sha256 of a pack just read back from disk, for the next pack of the same layout."""
        record = {"sha256": sha256, "size": size, "mac": record_mac(self._key, "pack", layout_digest, sha256, size)}
        with contextlib.suppress(OSError):
            self._write_atomic(self._pack_record(layout_digest), json.dumps(record).encode())
