"""Shared by the provenance and CI-plugin tests: the loopback Sigstore fixture's data and the
environments of emulated GitHub and GitLab jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sigstore_double import FakeSigstore, fake_github_token, fake_gitlab_token

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = ".github/workflows/release.yml"
SAN = f"https://github.com/acme/pixi-app/{WORKFLOW}@refs/heads/main"
GITLAB_SAN = "https://gitlab.com/acme/pixi-app//.gitlab-ci.yml@refs/heads/main"
COMMIT = "a" * 40
UPLOAD_TOKEN = "ghs_upload-token-never-printed"
KEY_PASSWORD = "correct horse battery staple"

# Variables a CI machine running these tests could have set; each test states its own CI.
_CI_VARS = (
    "GITHUB_ACTIONS",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "GITHUB_TOKEN",
    "GITLAB_CI",
    "SIGSTORE_ID_TOKEN",
    "SIGSTORE_IDENTITY_TOKEN",
    "BUILDKITE",
    "CIRCLECI",
    "GOOGLE_SERVICE_ACCOUNT_NAME",
)


def no_ci() -> dict[str, str]:
    return dict.fromkeys(_CI_VARS, "")


def github_env(sigstore: Sigstore, repository: str = "acme/pixi-app", ref: str = "refs/heads/main") -> dict[str, str]:
    """A GitHub Actions job with `id-token: write`: the token comes from the (loopback) token URL."""
    owner, repo = repository.split("/")
    sigstore.fake.github_token = fake_github_token(owner, repo, WORKFLOW, ref=ref, sha=COMMIT)
    return {
        **no_ci(),
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": f"{sigstore.fake.rekor_url}/token?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-request-token",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_API_URL": sigstore.fake.rekor_url,
        "GITHUB_REPOSITORY": repository,
        "GITHUB_WORKFLOW_REF": f"{repository}/{WORKFLOW}@{ref}",
        "GITHUB_TOKEN": UPLOAD_TOKEN,
    }


def gitlab_env(project: str = "acme/pixi-app") -> dict[str, str]:
    """A GitLab job with `id_tokens: SIGSTORE_ID_TOKEN: aud: sigstore`."""
    return {
        **no_ci(),
        "GITLAB_CI": "true",
        "SIGSTORE_ID_TOKEN": fake_gitlab_token(project, "main", COMMIT),
        "CI_SERVER_URL": "https://gitlab.com",
        "CI_PROJECT_URL": f"https://gitlab.com/{project}",
        "CI_PROJECT_PATH": project,
        "CI_PROJECT_ID": "777",
        "CI_COMMIT_SHA": COMMIT,
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_REF_NAME": "main",
        "CI_PIPELINE_ID": "4242",
        "CI_PIPELINE_SOURCE": "push",
        "CI_PIPELINE_URL": f"https://gitlab.com/{project}/-/pipelines/4242",
        "CI_JOB_ID": "999",
        "CI_JOB_NAME": "pixi-pack: [linux-64]",
        "CI_JOB_URL": f"https://gitlab.com/{project}/-/jobs/999",
    }


@dataclass
class Sigstore:
    fake: FakeSigstore
    trust_config: Path
    trusted_root: Path
    trusted_root_jsonl: Path


def assert_secret_hidden(text: str, secret: str) -> None:
    """``secret`` may appear only in a ``::add-mask::`` command (how GitHub hides it from logs)."""
    for line in text.splitlines():
        if secret in line:
            # github-action-utils writes "::add-mask ::"; the runner reads both spellings.
            assert line.strip() in (f"::add-mask::{secret}", f"::add-mask ::{secret}"), f"secret leaked: {line!r}"
