"""The GitHub Actions plugin: hooks only; the work is in the sibling modules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pixi_pack_ci.core import hookimpl
from pixi_pack_ci.plugins.provenance.model import Attestation, BuildDescription

from .provenance import github_build_description, in_github_actions, upload_attestation, upload_token


class GitHubPlugin:
    @hookimpl
    def pixi_pack_ci_provenance_build(self, claims: Mapping[str, Any] | None) -> BuildDescription | None:
        if not in_github_actions(os.environ):
            return None
        return github_build_description(claims, os.environ)

    @hookimpl
    def pixi_pack_ci_provenance_signed(self, attestation: Attestation, report: dict[str, Any]) -> None:
        # Only Sigstore bundles: the attestations API rejects key-signed ones.
        if not in_github_actions(os.environ) or not attestation.keyless:
            return
        token = upload_token(os.environ)
        if token is None:
            return
        report["github_attestation"] = upload_attestation(attestation, os.environ, token)
