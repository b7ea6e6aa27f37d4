"""The typed pieces of an attestation: what was built, by whom, and what got signed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_V03_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"

#: Where our own build types are documented (docs/buildtypes.md in this repository).
BUILD_TYPES_DOC = "https://github.com/pixi-pack-ci/pixi-pack-action/blob/v1/docs/buildtypes.md"
LOCAL_BUILD_TYPE = f"{BUILD_TYPES_DOC}#local-v1"
GITLAB_BUILD_TYPE = f"{BUILD_TYPES_DOC}#gitlab-ci-v1"


@dataclass(frozen=True)
class BuildDescription:
    """The CI system's part of the SLSA v1 predicate, returned by ``pixi_pack_ci_provenance_build``.

    The provenance plugin adds the pack inputs to ``external_parameters`` (under ``pixiPack``) and
    the lockfile and every packed package to ``resolved_dependencies``.
    """

    build_type: str
    builder_id: str
    external_parameters: dict[str, Any]
    internal_parameters: dict[str, Any] = field(default_factory=dict)
    #: Source checkouts (``{"uri": "git+…@ref", "digest": {"gitCommit": sha}}``), listed first.
    resolved_dependencies: list[dict[str, Any]] = field(default_factory=list)
    invocation_id: str | None = None
    #: Extra ``runDetails.builder`` fields (e.g. ``version``); GitHub's shape has none.
    builder_extra: dict[str, Any] = field(default_factory=dict)
    #: Short name for messages: ``"github"``, ``"gitlab"``, ``"local"``.
    system: str = "local"


@dataclass(frozen=True)
class Subject:
    """One signed file: its name in the statement and in SHA256SUMS, and its digest."""

    name: str
    sha256: str
    path: Path


@dataclass(frozen=True)
class Attestation:
    """A signed statement and where its bundle was written."""

    statement: dict[str, Any]
    bundle_json: str
    bundle_paths: tuple[Path, ...]
    subjects: tuple[Subject, ...]
    #: ``True`` for a Sigstore (certificate + transparency log) bundle, ``False`` for a key-signed one.
    keyless: bool
    #: The certificate's identity (SAN) for keyless bundles, the key hint for keyed ones.
    signer: str
    checksums_path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "keyless": self.keyless,
            "signer": self.signer,
            "bundle_paths": [str(p) for p in self.bundle_paths],
            "subjects": [{"name": s.name, "sha256": s.sha256, "path": str(s.path)} for s in self.subjects],
            "checksums": str(self.checksums_path) if self.checksums_path else None,
            "predicate_type": self.statement.get("predicateType"),
            "build_type": self.statement.get("predicate", {}).get("buildDefinition", {}).get("buildType"),
        }
