"""Content-addressed blobs, canonical JSON and descriptors.

Every digest printed, written or pushed is the sha256 of bytes this module wrote (or, for a base
image's blobs, of bytes checked against their digest as they arrived).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same data always gives the same bytes and digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Descriptor:
        return cls(
            str(value["mediaType"]),
            str(value["digest"]),
            int(value["size"]),
            dict(value.get("annotations") or {}),
            value.get("platform"),
        )


class HashingWriter:
    """Writes to ``out`` while counting and hashing the bytes (the digest of what was written)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview, /) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


class BlobStore:
    """``blobs/sha256/<hex>`` under ``root``: written through a temporary file, named by digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "blobs" / "sha256"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.folder / digest.split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    @contextlib.contextmanager
    def writer(self) -> Iterator[HashingWriter]:
        """A new blob: yields a hashing writer; named by its digest once the block succeeds."""
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".blob.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as fh:
                sink = HashingWriter(fh)
                yield sink
            os.replace(tmp, self.path(sink.digest))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def put(self, data: bytes, media_type: str, **kwargs: Any) -> Descriptor:
        with self.writer() as sink:
            sink.write(data)
        return Descriptor(media_type, sink.digest, sink.size, **kwargs)

    def put_json(self, value: Any, media_type: str, **kwargs: Any) -> Descriptor:
        return self.put(canonical_json(value), media_type, **kwargs)

    def read_json(self, digest: str) -> Any:
        return json.loads(self.path(digest).read_bytes())
