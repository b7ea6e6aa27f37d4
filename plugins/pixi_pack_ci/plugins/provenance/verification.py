"""``verify``: does this bundle prove that this pack came from the signer the user expects?

Three things must hold: the signature (Sigstore certificate + transparency log, or a key), the
signer's identity (policy from the flags, as ``gh attestation verify`` builds it), and that the
pack's sha256 is a subject of the signed statement (sigstore-python's ``verify_dsse`` does not
check this; we do).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .checksums import file_sha256
from .errors import ProvenanceError, VerificationError
from .keyed import key_hint, load_public_key, verify_with_key
from .keyless import load_trusted_roots, production_roots, verify_keyless
from .model import BUNDLE_V03_MEDIA_TYPE, SLSA_PROVENANCE_V1

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.verify.policy import VerificationPolicy

GITHUB = "https://github.com"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")


def _url(value: str, host: str = GITHUB) -> str:
    """``owner/repo`` → ``https://github.com/owner/repo``; full URLs (GitLab, GHES) are kept."""
    value = value.strip().rstrip("/")
    if value.startswith(("https://", "http://")):
        return value
    if "." in value.split("/", 1)[0]:  # gitlab.com/group/project
        return f"https://{value}"
    return f"{host}/{value}"


def _issuer_for(url: str) -> str:
    host = urlsplit(url).netloc.lower()
    return GITHUB_ISSUER if host in ("github.com", "www.github.com") else f"https://{host}"


@dataclass(frozen=True)
class IdentityRequirements:
    """Whose signature the user expects, from ``--repo``/``--owner``/``--signer-workflow``/…"""

    repo: str | None = None
    owner: str | None = None
    signer_workflow: str | None = None
    cert_identity: str | None = None
    cert_oidc_issuer: str | None = None
    source_ref: str | None = None

    @property
    def given(self) -> bool:
        return any((self.repo, self.owner, self.signer_workflow, self.cert_identity))

    def issuer(self) -> str:
        if self.cert_oidc_issuer:
            return self.cert_oidc_issuer
        anchor = self.cert_identity or self.signer_workflow or self.repo or self.owner or GITHUB
        return _issuer_for(_url(anchor))

    def describe(self) -> list[str]:
        parts = []
        for label, value in (
            ("repository", self.repo),
            ("owner", self.owner),
            ("signer workflow", self.signer_workflow),
            ("identity", self.cert_identity),
            ("source ref", self.source_ref),
        ):
            if value:
                parts.append(f"{label} {value}")
        parts.append(f"issuer {self.issuer()}")
        return parts

    def policy(self) -> VerificationPolicy:
        from sigstore.verify import policy

        if not self.given:
            raise ProvenanceError(
                "say whose signature you expect: --repo OWNER/REPO, --owner, --signer-workflow or --cert-identity"
            )
        issuer = self.issuer()
        checks: list[VerificationPolicy] = [policy.AnyOf([policy.OIDCIssuerV2(issuer), policy.OIDCIssuer(issuer)])]
        repo_url = _url(self.repo) if self.repo else None
        owner_url = _url(self.owner) if self.owner else (repo_url.rsplit("/", 1)[0] if repo_url else None)
        if repo_url:
            checks.append(policy.OIDCSourceRepositoryURI(repo_url))
        if owner_url:
            checks.append(policy.OIDCSourceRepositoryOwnerURI(owner_url))
        if self.source_ref:
            checks.append(policy.OIDCSourceRepositoryRef(self.source_ref))
        if self.cert_identity:
            checks.append(SubjectAlternativeNameMatches(f"^{re.escape(self.cert_identity)}$", self.cert_identity))
        elif self.signer_workflow:
            workflow = _url(self.signer_workflow)
            checks.append(
                SubjectAlternativeNameMatches(f"^{re.escape(workflow)}(@(refs/.*|[0-9a-f]+))?$", f"{workflow}@…")
            )
        elif repo_url:
            checks.append(SubjectAlternativeNameMatches(f"^{re.escape(repo_url)}/", f"{repo_url}/…"))
        elif owner_url:
            checks.append(SubjectAlternativeNameMatches(f"^{re.escape(owner_url)}/", f"{owner_url}/…"))
        return policy.AllOf(checks)


