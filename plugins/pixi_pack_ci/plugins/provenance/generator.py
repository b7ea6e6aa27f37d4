"""``verify --provenance-path``: slsa-github-generator's provenance, checked as slsa-verifier does.

The reusable workflow ``pack-slsa3.yml`` hands the packs' ``hashes`` to
``generator_generic_slsa3.yml``, which signs one SLSA v0.2 statement for all of them
(``multiple.intoto.jsonl``, a Sigstore bundle since v2.1.0). Its certificate names the *generator*
(SAN ``…/generator_generic_slsa3.yml@refs/tags/vX.Y.Z``) and the caller's repository and ref
(Fulcio's source extensions), so the identity flags of ``verify`` do not fit; slsa-verifier's do:
``--source-uri github.com/O/R`` and ``--source-tag``/``--source-branch``/``--source-versioned-tag``,
``--builder-id``. slsa-verifier itself trusts only the public-good Sigstore through TUF (no
trusted-root flag); this check also runs offline and against any trusted root.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checksums import file_sha256
from .errors import ProvenanceError, VerificationError
from .keyless import load_trusted_roots, production_roots, verify_keyless
from .verification import GITHUB_ISSUER, STATEMENT_TYPES, SubjectAlternativeNameMatches, read_bundle, utc_timestamp

if TYPE_CHECKING:
    from sigstore.verify.policy import VerificationPolicy

GENERIC_GENERATOR = (
    "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml"
)
SLSA_PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"
GENERIC_BUILD_TYPE = "https://github.com/slsa-framework/slsa-github-generator/generic@v1"
#: slsa-verifier accepts a generator only when it ran at a release tag (no branch, SHA or pre-release).
_BUILDER_REF = r"refs/tags/v\d+\.\d+\.\d+"
_SEMVER_TAG = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def source_url(source_uri: str) -> str:
    """``github.com/o/r``, ``https://github.com/o/r`` or ``git+https://…`` → ``https://github.com/o/r``."""
    value = source_uri.strip().removeprefix("git+").rstrip("/")
    value = re.sub(r"^https?://", "", value).removesuffix(".git")
    host, _, path = value.partition("/")
    if host.lower() != "github.com" or path.count("/") != 1:
        raise ProvenanceError(
            f"--source-uri {source_uri!r}: slsa-github-generator builds GitHub repositories; give github.com/OWNER/REPO"
        )
    return f"https://github.com/{path}"


@dataclass(frozen=True)
class SourceRequirements:
    """What the user expects of the build, in slsa-verifier's terms."""

    source_uri: str
    source_tag: str | None = None
    source_branch: str | None = None
    source_versioned_tag: str | None = None
    builder_id: str | None = None

    def policy(self) -> VerificationPolicy:
        from sigstore.verify import policy

        builder = re.escape(GENERIC_GENERATOR)
        return policy.AllOf(
            [
                policy.AnyOf([policy.OIDCIssuerV2(GITHUB_ISSUER), policy.OIDCIssuer(GITHUB_ISSUER)]),
                policy.OIDCSourceRepositoryURI(source_url(self.source_uri)),
                SubjectAlternativeNameMatches(f"^{builder}@{_BUILDER_REF}$", f"{GENERIC_GENERATOR}@refs/tags/vX.Y.Z"),
            ]
        )

    def check_builder(self, builder: str) -> None:
        if self.builder_id is None:
            return
        name, _, ref = self.builder_id.partition("@")
        actual_name, _, actual_ref = builder.partition("@")
        if name != actual_name or (ref and ref != actual_ref):
            raise VerificationError(f"the provenance was built by {builder}, expected --builder-id {self.builder_id}")

    def check_ref(self, ref: str) -> None:
        if self.source_tag is not None and ref != f"refs/tags/{self.source_tag}":
            raise VerificationError(f"the packs were built from {ref}, expected tag {self.source_tag}")
        if self.source_branch is not None and ref != f"refs/heads/{self.source_branch}":
            raise VerificationError(f"the packs were built from {ref}, expected branch {self.source_branch}")
        if self.source_versioned_tag is not None and not _same_version(ref, self.source_versioned_tag):
            raise VerificationError(
                f"the packs were built from {ref}, expected a tag of version {self.source_versioned_tag}"
            )


def _same_version(ref: str, wanted: str) -> bool:
    """slsa-verifier's ``--source-versioned-tag``: the tag's version starts with the given parts."""
    if not ref.startswith("refs/tags/"):
        return False
    have, want = _SEMVER_TAG.match(ref.removeprefix("refs/tags/")), _SEMVER_TAG.match(wanted)
    if want is None:
        raise ProvenanceError(f"--source-versioned-tag {wanted!r} is not a version such as v1 or v1.2")
    if have is None:
        return False
    given = [part for part in want.groups() if part is not None]
    return [int(p) for p in given] == [int(p or 0) for p in have.groups()[: len(given)]]


@dataclass(frozen=True)
class MatchedPack:
    pack: Path
    sha256: str
    subject: str


