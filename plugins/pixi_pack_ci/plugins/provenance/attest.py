"""Attesting files: subjects → SHA256SUMS → statement → signature → ``<pack>.sigstore.json``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checksums import subjects_for, write_checksums, write_text_atomically
from .keyed import key_hint, load_signing_key, sign_with_key
from .keyless import identity_token, load_trust_config, sign_keyless
from .model import Attestation, BuildDescription
from .statement import build_statement, encode_statement

BUNDLE_SUFFIX = ".sigstore.json"


@dataclass(frozen=True)
class SigningRequest:
    """How to sign: with a key file, or keyless against a Sigstore instance."""

    sign_key: Path | None = None
    trust_config: Path | None = None

    def preflight(self) -> None:
        """Fail before any download if signing cannot work (no identity, unreadable key or config)."""
        if self.sign_key is not None:
            load_signing_key(self.sign_key)
        else:
            load_trust_config(self.trust_config)
            identity_token()


def bundle_path_for(pack: Path) -> Path:
    return pack.with_name(pack.name + BUNDLE_SUFFIX)


def attest_files(
    files: Sequence[tuple[Path, str]],
    request: SigningRequest,
    *,
    describe_build: Any,
    inputs: dict[str, Any],
    dependencies: Sequence[dict[str, Any]],
) -> Attestation:
    """Sign one statement covering every file; write SHA256SUMS and a bundle beside each file.

    ``describe_build(claims)`` returns the CI's :class:`BuildDescription` (the plugin hook).
    """
    base, subjects = subjects_for(files)
    checksums = write_checksums(base, subjects)
    if request.sign_key is not None:
        key = load_signing_key(request.sign_key)
        build: BuildDescription = describe_build(None)
        statement = build_statement(subjects, build, inputs, dependencies)
        bundle_json = sign_with_key(encode_statement(statement), key)
        signer, keyless = key_hint(key.public_key()), False
    else:
        trust = load_trust_config(request.trust_config)
        token, claims = identity_token()
        build = describe_build(claims)
        statement = build_statement(subjects, build, inputs, dependencies)
        bundle_json, signer = sign_keyless(encode_statement(statement), trust, token)
        keyless = True
    bundle_paths = []
    for subject in subjects:
        path = bundle_path_for(subject.path)
        write_text_atomically(path, bundle_json)
        bundle_paths.append(path)
    return Attestation(
        statement=statement,
        bundle_json=bundle_json,
        bundle_paths=tuple(bundle_paths),
        subjects=tuple(subjects),
        keyless=keyless,
        signer=signer,
        checksums_path=checksums,
    )