class SubjectAlternativeNameMatches:
    """A sigstore verification policy: the certificate's SAN matches a regular expression.

    sigstore-python's ``Identity`` compares exactly; ``gh``'s ``--signer-workflow`` accepts any
    ref or commit after ``@``, and so do we.
    """

    def __init__(self, pattern: str, description: str) -> None:
        self._pattern = re.compile(pattern)
        self._description = description

    def verify(self, cert: Certificate) -> None:
        from cryptography import x509
        from sigstore.errors import VerificationError as SigstoreVerificationError

        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise SigstoreVerificationError("the certificate has no subject alternative name") from None
        names = [*san.get_values_for_type(x509.UniformResourceIdentifier), *san.get_values_for_type(x509.RFC822Name)]
        if not any(self._pattern.search(name) for name in names):
            raise SigstoreVerificationError(
                f"the signer is {', '.join(names) or 'unnamed'}, expected {self._description}"
            )


@dataclass(frozen=True)
class VerifiedPack:
    """What ``verify`` established, for printing."""

    pack: Path | str  # a pack file, or an image as named (oci://…, oci-layout:…)
    sha256: str
    bundle: Path | str  # a file, or where in a registry the bundle came from
    subject_name: str
    keyless: bool
    statement: dict[str, Any]
    signer: dict[str, str] = field(default_factory=dict)
    tlog: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        predicate = self.statement.get("predicate") or {}
        build = predicate.get("buildDefinition") or {}
        run = predicate.get("runDetails") or {}
        return {
            "verified": True,
            "pack": str(self.pack),
            "sha256": self.sha256,
            "bundle": str(self.bundle),
            "subject": self.subject_name,
            "keyless": self.keyless,
            "signer": self.signer,
            "transparency_log": self.tlog,
            "predicate_type": self.statement.get("predicateType"),
            "build_type": build.get("buildType"),
            "builder_id": (run.get("builder") or {}).get("id"),
            "invocation_id": (run.get("metadata") or {}).get("invocationId"),
        }

    def lines(self) -> list[str]:
        info = self.to_json()
        out = [f"✅ {_label(self.pack)} (sha256 {self.sha256}) is subject {self.subject_name!r} of a signed statement"]
        if self.keyless:
            out.append(f"   signer: {self.signer.get('identity', '?')} (issuer {self.signer.get('issuer', '?')})")
            if "source_repository" in self.signer:
                commit = self.signer.get("source_commit", "?")
                out.append(
                    f"   source: {self.signer['source_repository']} @ {self.signer.get('source_ref', '?')} "
                    f"(commit {commit})"
                )
            if self.tlog:
                when = utc_timestamp(self.tlog.get("integratedTime"))
                out.append(f"   transparency log: entry {self.tlog.get('logIndex')}, integrated {when}")
        else:
            out.append(f"   signer: the key {self.signer.get('key', '?')} (no transparency log)")
        out.append(f"   predicate: {info['predicate_type']}, build type {info['build_type']}")
        if info["builder_id"]:
            out.append(f"   builder: {info['builder_id']}")
        if info["invocation_id"]:
            out.append(f"   run: {info['invocation_id']}")
        return out


