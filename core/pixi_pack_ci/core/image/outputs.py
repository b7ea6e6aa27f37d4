"""Image outputs on disk: an OCI layout folder, or one tar holding an OCI layout plus Docker's
``manifest.json`` (what ``docker save`` writes since Docker 25), so ``docker load``,
``podman load`` and ``skopeo``'s ``oci-archive:`` and ``docker-archive:`` all read it. Both
appear whole or not at all; the archive's bytes are deterministic (:mod:`..tarwriter`).

An output's name goes where ``docker save`` (Docker 25+, classic or containerd store) writes it,
so each loader finds it: ``index.json``'s descriptor carries ``io.containerd.image.name`` (the
full name, read by containerd and podman) and ``org.opencontainers.image.ref.name`` (the tag
only, which ``skopeo``'s ``oci-archive:FILE:TAG`` selects by); ``manifest.json``'s ``RepoTags``
(Docker's classic store) the short form ``docker images`` shows. Only these two files name the
image: its manifests, config and so digests are the same with any name or none."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..atomic import atomic_output, remove_stale_partials, temp_prefix
from ..tarwriter import DeterministicTarWriter
from .blobs import INDEX, BlobStore, Descriptor, canonical_json
from .errors import ImageError
from .refs import ImageRef

LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'


def _index(top: Descriptor, tag: str, name: ImageRef | None) -> bytes:
    annotations = {"org.opencontainers.image.ref.name": tag}
    if name is not None:
        annotations["io.containerd.image.name"] = str(name)
    entry = Descriptor(top.media_type, top.digest, top.size, annotations, top.platform)
    return canonical_json({"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry.to_json()]})


def docker_manifest(store: BlobStore, manifests: Iterable[Descriptor], name: ImageRef | None = None) -> bytes:
    """Docker's ``manifest.json``: per image its config and layers, as paths into ``blobs/``. The
    name goes to the first image's ``RepoTags`` only: Docker's classic store loads every entry and
    would give the name to whichever came last; with several platforms that is the first ``-p``
    (podman and containerd take the name from ``index.json`` and load this machine's platform)."""
    entries: list[dict[str, Any]] = []
    for descriptor in manifests:
        manifest = store.read_json(descriptor.digest)
        entries.append(
            {
                "Config": "blobs/sha256/" + manifest["config"]["digest"].split(":", 1)[1],
                "RepoTags": [name.familiar] if name is not None and not entries else None,
                "Layers": ["blobs/sha256/" + layer["digest"].split(":", 1)[1] for layer in manifest["layers"]],
            }
        )
    return canonical_json(entries)


def write_layout(
    target: Path, store: BlobStore, top: Descriptor, blobs: list[str], tag: str, name: ImageRef | None = None
) -> None:
    """An OCI layout folder at ``target`` (replacing one there once the new one is complete)."""
    if target.exists() and not target.is_dir():
        raise ImageError(f"{target} exists and is not a folder; not replacing it with an OCI layout")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    work = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".partial", dir=target.parent))
    try:
        (work / "oci-layout").write_bytes(LAYOUT_FILE)
        (work / "index.json").write_bytes(_index(top, tag, name))
        folder = work / "blobs" / "sha256"
        folder.mkdir(parents=True)
        for digest in sorted(set(blobs)):
            source, dest = store.path(digest), folder / digest.split(":", 1)[1]
            try:
                os.link(source, dest)
            except OSError:
                shutil.copyfile(source, dest)
        if target.is_dir() and not target.is_symlink():
            if not (target / "oci-layout").is_file() and any(target.iterdir()):
                raise ImageError(f"{target} exists and is not an OCI layout; not replacing it")
            aside = work.with_name(work.name[: -len(".partial")] + ".old.partial")
            os.rename(target, aside)
            os.rename(work, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def write_archive(
    target: Path,
    store: BlobStore,
    top: Descriptor,
    manifests: list[Descriptor],
    blobs: list[str],
    tag: str,
    name: ImageRef | None = None,
) -> None:
    """The layout and Docker's ``manifest.json`` in one deterministic tar at ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as out:
        tar = DeterministicTarWriter(out)
        tar.add_directory("blobs/")
        tar.add_directory("blobs/sha256/")
        for digest in sorted(set(blobs)):
            path = store.path(digest)
            with path.open("rb") as fh:
                tar.add_file("blobs/sha256/" + digest.split(":", 1)[1], fh, os.fstat(fh.fileno()).st_size)
        tar.add_bytes("index.json", _index(top, tag, name))
        tar.add_bytes("manifest.json", docker_manifest(store, manifests, name))
        tar.add_bytes("oci-layout", LAYOUT_FILE)
        tar.finish()
