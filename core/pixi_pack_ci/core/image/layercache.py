"""Layers kept between runs in the ``--use-cache`` folder, as ko's cache keeps built layers: an
unchanged package's layer is neither tarred nor compressed again.

A layer's key is everything its bytes depend on, read without reading the files: this format's
version, the compression and the compressor's version (gzip's bytes depend on the zlib build),
py-rattler's version (it writes the installed files), and for every entry of the layer its name,
type, mode, size, time and link target, plus the sha256 of each ``conda-meta`` record and wheel
``RECORD`` in it (which name each package's archive sha256, and each wheel file's). The prefix and
the time are in the names and headers.

An environment record keeps, for one image's environment, everything its build took from the
installed files: the activation facts, the layer plan before the plugins' say, and every
environment layer (the top one too). Its key is everything the install and the layers depend on
(:meth:`LayerCache.environment_key`), so an unchanged rebuild installs nothing: it takes the layers
from here, each checked against its digest as it is copied.

Entries are trusted as the package cache's are (``docs/trust.md``): each record carries a MAC with
this user's key, kept outside the cache, so a restored or shared cache's records are ignored; a hit
is used only if its blob still has the recorded digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import Any

from ..cache import PackageCache, file_digest
from .blobs import BlobStore, Descriptor, canonical_json
from .layers import Compression, LayerBlob, LayerFiles

FORMAT = "pixi-pack-ci image layer 1"
ENVIRONMENT_FORMAT = "pixi-pack-ci image environment 1"


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


class LayerCache:
    """``<cache>/image-layers/``: ``records/<key>.json`` and ``blobs/<hex>``."""

    def __init__(self, root: Path, compression: Compression) -> None:
        self.sealer = PackageCache(root)
        self.folder = root / "image-layers"
        (self.folder / "records").mkdir(parents=True, exist_ok=True)
        (self.folder / "blobs").mkdir(parents=True, exist_ok=True)
        (self.folder / "environments").mkdir(parents=True, exist_ok=True)
        self.compression = compression
        self.salt = [FORMAT, compression.describe(), compression.compressor(), f"py-rattler {_version('py-rattler')}"]

    def key(self, files: LayerFiles, paths: list[str]) -> str:
        entries: list[object] = []
        for name in files.names(paths):
            info, source = files.describe(name)
            entry: list[object] = [info.name, info.type.decode(), info.mode, info.size, info.mtime, info.linkname]
            if source is not None and _is_record(PurePosixPath(name)):
                entry.append(file_digest(source, "sha256"))
            entries.append(entry)
        return hashlib.sha256(canonical_json([self.salt, entries])).hexdigest()

    def get(self, files: LayerFiles, paths: list[str], store: BlobStore, comment: str) -> LayerBlob | None:
        key = self.key(files, paths)
        try:
            record = json.loads((self.folder / "records" / f"{key}.json").read_text(encoding="utf-8"))
            digest, diff_id, size = str(record["digest"]), str(record["diff_id"]), int(record["size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not self.sealer.sealed(record.get("mac"), key, digest, diff_id, size):
            return None
        return self._take(store, digest, diff_id, size, comment)

    def _take(self, store: BlobStore, digest: str, diff_id: str, size: int, comment: str) -> LayerBlob | None:
        """The cached blob ``digest`` copied into ``store``, if the copy still has that digest."""
        blob = self.folder / "blobs" / digest.split(":", 1)[-1]
        try:
            with store.writer() as sink, blob.open("rb") as fh:
                shutil.copyfileobj(fh, sink, 1 << 20)
        except OSError:
            return None
        if sink.digest != digest or sink.size != size:
            return None  # changed since: written again (what was copied is named by its own digest)
        return LayerBlob(Descriptor(self.compression.media_type, digest, size), diff_id, comment, cached=True)

    def put(self, files: LayerFiles, paths: list[str], store: BlobStore, blob: LayerBlob) -> None:
        key = self.key(files, paths)
        digest = blob.descriptor.digest
        # Always replaced: one there may be damaged (which is why this layer was written).
        _atomic_copy(store.path(digest), self.folder / "blobs" / digest.split(":", 1)[1])
        record = {
            "digest": digest, "diff_id": blob.diff_id, "size": blob.descriptor.size,
            "mac": self.sealer.seal(key, digest, blob.diff_id, blob.descriptor.size),
        }  # fmt: skip
        _atomic_write(self.folder / "records" / f"{key}.json", json.dumps(record).encode())

    # --- environment records ---------------------------------------------------------------------

    def environment_key(self, inputs: object) -> str:
        """The key of an environment record: ``inputs`` (the caller's: every input of the install
        and of the layer plan, see ``Builder.environment_inputs``) with this cache's salt (format,
        compression, compressor and py-rattler versions)."""
        return hashlib.sha256(canonical_json([ENVIRONMENT_FORMAT, self.salt, inputs])).hexdigest()

    def recall_environment(self, key: str) -> dict[str, Any] | None:
        """The record's body, if this user sealed it for ``key``; its layers are checked by :meth:`take`."""
        try:
            record = json.loads((self.folder / "environments" / f"{key}.json").read_bytes())
            body, mac = record["body"], record["mac"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(body, dict) or not self.sealer.sealed(mac, key, _body_digest(body)):
            return None
        return body

    def take(self, layers: Iterable[tuple[str, str, int, str]], store: BlobStore) -> list[LayerBlob] | None:
        """Every ``(digest, diff_id, size, comment)`` copied from the cache into ``store``, checked
        against its digest, a few at a time; None if any is missing or changed."""
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="layer") as pool:
            taken = list(pool.map(lambda layer: self._take(store, *layer), layers))
        found = [blob for blob in taken if blob is not None]
        return found if len(found) == len(taken) else None

    def remember_environment(
        self, key: str, body: dict[str, Any], blobs: Iterable[LayerBlob], store: BlobStore
    ) -> None:
        """Keep ``blobs`` (those not in the cache already: the caller knows which) and then the
        record, sealed: a record is never there before its layers."""
        for blob in blobs:
            digest = blob.descriptor.digest
            _atomic_copy(store.path(digest), self.folder / "blobs" / digest.split(":", 1)[1])
        record = {"body": body, "mac": self.sealer.seal(key, _body_digest(body))}
        _atomic_write(self.folder / "environments" / f"{key}.json", json.dumps(record).encode())


def _body_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _is_record(path: PurePosixPath) -> bool:
    return (path.parent.name == "conda-meta" and path.suffix == ".json") or (
        path.name == "RECORD" and path.parent.name.endswith(".dist-info")
    )


def _atomic_copy(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".layer.", suffix=".partial")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".record.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
