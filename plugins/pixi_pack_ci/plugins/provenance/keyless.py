"""Keyless signing and verification with sigstore-python: an OIDC identity, Fulcio, Rekor.

Imports of ``sigstore`` happen inside the functions: the plugin is loaded by every command, and
most commands never sign.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NoIdentityError, ProvenanceError, SigningError, VerificationError

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig, TrustedRoot
    from sigstore.oidc import IdentityToken
    from sigstore.verify.policy import VerificationPolicy

#: An explicit identity token wins over ambient detection (the sigstore CLI reads the same variable).
TOKEN_ENV = "SIGSTORE_IDENTITY_TOKEN"

NO_IDENTITY_HINT = (
    "no OIDC identity to sign with: in GitHub Actions grant `permissions: id-token: write`; "
    "in GitLab CI add `id_tokens: SIGSTORE_ID_TOKEN: aud: sigstore`; elsewhere set "
    f"{TOKEN_ENV}, or sign with a key (--sign-key)"
)


def load_trust_config(path: Path | None) -> ClientTrustConfig:
    """The Sigstore instance to sign against: a ClientTrustConfig file, or production (via TUF)."""
    from sigstore.errors import Error
    from sigstore.models import ClientTrustConfig

    if path is not None:
        try:
            trust = ClientTrustConfig.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ProvenanceError(f"cannot read Sigstore trust config {path}: {exc.strerror}") from None
        except Exception as exc:
            raise ProvenanceError(f"{path} is not a Sigstore ClientTrustConfig: {_first_line(exc)}") from None
    else:
        try:
            trust = ClientTrustConfig.production()
        except Error as exc:
            raise ProvenanceError(
                f"cannot fetch the Sigstore production trust root ({_first_line(exc)}); "
                "offline, pass --sigstore-trust-config or sign with --sign-key"
            ) from None
    # Rekor v2 entries (hashedrekord 0.0.2) are rejected by gh, cosign 2 and slsa-verifier today.
    trust.force_tlog_version = 1
    return trust


def identity_token() -> tuple[IdentityToken, dict[str, Any]]:
    """The ambient OIDC identity (GitHub, GitLab, …) and its claims, or a clear error."""
    from sigstore.errors import Error
    from sigstore.oidc import IdentityToken, detect_credential

    raw = os.environ.get(TOKEN_ENV) or None
    if raw is None:
        try:
            raw = detect_credential()
        except Error as exc:
            raise NoIdentityError(f"could not get an OIDC identity: {_first_line(exc)}") from None
    if not raw:
        raise NoIdentityError(NO_IDENTITY_HINT)
    try:
        token = IdentityToken(raw)
    except Error as exc:
        raise NoIdentityError(f"the OIDC identity token is not usable for signing: {_first_line(exc)}") from None
    return token, unverified_claims(raw)


def unverified_claims(raw_token: str) -> dict[str, Any]:
    """The JWT's claims, not verified: Fulcio verifies the token; we only describe the build with them."""
    try:
        body = raw_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def sign_keyless(payload: bytes, trust: ClientTrustConfig, token: IdentityToken) -> tuple[str, str]:
    """Sign an in-toto statement as a DSSE envelope; return the v0.3 bundle JSON and the identity
    (SAN) Fulcio certified, which is what verifiers match."""
    from sigstore.dsse import Statement
    from sigstore.errors import Error
    from sigstore.oidc import ExpiredIdentity
    from sigstore.sign import SigningContext

    try:
        statement = Statement(payload)
        context = SigningContext.from_trust_config(trust)
        with context.signer(token, cache=True) as signer:
            bundle = signer.sign_dsse(statement)
    except ExpiredIdentity:
        raise SigningError("the OIDC identity token has expired; request a fresh one and sign again") from None
    except Error as exc:
        raise SigningError(f"Sigstore signing failed: {_first_line(exc)}") from None
    except OSError as exc:  # connection refused, DNS, … (requests' errors are OSErrors)
        raise SigningError(f"Sigstore signing failed: cannot reach the service ({_first_line(exc)})") from None
    identity = certificate_identity(bundle.signing_certificate).get("identity", str(token.identity))
    return str(bundle.to_json()), identity


