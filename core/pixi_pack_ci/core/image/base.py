"""Base images: ``scratch``, an OCI layout on disk, or a registry image, resolved to the digest
of the manifest for the target platform (recorded in the image's annotations). Base layers are
never unpacked: their descriptors and diff_ids are reused as they are."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from typing import Any

from .blobs import DOCKER_LIST, DOCKER_MANIFEST, INDEX, LAYER, MANIFEST, BlobStore, Descriptor
from .errors import ImageError, RegistryError
from .refs import ImageRef, LayoutRef
from .registry import Registry

_DOCKER_LAYERS = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": LAYER + "+gzip",
    "application/vnd.docker.image.rootfs.diff.tar": LAYER,
}


@dataclass
class BaseImage:
    """What an image takes from its base: config, layers, and where the layers' bytes are."""

    config: dict[str, Any] = field(default_factory=dict)
    layers: list[Descriptor] = field(default_factory=list)
    #: ``org.opencontainers.image.base.*`` annotations.
    annotations: dict[str, str] = field(default_factory=dict)
    #: A registry base: layers not copied yet live there (mounted or copied when pushing).
    remote: ImageRef | None = None
    registry: Registry | None = None

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])


def _platform_matches(entry: dict[str, Any], platform: dict[str, str]) -> bool:
    want = entry.get("platform") or {}
    if want.get("os") != platform["os"] or want.get("architecture") != platform["architecture"]:
        return False
    return "variant" not in platform or want.get("variant") in (None, platform["variant"])


def _pick(index: dict[str, Any], platform: dict[str, str], where: str) -> dict[str, Any]:
    for entry in index.get("manifests") or []:
        if _platform_matches(entry, platform):
            return dict(entry)
    arch = platform["architecture"] + (f"/{platform['variant']}" if "variant" in platform else "")
    raise ImageError(f"base {where} has no image for linux/{arch}")


def _check_platform(config: dict[str, Any], platform: dict[str, str], where: str) -> None:
    """A single-platform base must be for the target: an amd64 environment on an arm64 base
    would build and never run."""
    got = {"os": config.get("os"), "architecture": config.get("architecture")}
    if got != {"os": platform["os"], "architecture": platform["architecture"]}:
        want = f"{platform['os']}/{platform['architecture']}"
        raise ImageError(f"base {where} is for {got['os']}/{got['architecture']}, not {want}")


def _layers(manifest: dict[str, Any]) -> list[Descriptor]:
    out = []
    for layer in manifest.get("layers") or []:
        d = Descriptor.from_json(layer)
        # Same bytes, OCI's name for them: registries may refuse manifests that mix the two.
        out.append(Descriptor(_DOCKER_LAYERS.get(d.media_type, d.media_type), d.digest, d.size, d.annotations))
    return out


def _check(data: bytes, digest: str, where: str) -> bytes:
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise ImageError(f"base {where}: a blob does not match its digest {digest}")
    return data


def tagged_entry(index: object, tag: str | None, where: str) -> dict[str, Any]:
    """The one entry of a layout's ``index.json`` with ``tag`` (its ``ref.name``), or the only one."""
    manifests = index.get("manifests") if isinstance(index, dict) else None
    entries = [
        m
        for m in (manifests if isinstance(manifests, list) else [])
        if isinstance(m, dict)
        and isinstance(m.get("digest"), str)
        and (tag is None or (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag)
    ]
    if len(entries) != 1:
        found = "no image" if not entries else "several images"
        raise ImageError(f"{where}: {found} {'tagged ' + tag if tag else 'in index.json; name a :TAG'}")
    return dict(entries[0])


def layout_base(ref: LayoutRef, platform: dict[str, str], store: BlobStore) -> BaseImage:
    """A base from an OCI layout folder (its blobs are copied into ``store``)."""
    where = f"oci-layout:{ref.path}" + (f":{ref.tag}" if ref.tag else "")
    blobs = ref.path / "blobs"

    def read(digest: str) -> bytes:
        algorithm, _, hexdigest = digest.partition(":")
        try:
            return _check((blobs / algorithm / hexdigest).read_bytes(), digest, where)
        except OSError:
            raise ImageError(f"base {where} lacks the blob {digest}") from None

    try:
        index = json.loads((ref.path / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ImageError(f"base {where} is not an OCI layout (no readable index.json)") from None
    entry = tagged_entry(index, ref.tag, f"base {where}")
    while entry.get("mediaType") in (INDEX, DOCKER_LIST):
        entry = _pick(json.loads(read(entry["digest"])), platform, where)
    manifest = json.loads(read(entry["digest"]))
    config = json.loads(read(manifest["config"]["digest"]))
    _check_platform(config, platform, where)
    base = BaseImage(config, _layers(manifest), {"org.opencontainers.image.base.digest": str(entry["digest"])})
    for layer in base.layers:
        if not store.has(layer.digest):
            source = blobs / "sha256" / layer.digest.split(":", 1)[1]
            if not source.is_file():
                raise ImageError(f"base {where} lacks the layer {layer.digest}")
            shutil.copyfile(source, store.path(layer.digest))
    return base


def registry_base(ref: ImageRef, platform: dict[str, str], registry: Registry) -> BaseImage:
    """A base from a registry: manifest (the platform's, from an index) and config; the layers
    stay there until an output needs them."""
    accept = [INDEX, MANIFEST, DOCKER_LIST, DOCKER_MANIFEST]
    data, media_type = registry.get_manifest(ref.repository, ref.reference, accept)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if ref.digest:
        _check(data, ref.digest, str(ref))
    manifest = json.loads(data)
    if (manifest.get("mediaType") or media_type) in (INDEX, DOCKER_LIST):
        entry = _pick(manifest, platform, str(ref))
        digest = str(entry["digest"])
        data, _ = registry.get_manifest(ref.repository, digest, accept)
        manifest = json.loads(_check(data, digest, str(ref)))
    config_digest = manifest["config"]["digest"]
    config = json.loads(_check(registry.get_blob(ref.repository, config_digest), config_digest, str(ref)))
    _check_platform(config, platform, str(ref))
    annotations = {"org.opencontainers.image.base.name": str(ref), "org.opencontainers.image.base.digest": digest}
    return BaseImage(config, _layers(manifest), annotations, remote=ref, registry=registry)


def fetch_base_layers(base: BaseImage, store: BlobStore) -> None:
    """Download a registry base's layers into ``store`` (checked), for a layout or archive output."""
    for layer in base.layers:
        fetch_base_layer(base, layer, store)


def fetch_base_layer(base: BaseImage, layer: Descriptor, store: BlobStore) -> None:
    """One layer of a registry base into ``store``, streamed and checked against its digest;
    nothing when the store has it (or the base is not a registry's). Also for a push whose
    cross-repository mount the registry refused."""
    if base.remote is None or base.registry is None:
        return
    for attempt in range(3):
        if store.has(layer.digest):
            return
        try:
            with store.writer() as sink:
                base.registry.download_blob(base.remote.repository, layer.digest, sink.write)
        except RegistryError:
            if attempt == 2:
                raise
            continue
        if sink.digest != layer.digest:
            raise ImageError(f"base {base.remote}: layer {layer.digest} arrived with another digest")
