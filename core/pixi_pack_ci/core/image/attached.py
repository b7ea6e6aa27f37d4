"""What an image carries for a verifier: its digest and the bundles attached to it.

An image is named as the ``image`` command wrote it (``oci-layout:DIR[:TAG]``,
``oci-archive:FILE.tar[:TAG]``: the bundle is the file the command wrote beside it) or as ``gh
attestation verify`` names a pushed one (``oci://REGISTRY/REPO[:TAG|@DIGEST]``: the bundles are
its OCI 1.1 referrers of the given artifact type, from the referrers API or, where the registry
has none, the ``sha256-<hex>`` fallback tag). Every byte read from a registry is checked against
the digest that named it; which bundle, if any, really covers the image is the verifier's call.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .blobs import DOCKER_LIST, DOCKER_MANIFEST, INDEX, MANIFEST
from .errors import ImageError
from .refs import parse_reference
from .registry import Registry, new_client

MANIFEST_MEDIA_TYPES = [MANIFEST, DOCKER_MANIFEST]
INDEX_MEDIA_TYPES = [INDEX, DOCKER_LIST]


@dataclass(frozen=True)
class ImageBundles:
    """``target`` as given, the digest it names (``sha256:…``), and the bundles found: (where
    each came from, its JSON text)."""

    target: str
    digest: str
    bundles: tuple[tuple[str, str], ...]


def read_image_bundles(target: str, artifact_type: str) -> ImageBundles:
    """The digest ``target`` names and the ``artifact_type`` bundles attached to it."""
    if target.startswith("oci://"):
        return _from_registry(target, artifact_type)
    kind, _, rest = target.partition(":")
    path_text, _, tag = rest.rpartition(":") if _has_tag(rest) else (rest, "", "")
    path = Path(path_text)
    index = _archive_index(path, target) if kind == "oci-archive" else _layout_index(path, target)
    entries = [
        m
        for m in index.get("manifests") or []
        if not tag or (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag
    ]
    if len(entries) != 1:
        found = "no image" if not entries else "several images"
        raise ImageError(f"{target}: {found} {'tagged ' + tag if tag else 'in index.json; name a :TAG'}")
    digest = str(entries[0].get("digest", ""))
    bundle = path.with_name(path.name + ".sigstore.json")
    try:
        found_bundles: tuple[tuple[str, str], ...] = ((str(bundle), bundle.read_text(encoding="utf-8")),)
    except FileNotFoundError:
        found_bundles = ()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageError(f"cannot read {bundle}: {exc}") from None
    return ImageBundles(target, digest, found_bundles)


def _has_tag(rest: str) -> bool:
    head, sep, tail = rest.rpartition(":")
    return bool(sep and head and tail and "/" not in tail and "\\" not in tail)


def _layout_index(path: Path, target: str) -> dict[str, Any]:
    try:
        return _json_object(path.joinpath("index.json").read_bytes(), target)
    except OSError:
        raise ImageError(f"{target} is not an OCI layout (no readable index.json)") from None


def _archive_index(path: Path, target: str) -> dict[str, Any]:
    try:
        with tarfile.open(path) as archive:
            member = archive.extractfile("index.json")
            if member is None:
                raise KeyError("index.json")
            return _json_object(member.read(), target)
    except (OSError, tarfile.TarError, KeyError):
        raise ImageError(f"{target} is not an OCI archive (no readable index.json)") from None


def _json_object(data: bytes, target: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise ImageError(f"{target}: index.json is not JSON") from None
    if not isinstance(value, dict):
        raise ImageError(f"{target}: index.json is not an OCI index")
    return value


def _checked(data: bytes, digest: str, what: str) -> bytes:
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise ImageError(f"the registry gave {what} that does not match its digest {digest}")
    return data


def _from_registry(target: str, artifact_type: str) -> ImageBundles:
    ref = parse_reference(target[len("oci://") :], what="image")
    with new_client() as client:
        registry = Registry(ref.registry, ref.api, client)
        repo = ref.repository
        if ref.digest:
            digest = ref.digest
        else:
            body, _ = registry.get_manifest(repo, ref.tag or "latest", [*INDEX_MEDIA_TYPES, *MANIFEST_MEDIA_TYPES])
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        bundles = []
        for descriptor in _referrers(registry, repo, digest, artifact_type):
            manifest = json.loads(
                _checked(registry.get_manifest(repo, descriptor, MANIFEST_MEDIA_TYPES)[0], descriptor, "a referrer")
            )
            if (manifest.get("subject") or {}).get("digest") != digest:
                continue  # listed under this image's tag, but about another
            for layer in manifest.get("layers") or []:
                if layer.get("mediaType") == artifact_type:
                    blob = _checked(registry.get_blob(repo, str(layer["digest"])), str(layer["digest"]), "a bundle")
                    bundles.append((f"{ref.name}@{descriptor}", blob.decode("utf-8", errors="replace")))
    return ImageBundles(target, digest, tuple(bundles))


def _referrers(registry: Registry, repo: str, digest: str, artifact_type: str) -> list[str]:
    """Digests of the referrers of ``artifact_type``: the referrers API, else the fallback tag."""
    scope = f"repository:{repo}:pull"
    response = registry.request(
        "GET",
        f"/v2/{repo}/referrers/{digest}?artifactType={artifact_type}",
        scope,
        headers={"Accept": INDEX_MEDIA_TYPES[0]},
        ok=(200, 404),
        what=f"list the referrers of {digest}",
    )
    if response.status_code == 404:  # no referrers API (distribution 2.8, GHCR, Docker Hub)
        response = registry.request(
            "GET",
            f"/v2/{repo}/manifests/{digest.replace(':', '-')}",
            scope,
            headers={"Accept": INDEX_MEDIA_TYPES[0]},
            ok=(200, 404),
            what=f"give the referrers of {digest}",
        )
        if response.status_code == 404:
            return []
    try:
        index = response.json()
    except ValueError:
        raise ImageError(f"{registry.host} listed the referrers of {digest} as something other than JSON") from None
    return [
        str(m["digest"])
        for m in index.get("manifests") or []
        if isinstance(m, dict) and m.get("artifactType") == artifact_type and "digest" in m
    ]