def load_trusted_roots(path: Path) -> list[TrustedRoot]:
    """Trusted roots from a ``trusted_root.json``, a gh-style ``.jsonl`` (one root per line), or a
    ClientTrustConfig (its ``trustedRoot``)."""
    from sigstore.models import TrustedRoot

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProvenanceError(f"cannot read trusted root {path}: {exc.strerror}") from None
    documents: list[Any] = []
    try:
        documents = [json.loads(text)]
    except ValueError:
        try:
            documents = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            raise ProvenanceError(f"{path} is neither JSON nor JSON lines") from None
    roots = []
    for doc in documents:
        if isinstance(doc, dict) and "trustedRoot" in doc:
            doc = doc["trustedRoot"]
        with tempfile.TemporaryDirectory() as tmp:
            one = Path(tmp) / "trusted_root.json"
            one.write_text(json.dumps(doc), encoding="utf-8")
            try:
                roots.append(TrustedRoot.from_file(str(one)))
            except Exception as exc:
                raise ProvenanceError(f"{path} is not a Sigstore trusted root: {_first_line(exc)}") from None
    if not roots:
        raise ProvenanceError(f"{path} holds no trusted root")
    return roots


def production_roots(offline: bool) -> list[TrustedRoot]:
    from sigstore.errors import Error
    from sigstore.models import ClientTrustConfig

    # With --offline sigstore-python warns that TUF is offline, which the user asked for; that
    # line would break the one-line errors and clutter the report.
    tuf_logger = logging.getLogger("sigstore._internal.tuf")
    level = tuf_logger.level
    if offline:
        tuf_logger.setLevel(logging.ERROR)
    try:
        return [ClientTrustConfig.production(offline=offline).trusted_root]
    except Error as exc:
        raise ProvenanceError(
            f"cannot get the Sigstore production trusted root ({_first_line(exc)}); "
            "offline, pass --trusted-root FILE or --offline"
        ) from None
    finally:
        tuf_logger.setLevel(level)


def verify_keyless(
    bundle_json: str, roots: list[TrustedRoot], policy: VerificationPolicy
) -> tuple[bytes, dict[str, str]]:
    """Check certificate chain, SCT, transparency log and DSSE signature against one of ``roots``
    and the identity ``policy``; return the signed payload and the certificate's identity fields."""
    from sigstore.errors import Error
    from sigstore.models import Bundle
    from sigstore.verify import Verifier

    try:
        bundle = Bundle.from_json(bundle_json)
    except Exception as exc:
        raise VerificationError(f"not a valid Sigstore bundle: {_first_line(exc)}") from None
    problems: list[str] = []
    for root in roots:
        try:
            payload_type, payload = Verifier(trusted_root=root).verify_dsse(bundle, policy)
        except Error as exc:
            problems.append(_first_line(exc))
            continue
        if payload_type != "application/vnd.in-toto+json":
            raise VerificationError(f"the bundle signs {payload_type!r}, not an in-toto statement")
        return payload, certificate_identity(bundle.signing_certificate)
    raise VerificationError(f"signature not accepted: {'; '.join(dict.fromkeys(problems))}")


_FIELDS = {
    "issuer": "1.3.6.1.4.1.57264.1.8",
    "build_signer": "1.3.6.1.4.1.57264.1.9",
    "runner_environment": "1.3.6.1.4.1.57264.1.11",
    "source_repository": "1.3.6.1.4.1.57264.1.12",
    "source_commit": "1.3.6.1.4.1.57264.1.13",
    "source_ref": "1.3.6.1.4.1.57264.1.14",
    "source_owner": "1.3.6.1.4.1.57264.1.16",
    "run_invocation": "1.3.6.1.4.1.57264.1.21",
}


def certificate_identity(cert: Any) -> dict[str, str]:
    """The Fulcio certificate fields a user recognises: SAN, issuer, repository, ref, commit, run."""
    from cryptography import x509

    out: dict[str, str] = {}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.UniformResourceIdentifier) or san.get_values_for_type(x509.RFC822Name)
        if names:
            out["identity"] = names[0]
    except x509.ExtensionNotFound:
        pass
    for name, oid in _FIELDS.items():
        try:
            raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
        except x509.ExtensionNotFound:
            continue
        out[name] = _der_utf8(raw)
    return out


def _der_utf8(raw: bytes) -> str:
    # Fulcio's v2 extensions are DER UTF8Strings: tag 0x0c, a length, then the text.
    if len(raw) >= 2 and raw[0] == 0x0C:
        if raw[1] < 0x80:
            return raw[2 : 2 + raw[1]].decode("utf-8", "replace")
        n = raw[1] & 0x7F
        length = int.from_bytes(raw[2 : 2 + n], "big")
        return raw[2 + n : 2 + n + length].decode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[0].split())