def read_bundle(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProvenanceError(f"bundle {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvenanceError(f"cannot read bundle {path}: {exc}") from None
    return parse_bundle(text, path)


def parse_bundle(text: str, path: Path | str) -> tuple[str, dict[str, Any]]:
    """``text`` as a Sigstore bundle with a DSSE envelope (``path`` names it in errors)."""
    try:
        data = json.loads(text)
    except ValueError:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > 1 and all(_is_json(line) for line in lines):  # a .jsonl, one bundle per line
            raise ProvenanceError(f"{path} holds {len(lines)} bundles; pass a file with one") from None
        raise VerificationError(f"{path} is not JSON: not a Sigstore bundle") from None
    if not isinstance(data, dict) or "dsseEnvelope" not in data:
        raise VerificationError(f"{path} is not a Sigstore bundle with a DSSE envelope")
    return text, data


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _check_statement(payload: bytes, sha256: str, what: str, predicate_type: str) -> tuple[dict[str, Any], str]:
    try:
        statement = json.loads(payload)
    except ValueError:
        raise VerificationError("the signed payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
        raise VerificationError("the signed payload is not an in-toto statement")
    if statement.get("predicateType") != predicate_type:
        raise VerificationError(
            f"the statement's predicate type is {statement.get('predicateType')!r}, expected {predicate_type!r}"
        )
    subjects = statement.get("subject") or []
    for subject in subjects:
        if isinstance(subject, dict) and (subject.get("digest") or {}).get("sha256") == sha256:
            return statement, str(subject.get("name", ""))
    names = ", ".join(str(s.get("name")) for s in subjects if isinstance(s, dict)) or "nothing"
    raise VerificationError(f"{what} (sha256 {sha256[:16]}…) is not a subject of this attestation (it covers: {names})")


def _label(artifact: Path | str) -> str:
    """How messages name a pack (its file name) or an image (as given)."""
    return artifact.name if isinstance(artifact, Path) else artifact


def verify_pack(pack: Path, bundle_path: Path, check: BundleCheck) -> VerifiedPack:
    if not pack.is_file():
        raise ProvenanceError(f"pack {pack} does not exist or is not a file")
    text, data = read_bundle(bundle_path)
    return check.verify(pack, file_sha256(pack), bundle_path, text, data)


@dataclass(frozen=True)
class BundleCheck:
    """What a bundle must satisfy: its signer (``requirements``, or the key) and predicate type."""

    requirements: IdentityRequirements
    key: Path | None = None
    trusted_root: Path | None = None
    offline: bool = False
    predicate_type: str = SLSA_PROVENANCE_V1

    def verify(
        self, artifact: Path | str, sha256: str, bundle: Path | str, text: str, data: dict[str, Any]
    ) -> VerifiedPack:
        """The bundle ``text`` (parsed: ``data``) verified and naming ``sha256`` as a subject."""
        what, bundle_name = _label(artifact), _label(bundle)
        material = data.get("verificationMaterial") or {}
        keyed_bundle = "publicKey" in material
        if self.key is not None:
            if not keyed_bundle:
                raise VerificationError(
                    f"{bundle_name} is a keyless Sigstore bundle: "
                    "verify it with --repo/--owner/--cert-identity, not --key"
                )
            public_key = load_public_key(self.key)
            payload = verify_with_key(data, public_key)
            statement, name = _check_statement(payload, sha256, what, self.predicate_type)
            signer = {"key": key_hint(public_key)[:16]}
            return VerifiedPack(artifact, sha256, bundle, name, False, statement, signer)
        if keyed_bundle:
            raise VerificationError(f"{bundle_name} is signed with a key: verify it with --key PUBLIC_KEY")
        policy = self.requirements.policy()
        roots = load_trusted_roots(self.trusted_root) if self.trusted_root else production_roots(self.offline)
        payload, signer = verify_keyless(text, roots, policy)
        statement, name = _check_statement(payload, sha256, what, self.predicate_type)
        entries = material.get("tlogEntries") or []
        tlog = {k: entries[0].get(k) for k in ("logIndex", "integratedTime")} if entries else {}
        return VerifiedPack(artifact, sha256, bundle, name, True, statement, signer, tlog)


def verify_image(target: str, bundle_path: Path | None, check: BundleCheck) -> VerifiedPack:
    """An image (``oci://REGISTRY/REPO[:TAG|@DIGEST]``, ``oci-layout:DIR[:TAG]``,
    ``oci-archive:FILE.tar[:TAG]``) against ``bundle_path``, else the bundles attached to it (its
    referrers, or the file written beside the output): it passes when one of them does."""
    from pixi_pack_ci.core import read_image_bundles

    found = read_image_bundles(target, BUNDLE_V03_MEDIA_TYPE, attached=bundle_path is None)
    sha256 = found.digest.split(":", 1)[1]
    if bundle_path is not None:
        bundles: tuple[tuple[Path | str, str], ...] = ((bundle_path, read_bundle(bundle_path)[0]),)
    else:
        bundles = found.bundles
    if not bundles:
        raise VerificationError(
            f"{target} ({found.digest}) has no Sigstore bundle attached that could be read (-v says why of any "
            "passed over): pass --bundle"
        )
    failures = []
    for where, text in bundles:
        try:
            _, data = parse_bundle(text, where)
            return check.verify(target, sha256, where, text, data)
        except ProvenanceError as exc:  # VerificationError too: the next bundle may be the one
            failures.append(str(exc))
    if len(failures) == 1:
        raise VerificationError(failures[0])
    raise VerificationError(f"none of the {len(failures)} bundles attached to {target} verifies: {failures[0]}")


def utc_timestamp(seconds: object) -> str:
    try:
        return dt.datetime.fromtimestamp(int(str(seconds)), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError):
        return str(seconds)
