"""The GitHub Actions plugin: step outputs, job summary, masks, annotations, provenance.

Active only inside GitHub Actions (``GITHUB_ACTIONS=true``), whether the action or a plain
``pixi-pack-ci`` step runs it. Workflow commands go to stderr, which the runner reads as it reads
stdout, so ``pack --json`` keeps a clean stdout.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import github_action_utils as gha
from pixi_pack_ci.core import (
    SECRETS,
    ImageOptions,
    ImageResult,
    PackOptions,
    PackPlan,
    PackResult,
    PixiPackError,
    hookimpl,
)
from pixi_pack_ci.plugins.provenance.model import Attestation, BuildDescription

from .outputs import action_outputs, image_outputs, image_summary, job_summary
from .provenance import github_build_description, in_github_actions, upload_attestation, upload_token

#: ``false`` turns the job summary off (the action's ``job-summary`` input).
SUMMARY_SWITCH_ENV = "PIXI_PACK_CI_JOB_SUMMARY"


_MASK_LOCK = threading.Lock()


@contextlib.contextmanager
def _commands_to_stderr() -> Iterator[None]:
    with contextlib.redirect_stdout(sys.stderr):
        yield
    sys.stderr.flush()


def _workspace_relative(file: str) -> str:
    workspace = os.environ.get("GITHUB_WORKSPACE")
    path = Path(file).absolute()
    if workspace:
        with contextlib.suppress(ValueError):
            return path.relative_to(Path(workspace).absolute()).as_posix()
    return str(path)


class GitHubPlugin:
    # Images of every run in this process: the action runs one image command per environment in
    # one step, whose outputs must name them all (a later set-output of a name replaces the first).
    _images_this_step: ClassVar[list[ImageResult]] = []

    def __init__(self) -> None:
        self._masking = False

    @staticmethod
    def _active() -> bool:
        return in_github_actions(os.environ)

    def _mask(self, secret: str) -> None:
        # Written straight to stderr, not through _commands_to_stderr: secrets are found on any
        # thread (a push's four workers each get a registry token), and redirect_stdout swaps
        # the process-wide sys.stdout, so two at once could leave stdout pointing at stderr.
        escaped = secret.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        with _MASK_LOCK:
            sys.stderr.write(f"::add-mask::{escaped}\n")
            sys.stderr.flush()

    @hookimpl
    def pixi_pack_ci_modify_plan(self, plan: PackPlan, options: PackOptions) -> None:
        # Credentials are known by now (auth file, lockfile URLs); mask them and any found later.
        if self._active() and not self._masking:
            self._masking = True
            SECRETS.subscribe(self._mask)

    @hookimpl(trylast=True)  # after the provenance plugin has signed, so bundles are in the report
    def pixi_pack_ci_packs_written(self, packs: list[PackResult], options: PackOptions) -> None:
        if not self._active():
            return
        outputs = action_outputs(packs, options.report)
        if os.environ.get("GITHUB_OUTPUT"):
            for name, value in outputs.items():
                gha.set_output(name, value)
        if os.environ.get("GITHUB_STEP_SUMMARY") and os.environ.get(SUMMARY_SWITCH_ENV, "true").lower() != "false":
            gha.append_job_summary(job_summary(packs, options.report))

    @hookimpl
    def pixi_pack_ci_error(self, error: PixiPackError, command: str) -> None:
        if not self._active():
            return
        with _commands_to_stderr():
            gha.error(
                str(error),
                title=f"pixi-pack-ci {command}",
                file=_workspace_relative(error.file) if error.file else None,
                line=error.line,
            )

    @hookimpl(trylast=True)  # after the provenance plugin has signed and attached
    def pixi_pack_ci_images_written(self, images: list[ImageResult], options: ImageOptions) -> None:
        if not self._active():
            return
        GitHubPlugin._images_this_step.extend(images)
        if os.environ.get("GITHUB_OUTPUT"):
            for name, value in image_outputs(GitHubPlugin._images_this_step).items():
                gha.set_output(name, value)
        if os.environ.get("GITHUB_STEP_SUMMARY") and os.environ.get(SUMMARY_SWITCH_ENV, "true").lower() != "false":
            gha.append_job_summary(image_summary(images))

    @hookimpl
    def pixi_pack_ci_registry_credentials(self, registry: str) -> tuple[str, str] | None:
        # The job's token pushes to the repository's own packages on ghcr.io (with
        # `permissions: packages: write`), as docker/login-action logs in with it.
        token = os.environ.get("GITHUB_TOKEN")
        if not self._active() or registry != "ghcr.io" or not token:
            return None
        return os.environ.get("GITHUB_ACTOR") or "github-actions", token

    @hookimpl(optionalhook=True)  # the provenance plugin's hook: absent when it is blocked
    def pixi_pack_ci_provenance_build(self, claims: Mapping[str, Any] | None) -> BuildDescription | None:
        if not self._active():
            return None
        return github_build_description(claims, os.environ)

    @hookimpl(optionalhook=True)  # the provenance plugin's hook: absent when it is blocked
    def pixi_pack_ci_provenance_signed(self, attestation: Attestation, report: dict[str, Any]) -> None:
        # Only Sigstore bundles: the attestations API rejects key-signed ones.
        if not self._active() or not attestation.keyless:
            return
        token = upload_token(os.environ)
        if token is None:
            return
        report["github_attestation"] = upload_attestation(attestation, os.environ, token)
