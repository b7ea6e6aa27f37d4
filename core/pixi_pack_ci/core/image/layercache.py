"""Layers kept between runs in the ``--use-cache`` folder, as ko's cache keeps built layers: an
unchanged package's layer is neither tarred nor compressed again.

A layer's key is everything its bytes depend on, read without reading the files: this format's
version, the compression and the compressor's version (gzip's bytes depend on the zlib build),
py-rattler's version (it writes the installed files), and for every entry of the layer its name,
type, mode, size, time and link target, plus the sha256 of each ``conda-meta`` record and wheel
``RECORD`` in it (which name each package's archive sha256, and each wheel file's). The prefix and
the time are in the names and headers.

Entries are trusted as the package cache's are (``docs/trust.md``): each record carries a MAC with
this user's key, kept outside the cache, so a restored or shared cache's records are ignored; a hit
is used only if its blob still has the recorded digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import zlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath

from ..cache import PackageCache, file_digest
from .blobs import BlobStore, Descriptor, canonical_json
from .layers import Compression, LayerBlob, LayerFiles

FORMAT = "pixi-pack-ci image layer 1"


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
        self.compression = compression
        compressor = {"gzip": f"zlib {zlib.ZLIB_RUNTIME_VERSION}", "none": ""}.get(compression.kind)
        if compressor is None:
            compressor = f"zstandard {getattr(importlib.import_module('zstandard'), '__version__', '?')}"
        self.salt = [FORMAT, compression.describe(), compressor, f"py-rattler {_version('py-rattler')}"]

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
        blob = self.folder / "blobs" / digest.split(":", 1)[-1]
        try:
            with store.writer() as sink, blob.open("rb") as fh:
                shutil.copyfileobj(fh, sink)
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
