"""What an image carries for a verifier: its digest and the bundles attached to it.

An image is named as the ``image`` command wrote it (``oci-layout:DIR[:NAME]``,
``oci-archive:FILE.tar[:NAME]``: the bundle is the file the command wrote beside it) or as
verifiers name a pushed one (``oci://REGISTRY/REPO[:TAG|@DIGEST]``: the bundles are its OCI 1.1
referrers of the given artifact type, from the referrers API or, where the registry has none, the
``sha256-<hex>`` fallback tag).

A signature over a digest says nothing of bytes no one hashed, so every byte read is checked
against the digest that named it: a registry's manifests and bundles, and in a layout or archive
every blob the image is made of (a tampered layer, config or manifest, or an archive whose
``manifest.json``, which ``docker load`` reads, names anything else, is refused). A malformed
referrer is passed over with a -v note: one a stranger pushed must not hide ours. Which bundle, if
any, really covers the image is the verifier's call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .base import tagged_entry
from .blobs import DOCKER_LIST, DOCKER_MANIFEST, INDEX, MANIFEST
from .errors import ImageError, ImageUsageError, RegistryError
from .refs import _DIGEST, _split_name, parse_reference
from .registry import Registry, new_client

log = logging.getLogger(__name__)

MANIFEST_MEDIA_TYPES = [MANIFEST, DOCKER_MANIFEST]
INDEX_MEDIA_TYPES = [INDEX, DOCKER_LIST]


@dataclass(frozen=True)
class ImageBundles:
    """``target`` as given, the digest it names (``sha256:…``), and the bundles found: (where
    each came from, its JSON text)."""

    target: str
    digest: str
    bundles: tuple[tuple[str, str], ...]


def read_image_bundles(target: str, artifact_type: str, *, attached: bool = True) -> ImageBundles:
    """The digest ``target`` names (its bytes checked) and, with ``attached``, the
    ``artifact_type`` bundles attached to it."""
    if target.startswith("oci://"):
        return _from_registry(target, artifact_type, attached)
    kind, sep, rest = target.partition(":")
    if not sep or kind not in ("oci-layout", "oci-archive") or not rest:
        raise ImageUsageError(f"unknown image {target!r}: oci://REGISTRY/REPO[:TAG], oci-layout:DIR, oci-archive:FILE")
    path_text, name = _split_name(rest)
    tag = name
    if name is not None and "/" in name:  # REGISTRY/REPO[:TAG], as --output names an image
        tag = parse_reference(name, what="image name").tag or "latest"
    path = Path(path_text).absolute()
    with _open_local(kind, path, target) as read:
        digest = str(tagged_entry(_json(_read(read, "index.json"), target, "index.json"), tag, target)["digest"])
        _check_local_image(read, digest, target, archive=kind == "oci-archive")
    bundle = path.with_name(path.name + ".sigstore.json")
    found: tuple[tuple[str, str], ...] = ()
    if attached:
        try:
            found = ((str(bundle), bundle.read_text(encoding="utf-8")),)
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            raise ImageError(f"cannot read {bundle}: {exc}") from None
    return ImageBundles(target, digest, found)


#: Reads a file of the layout or archive by its path inside it (``index.json``, ``blobs/sha256/…``).
Reader = Callable[[str], IO[bytes]]


@contextmanager
def _open_local(kind: str, path: Path, target: str) -> Iterator[Reader]:
    if kind == "oci-layout":

        def read_file(name: str) -> IO[bytes]:
            try:
                return path.joinpath(name).open("rb")
            except OSError:
                raise ImageError(f"{target} is not an OCI layout or lacks {name}") from None

        yield read_file
        return
    try:
        archive = tarfile.open(path)  # noqa: SIM115  # closed by the with below; opening is what may fail
    except (OSError, tarfile.TarError):
        raise ImageError(f"{target} is not an OCI archive (not a readable tar)") from None
    with archive:

        def read_member(name: str) -> IO[bytes]:
            try:
                member = archive.extractfile(name)
            except (KeyError, tarfile.TarError):
                member = None
            if member is None:
                raise ImageError(f"{target} is not an OCI archive or lacks {name}")
            return member

        yield read_member


def _read(read: Reader, name: str) -> bytes:
    with read(name) as fh:
        return fh.read()


def _json(data: bytes, target: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise ImageError(f"{target}: {name} is not JSON") from None
    if not isinstance(value, dict):
        raise ImageError(f"{target}: {name} is not a JSON object")
    return value


def _check_local_image(read: Reader, top: str, target: str, *, archive: bool) -> None:
    """Every blob of the image ``top`` has its digest; an archive's ``manifest.json`` names only
    configs and layers of it."""
    images: list[dict[str, Any]] = []  # the manifests, with their layers
    pending = [top]
    while pending:
        digest = pending.pop()
        document = _json_blob(read, digest, target)
        children = document.get("manifests")
        if isinstance(children, list):  # an index: each platform's manifest
            pending += [_digest_of(c, target) for c in children]
            continue
        images.append(document)
        layers = document.get("layers")
        for descriptor in [document.get("config"), *(layers if isinstance(layers, list) else [])]:
            _hash_blob(read, _digest_of(descriptor, target), target)
    if not archive:
        return
    allowed = {
        (f"blobs/sha256/{_digest_of(m['config'], target)[7:]}",
         tuple(f"blobs/sha256/{_digest_of(x, target)[7:]}" for x in m.get("layers") or []))
        for m in images
    }  # fmt: skip
    try:
        docker = json.loads(_read(read, "manifest.json"))
    except ImageError:
        return  # no manifest.json: docker load reads index.json, whose image was checked
    except ValueError:
        raise ImageError(f"{target}: manifest.json is not JSON") from None
    for entry in docker if isinstance(docker, list) else [docker]:
        named = (entry.get("Config"), tuple(entry.get("Layers") or ())) if isinstance(entry, dict) else None
        if named not in allowed:
            raise ImageError(f"{target}: manifest.json names an image other than the one index.json names ({top})")


def _digest_of(descriptor: object, target: str) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ImageError(f"{target}: a descriptor without a sha256 digest")
    return digest


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_blob(read: Reader, digest: str, target: str) -> dict[str, Any]:
    data = _read(read, f"blobs/sha256/{digest[7:]}")
    _compare(_sha256(data), digest, target)
    return _json(data, target, digest)


def _hash_blob(read: Reader, digest: str, target: str) -> None:
    hasher = hashlib.sha256()
    with read(f"blobs/sha256/{digest[7:]}") as fh:  # a layer: streamed, whatever its size
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    _compare("sha256:" + hasher.hexdigest(), digest, target)


def _compare(found: str, digest: str, target: str) -> None:
    if found != digest:
        raise ImageError(f"{target}: the blob {digest} does not have that digest: the image was changed")


def _from_registry(target: str, artifact_type: str, attached: bool) -> ImageBundles:
    ref = parse_reference(target[len("oci://") :], what="image")
    with new_client() as client:
        registry = Registry(ref.registry, ref.api, client)
        repo = ref.repository
        accept = [*INDEX_MEDIA_TYPES, *MANIFEST_MEDIA_TYPES]
        body, _ = registry.get_manifest(repo, ref.digest or ref.tag or "latest", accept)
        digest = _sha256(body)
        if ref.digest and digest != ref.digest:
            raise ImageError(f"{ref.registry} gave a manifest for {ref.digest} that does not have that digest")
        bundles = []
        for referrer in _referrers(registry, repo, digest, artifact_type) if attached else []:
            try:
                bundles += _bundles_of(registry, repo, digest, referrer, artifact_type, ref.name)
            except (ImageError, ValueError) as exc:
                log.info("passed over the referrer %s of %s: %s", referrer, digest, exc)
    return ImageBundles(target, digest, tuple(bundles))


def _bundles_of(
    registry: Registry, repo: str, subject: str, referrer: str, artifact_type: str, name: str
) -> list[tuple[str, str]]:
    """The ``artifact_type`` layers of the referrer manifest ``referrer``, if it is about ``subject``."""
    data, _ = registry.get_manifest(repo, referrer, MANIFEST_MEDIA_TYPES)
    if _sha256(data) != referrer:
        raise ImageError("the registry gave it with another digest")
    manifest = json.loads(data)
    about = manifest.get("subject") if isinstance(manifest, dict) else None
    if not isinstance(about, dict) or about.get("digest") != subject:
        raise ImageError("it is about another image")  # listed under this image's tag, but not its own
    found = []
    for layer in manifest.get("layers") or []:
        if isinstance(layer, dict) and layer.get("mediaType") == artifact_type:
            digest = _digest_of(layer, f"the referrer {referrer}")
            blob = registry.get_blob(repo, digest)
            if _sha256(blob) != digest:
                raise ImageError(f"the registry gave its layer {digest} with another digest")
            found.append((f"{name}@{referrer}", blob.decode("utf-8", errors="replace")))
    return found


def _referrers(registry: Registry, repo: str, digest: str, artifact_type: str) -> list[str]:
    """Digests of the referrers of ``artifact_type``: the referrers API, else the fallback tag."""
    listings = [
        f"/v2/{repo}/referrers/{digest}?artifactType={artifact_type}",
        f"/v2/{repo}/manifests/{digest.replace(':', '-')}",  # no referrers API (distribution 2.8, GHCR)
    ]
    for url in listings:
        response = registry.request(
            "GET",
            url,
            f"repository:{repo}:pull",
            headers={"Accept": INDEX},
            ok=(200, 404),
            what=f"list the referrers of {digest}",
        )
        if response.status_code == 200:
            break
    else:
        return []
    try:
        index = response.json()
    except ValueError:
        raise RegistryError(f"{registry.host} listed the referrers of {digest} as something other than JSON") from None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    return [
        str(m["digest"])
        for m in (manifests if isinstance(manifests, list) else [])
        if isinstance(m, dict) and m.get("artifactType") == artifact_type and _DIGEST.match(str(m.get("digest", "")))
    ]
