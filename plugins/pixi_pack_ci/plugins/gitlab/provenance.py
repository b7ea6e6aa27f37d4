"""GitLab's part of provenance: our documented ``gitlab-ci/v1`` build type, filled from CI variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pixi_pack_ci.core import __version__
from pixi_pack_ci.plugins.provenance.errors import ProvenanceError
from pixi_pack_ci.plugins.provenance.model import GITLAB_BUILD_TYPE, BuildDescription


def in_gitlab_ci(env: Mapping[str, str]) -> bool:
    return env.get("GITLAB_CI") == "true"


def gitlab_ref(env: Mapping[str, str]) -> str:
    if env.get("CI_COMMIT_TAG"):
        return f"refs/tags/{env['CI_COMMIT_TAG']}"
    return f"refs/heads/{env.get('CI_COMMIT_BRANCH') or env.get('CI_COMMIT_REF_NAME', '')}"


def gitlab_build_description(claims: Mapping[str, Any] | None, env: Mapping[str, str]) -> BuildDescription:
    project_url = env.get("CI_PROJECT_URL", "").rstrip("/")
    if not project_url or not env.get("CI_COMMIT_SHA"):
        raise ProvenanceError("CI_PROJECT_URL and CI_COMMIT_SHA are not set: cannot describe this GitLab job")
    ref = gitlab_ref(env)
    config_path = env.get("CI_CONFIG_PATH") or ".gitlab-ci.yml"
    # The certificate's identity is https://<ci_config_ref_uri>; the builder is that same config.
    config_ref_uri = (claims or {}).get("ci_config_ref_uri")
    builder_id = f"https://{config_ref_uri}" if config_ref_uri else f"{project_url}//{config_path}@{ref}"
    runner_environment = str((claims or {}).get("runner_environment") or env.get("CI_RUNNER_ENVIRONMENT", ""))
    return BuildDescription(
        build_type=GITLAB_BUILD_TYPE,
        builder_id=builder_id,
        external_parameters={
            "source": project_url,
            "ref": ref,
            "configPath": config_path,
            "job": env.get("CI_JOB_NAME", ""),
        },
        internal_parameters={
            "gitlab": {
                "server": env.get("CI_SERVER_URL", ""),
                "project_id": env.get("CI_PROJECT_ID", ""),
                "project_path": env.get("CI_PROJECT_PATH", ""),
                "pipeline_id": env.get("CI_PIPELINE_ID", ""),
                "pipeline_url": env.get("CI_PIPELINE_URL", ""),
                "pipeline_source": env.get("CI_PIPELINE_SOURCE", ""),
                "job_id": env.get("CI_JOB_ID", ""),
                "runner_environment": runner_environment,
            }
        },
        resolved_dependencies=[{"uri": f"git+{project_url}@{ref}", "digest": {"gitCommit": env["CI_COMMIT_SHA"]}}],
        invocation_id=env.get("CI_JOB_URL") or None,
        builder_extra={"version": {"pixi-pack-ci": __version__}},
        system="gitlab",
    )
