"""The CI plugins answer `pixi_pack_ci_registry_credentials` for their own registry only, and only
inside their CI (the hook's caller, the image push, is tested in test_image.py)."""

from __future__ import annotations

import pytest
from pixi_pack_ci.core.plugin_manager import create_plugin_manager


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("GITHUB_ACTIONS", "GITHUB_TOKEN", "GITHUB_ACTOR", "GITLAB_CI", "CI_REGISTRY", "CI_REGISTRY_USER",
                 "CI_REGISTRY_PASSWORD", "PIXI_PACK_CI_DISABLE_PLUGINS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_github_gives_the_job_token_for_ghcr_only(clean_env: pytest.MonkeyPatch) -> None:
    pm = create_plugin_manager()
    clean_env.setenv("GITHUB_TOKEN", "ghs_job-token")
    assert pm.registry_credentials("ghcr.io") is None, "outside GitHub Actions: nothing"
    clean_env.setenv("GITHUB_ACTIONS", "true")
    clean_env.setenv("GITHUB_ACTOR", "octocat")
    assert pm.registry_credentials("ghcr.io") == ("octocat", "ghs_job-token")
    assert pm.registry_credentials("registry.example.org") is None
    assert pm.registry_credentials("docker.io") is None


def test_gitlab_gives_the_job_registry_token_for_ci_registry_only(clean_env: pytest.MonkeyPatch) -> None:
    pm = create_plugin_manager()
    clean_env.setenv("CI_REGISTRY", "registry.gitlab.example:5050")
    clean_env.setenv("CI_REGISTRY_USER", "gitlab-ci-token")
    clean_env.setenv("CI_REGISTRY_PASSWORD", "job-registry-secret")
    assert pm.registry_credentials("registry.gitlab.example:5050") is None, "outside GitLab CI: nothing"
    clean_env.setenv("GITLAB_CI", "true")
    assert pm.registry_credentials("registry.gitlab.example:5050") == ("gitlab-ci-token", "job-registry-secret")
    assert pm.registry_credentials("ghcr.io") is None


def test_image_outputs_name_every_push_by_digest() -> None:
    from pathlib import Path

    from pixi_pack_ci.core import ImageResult
    from pixi_pack_ci.plugins.github.outputs import image_outputs

    digest = "sha256:" + "ab" * 32
    image = ImageResult(digest, "application/vnd.oci.image.index.v1+json", ("linux-64", "linux-aarch64"),
                        ("ghcr.io/acme/app", "registry.example/app"), (Path("img"),), (), None, "gzip:6")  # fmt: skip
    assert image_outputs([image]) == {
        "image-digest": digest,
        "image-ref": f"ghcr.io/acme/app@{digest}",
        "image-refs": f"ghcr.io/acme/app@{digest}\nregistry.example/app@{digest}",
    }