@dataclass(frozen=True)
class VerifiedProvenance:
    """What ``verify --provenance-path`` established, for printing."""

    provenance: Path
    statement: dict[str, Any]
    signer: dict[str, str]
    matched: list[MatchedPack]
    other_subjects: list[str]
    tlog: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        predicate = self.statement.get("predicate") or {}
        invocation = predicate.get("invocation") or {}
        return {
            "verified": True,
            "provenance": str(self.provenance),
            "predicate_type": self.statement.get("predicateType"),
            "build_type": predicate.get("buildType"),
            "builder_id": (predicate.get("builder") or {}).get("id"),
            "source": {
                "repository": self.signer.get("source_repository"),
                "ref": self.signer.get("source_ref"),
                "commit": self.signer.get("source_commit"),
            },
            "entry_point": (invocation.get("configSource") or {}).get("entryPoint"),
            "invocation_id": (predicate.get("metadata") or {}).get("buildInvocationID"),
            "signer": self.signer,
            "transparency_log": self.tlog,
            "packs": [{"pack": str(m.pack), "sha256": m.sha256, "subject": m.subject} for m in self.matched],
            "other_subjects": self.other_subjects,
        }

    def lines(self) -> list[str]:
        info = self.to_json()
        source = info["source"]
        out = [
            f"✅ slsa-github-generator provenance {self.provenance.name}",
            f"   builder: {info['builder_id']}",
            f"   source: {source['repository']} @ {source['ref']} (commit {source['commit']})",
            f"   workflow: {info['entry_point']} (run {info['invocation_id']})",
            f"   predicate: {info['predicate_type']}, build type {info['build_type']}",
        ]
        if self.tlog:
            when = utc_timestamp(self.tlog.get("integratedTime"))
            out.append(f"   transparency log: entry {self.tlog.get('logIndex')}, integrated {when}")
        for match in self.matched:
            out.append(f"   ✅ {match.pack.name} (sha256 {match.sha256}) is subject {match.subject!r}")
        if self.other_subjects:
            out.append(f"   not checked (no file given): {', '.join(self.other_subjects)}")
        return out


def _check_predicate(statement: dict[str, Any], signer: dict[str, str]) -> None:
    """The signed predicate must tell the same story as the certificate Fulcio issued."""
    if statement.get("_type") not in STATEMENT_TYPES:
        raise VerificationError("the signed payload is not an in-toto statement")
    if statement.get("predicateType") != SLSA_PROVENANCE_V02:
        raise VerificationError(
            f"the statement's predicate type is {statement.get('predicateType')!r}: "
            f"slsa-github-generator's generic generator writes {SLSA_PROVENANCE_V02}"
        )
    predicate = statement.get("predicate") or {}
    builder = (predicate.get("builder") or {}).get("id")
    if builder != signer.get("identity"):
        raise VerificationError(f"the provenance names builder {builder!r}, but {signer.get('identity')} signed it")
    config = (predicate.get("invocation") or {}).get("configSource") or {}
    expected = f"git+{signer.get('source_repository')}@{signer.get('source_ref')}"
    if config.get("uri") != expected:
        raise VerificationError(f"the provenance's source is {config.get('uri')!r}, the certificate's {expected}")
    commit = (config.get("digest") or {}).get("sha1")
    if commit != signer.get("source_commit"):
        raise VerificationError(
            f"the provenance's commit is {commit!r}, the certificate's {signer.get('source_commit')}"
        )


def _match_packs(packs: list[Path], statement: dict[str, Any]) -> tuple[list[MatchedPack], list[str]]:
    subjects = [s for s in statement.get("subject") or [] if isinstance(s, dict)]
    by_digest = {str((s.get("digest") or {}).get("sha256")): str(s.get("name", "")) for s in subjects}
    matched = []
    for pack in packs:
        if not pack.is_file():
            raise ProvenanceError(f"pack {pack} does not exist or is not a file")
        sha256 = file_sha256(pack)
        if sha256 not in by_digest:
            names = ", ".join(by_digest.values()) or "nothing"
            raise VerificationError(
                f"{pack.name} (sha256 {sha256[:16]}…) is not a subject of this provenance (it covers: {names})"
            )
        matched.append(MatchedPack(pack, sha256, by_digest[sha256]))
    seen = {m.subject for m in matched}
    return matched, [name for name in by_digest.values() if name not in seen]


def verify_generator_provenance(
    packs: list[Path],
    provenance: Path,
    requirements: SourceRequirements,
    *,
    trusted_root: Path | None = None,
    offline: bool = False,
) -> VerifiedProvenance:
    text, data = read_bundle(provenance)
    if "publicKey" in (data.get("verificationMaterial") or {}):
        raise VerificationError(f"{provenance.name} is signed with a key, not by slsa-github-generator")
    roots = load_trusted_roots(trusted_root) if trusted_root else production_roots(offline)
    payload, signer = verify_keyless(text, roots, requirements.policy())
    try:
        statement = json.loads(payload)
    except ValueError:
        raise VerificationError("the signed payload is not JSON") from None
    if not isinstance(statement, dict):
        raise VerificationError("the signed payload is not an in-toto statement")
    _check_predicate(statement, signer)
    requirements.check_builder(signer.get("identity", ""))
    requirements.check_ref(signer.get("source_ref", ""))
    matched, others = _match_packs(packs, statement)
    entries = (data.get("verificationMaterial") or {}).get("tlogEntries") or []
    tlog = {k: entries[0].get(k) for k in ("logIndex", "integratedTime")} if entries else {}
    return VerifiedProvenance(provenance, statement, signer, matched, others, tlog)
