"""Signing an image: a SLSA v1 statement whose subject is the image's manifest (or index)
digest, named by every repository it was pushed to, signed as packs are (keyless or with a key),
written beside each output as ``<output>.sigstore.json`` and attached to the pushed image as an
OCI 1.1 referrer (Sigstore bundle artifact type), which ``gh attestation verify --bundle-from-oci``
and cosign look for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixi_pack_ci.core import ImageResult

from .attest import SigningRequest
from .checksums import write_text_atomically
from .keyed import key_hint, load_signing_key, sign_with_key
from .keyless import identity_token, load_trust_config, sign_keyless
from .model import BUNDLE_V03_MEDIA_TYPE, SLSA_PROVENANCE_V1, Attestation, BuildDescription, Subject
from .statement import build_statement, encode_statement, lockfile_dependency, package_dependencies


@dataclass(frozen=True)
class ImageAttestation:
    digest: str
    subjects: tuple[str, ...]
    keyless: bool
    signer: str
    bundle_paths: tuple[Path, ...]
    referrers: tuple[str, ...]
    statement: dict[str, Any] = field(default_factory=dict, repr=False)
    bundle_json: str = field(default="", repr=False)

    def attestation(self) -> Attestation:
        """As packs' attestations are, for ``pixi_pack_ci_provenance_signed`` (the GitHub plugin
        stores keyless ones through the attestations API)."""
        subjects = tuple(Subject(name, self.digest.split(":", 1)[1], Path(name)) for name in self.subjects)
        return Attestation(self.statement, self.bundle_json, self.bundle_paths, subjects, self.keyless, self.signer)

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "subjects": list(self.subjects),
            "keyless": self.keyless,
            "signer": self.signer,
            "bundle_paths": [str(p) for p in self.bundle_paths],
            "referrers": list(self.referrers),
            "predicate_type": SLSA_PROVENANCE_V1,
        }


def image_inputs(image: ImageResult) -> dict[str, Any]:
    """What the statement records of the build: platforms, compression with the compressor's
    version (the same level gives other gzip bytes with another zlib build, so a rebuild elsewhere
    can tell why its layer digests differ), and where the image went."""
    return {
        "image": {
            "platforms": list(image.platforms),
            "compression": image.compression,
            "compressor": image.compressor,
            "mediaType": image.media_type,
            "repositories": list(image.names),
        }
    }


def sign_image(
    image: ImageResult, request: SigningRequest, describe_build: Callable[[Mapping[str, Any] | None], BuildDescription]
) -> ImageAttestation:
    names = image.names or tuple(p.name for p in image.outputs) or ("image",)
    hexdigest = image.digest.split(":", 1)[1]
    subjects = [Subject(name, hexdigest, Path(name)) for name in names]
    dependencies = [lockfile_dependency(image.lockfile)] if image.lockfile is not None else []
    dependencies += package_dependencies(image.packages)
    if request.sign_key is not None:
        key = load_signing_key(request.sign_key)
        statement = build_statement(subjects, describe_build(None), image_inputs(image), dependencies)
        bundle_json, signer, keyless = (
            sign_with_key(encode_statement(statement), key),
            key_hint(key.public_key()),
            False,
        )
    else:
        trust = load_trust_config(request.trust_config)
        token, claims = identity_token()
        statement = build_statement(subjects, describe_build(claims), image_inputs(image), dependencies)
        bundle_json, signer = sign_keyless(encode_statement(statement), trust, token)
        keyless = True
    paths = []
    for output in image.outputs:
        path = output.with_name(output.name + ".sigstore.json")
        write_text_atomically(path, bundle_json)
        paths.append(path)
    annotations = {
        "dev.sigstore.bundle.content": "dsse-envelope",
        "dev.sigstore.bundle.predicateType": SLSA_PROVENANCE_V1,
    }
    referrers = image.attach(BUNDLE_V03_MEDIA_TYPE, bundle_json.encode(), annotations) if image.attach else []
    return ImageAttestation(
        image.digest, names, keyless, signer, tuple(paths), tuple(referrers), statement, bundle_json
    )
