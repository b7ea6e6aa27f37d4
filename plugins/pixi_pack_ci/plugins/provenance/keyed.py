"""Key-signed bundles for air-gapped sites: ECDSA P-256 over DSSE, no Sigstore service involved.

The bundle is a Sigstore bundle v0.3 whose verification material is a public-key hint (hex sha256 of
the DER public key) with no transparency-log entry: the shape cosign (``--key
--insecure-ignore-tlog``), sigstore-js and sigstore-go accept. sigstore-python cannot verify it (it
requires a certificate), so verification here is a few lines of ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .checksums import write_text_atomically
from .errors import KeyFileError, SigningError, VerificationError
from .model import BUNDLE_V03_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE

#: The passphrase of ``--sign-key`` files and of keys written by ``keygen``.
PASSPHRASE_ENV = "PIXI_PACK_CI_KEY_PASSWORD"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what the signature actually covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read signing key {path}: {exc.strerror}") from None
    if b"ENCRYPTED SIGSTORE PRIVATE KEY" in data:
        raise KeyFileError(f"{path} is a cosign key; export it as PKCS#8 PEM (or make one with `pixi-pack-ci keygen`)")
    try:
        key = serialization.load_pem_private_key(data, password=_passphrase())
    except TypeError:
        # cryptography says "password was not given" or "private key is not encrypted"
        if _passphrase() is None:
            raise KeyFileError(f"signing key {path} is encrypted: set {PASSPHRASE_ENV}") from None
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        raise KeyFileError(
            f"cannot read signing key {path}: wrong passphrase in {PASSPHRASE_ENV}, or not a PEM private key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"signing key {path} must be an ECDSA P-256 key (as `pixi-pack-ci keygen` writes)")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyFileError(f"{path} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"public key {path} must be an ECDSA P-256 key")
    return key


def generate_key_pair(private_path: Path, public_path: Path, *, encrypt: bool) -> str:
    """Write a new P-256 key pair (PKCS#8, encrypted with the passphrase from the environment)."""
    passphrase = _passphrase()
    if encrypt and passphrase is None:
        raise KeyFileError(f"set {PASSPHRASE_ENV} to the passphrase for the new key (or pass --no-passphrase)")
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists; not overwriting a key")
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if encrypt and passphrase else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        private_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem)
        write_text_atomically(public_path, public_pem.decode())
    except OSError as exc:
        raise KeyFileError(f"cannot write the key pair: {exc}") from None
    return key_hint(key.public_key())


def sign_with_key(payload: bytes, key: ec.EllipticCurvePrivateKey) -> str:
    """A v0.3 bundle holding a DSSE envelope of ``payload`` signed with ``key``."""
    try:
        signature = key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    except Exception as exc:  # a hardware-backed key could fail here
        raise SigningError(f"signing with the key failed: {exc}") from None
    bundle = {
        "mediaType": BUNDLE_V03_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(key.public_key())}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle)


def verify_with_key(bundle: dict[str, Any], public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Check a key-signed bundle's DSSE signature; return the signed payload."""
    try:
        envelope = bundle["dsseEnvelope"]
        payload_type = envelope["payloadType"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (KeyError, TypeError, binascii.Error):
        raise VerificationError("the bundle has no valid DSSE envelope") from None
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise VerificationError(f"the bundle signs {payload_type!r}, not an in-toto statement")
    hint = bundle.get("verificationMaterial", {}).get("publicKey", {}).get("hint")
    message = pae(payload_type, payload)
    for signature in signatures:
        try:
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            return payload
        except InvalidSignature:
            continue
    if hint and hint != key_hint(public_key):
        raise VerificationError(f"the bundle was signed by another key (hint {hint[:16]}…), not by the key given")
    raise VerificationError("the signature does not match: the statement was changed after signing")
