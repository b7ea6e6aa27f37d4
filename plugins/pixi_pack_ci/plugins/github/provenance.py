"""GitHub's part of provenance: the exact predicate ``actions/attest`` builds, and storing bundles
in the repository's attestations API so ``gh attestation verify --repo`` finds them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pixi_pack_ci.core import SECRETS
from pixi_pack_ci.plugins.provenance.errors import ProvenanceError, UploadError
from pixi_pack_ci.plugins.provenance.model import Attestation, BuildDescription

GITHUB_BUILD_TYPE = "https://actions.github.io/buildtypes/workflow/v1"
UPLOAD_SWITCH_ENV = "PIXI_PACK_CI_ATTESTATION_UPLOAD"

# Claim name → the runner's environment variable carrying the same value. The OIDC token's claims
# win (they are what Fulcio puts in the certificate); the variables cover key-signed runs.
_CLAIM_ENV = {
    "ref": "GITHUB_REF",
    "sha": "GITHUB_SHA",
    "repository": "GITHUB_REPOSITORY",
    "event_name": "GITHUB_EVENT_NAME",
    "workflow_ref": "GITHUB_WORKFLOW_REF",
    "repository_id": "GITHUB_REPOSITORY_ID",
    "repository_owner_id": "GITHUB_REPOSITORY_OWNER_ID",
    "runner_environment": "RUNNER_ENVIRONMENT",
    "run_id": "GITHUB_RUN_ID",
    "run_attempt": "GITHUB_RUN_ATTEMPT",
}


def in_github_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def github_claims(claims: Mapping[str, Any] | None, env: Mapping[str, str]) -> dict[str, str]:
    merged = {name: env.get(var, "") for name, var in _CLAIM_ENV.items()}
    # No variable carries job_workflow_ref (it differs from workflow_ref inside a reusable
    # workflow); without a token the caller's workflow is the best we know.
    merged["job_workflow_ref"] = merged["workflow_ref"]
    if claims and "job_workflow_ref" in claims:
        merged.update({k: str(v) for k, v in claims.items() if k in (*_CLAIM_ENV, "job_workflow_ref")})
    if not merged["repository"] or not merged["workflow_ref"]:
        raise ProvenanceError("GITHUB_REPOSITORY and GITHUB_WORKFLOW_REF are not set: cannot describe this GitHub run")
    return merged


def github_build_description(claims: Mapping[str, Any] | None, env: Mapping[str, str]) -> BuildDescription:
    """``buildSLSAProvenancePredicate()`` of ``@actions/attest``, field for field."""
    c = github_claims(claims, env)
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    workflow_path = c["workflow_ref"].replace(f"{c['repository']}/", "", 1).split("@", 1)[0]
    return BuildDescription(
        build_type=GITHUB_BUILD_TYPE,
        builder_id=f"{server}/{c['job_workflow_ref']}",
        external_parameters={
            "workflow": {"ref": c["ref"], "repository": f"{server}/{c['repository']}", "path": workflow_path}
        },
        internal_parameters={
            "github": {
                "event_name": c["event_name"],
                "repository_id": c["repository_id"],
                "repository_owner_id": c["repository_owner_id"],
                "runner_environment": c["runner_environment"],
            }
        },
        resolved_dependencies=[
            {"uri": f"git+{server}/{c['repository']}@{c['ref']}", "digest": {"gitCommit": c["sha"]}}
        ],
        invocation_id=f"{server}/{c['repository']}/actions/runs/{c['run_id']}/attempts/{c['run_attempt']}",
        system="github",
    )


def upload_token(env: Mapping[str, str]) -> str | None:
    if env.get(UPLOAD_SWITCH_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    return env.get("PIXI_PACK_CI_GITHUB_TOKEN") or env.get("GITHUB_TOKEN") or None


def upload_attestation(attestation: Attestation, env: Mapping[str, str], token: str) -> dict[str, Any]:
    """``POST /repos/{owner}/{repo}/attestations`` with the bundle; returns id and web URL."""
    SECRETS.add(token)
    repository = env.get("GITHUB_REPOSITORY", "")
    api = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    url = f"{api}/repos/{repository}/attestations"
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "pixi-pack-ci",
    }
    import httpx  # only when uploading: every run loads this plugin, few upload

    try:
        response = httpx.post(url, headers=headers, json={"bundle": json.loads(attestation.bundle_json)}, timeout=60.0)
    except httpx.HTTPError as exc:
        raise UploadError(f"could not store the attestation on GitHub ({url}): {exc}") from None
    if response.status_code not in (200, 201):
        try:
            message = str(response.json().get("message", ""))
        except ValueError:
            message = response.text[:200]
        hint = " (the job needs `permissions: attestations: write`)" if response.status_code in (401, 403, 404) else ""
        raise UploadError(f"GitHub refused the attestation: HTTP {response.status_code} {message}{hint}".strip())
    try:
        attestation_id = response.json().get("id")
    except ValueError:
        attestation_id = None
    return {
        "id": attestation_id,
        "url": f"{server}/{repository}/attestations/{attestation_id}" if attestation_id else None,
    }
