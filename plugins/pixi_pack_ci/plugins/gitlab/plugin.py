"""The GitLab CI plugin: packs.json, dotenv reports, log sections, provenance, registry
credentials; ``collect`` and ``gitlab-image``.

Active only inside GitLab CI (``GITLAB_CI=true``), except the commands: ``collect`` merges the
matrix jobs' ``packs-*.json`` anywhere, and ``gitlab-image`` is the template's image job.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pixi_pack_ci.core import (
    ImageOptions,
    ImageResult,
    PackOptions,
    PackPlan,
    PackResult,
    UsageError,
    hookimpl,
    human_size,
)
from pixi_pack_ci.plugins.provenance.model import BuildDescription

from .image import image_arguments, image_dotenv, write_image_dotenv
from .job import LogSection, dotenv_path, merge_packs_json, write_dotenv, write_packs_json
from .provenance import gitlab_build_description, in_gitlab_ci


class GitLabPlugin:
    @staticmethod
    def _active() -> bool:
        return in_gitlab_ci(os.environ)

    @hookimpl
    def pixi_pack_ci_registry_credentials(self, registry: str) -> tuple[str, str] | None:
        # Every job gets a token for the project's own container registry ($CI_REGISTRY).
        user, password = os.environ.get("CI_REGISTRY_USER"), os.environ.get("CI_REGISTRY_PASSWORD")
        if not self._active() or not user or not password or registry != os.environ.get("CI_REGISTRY"):
            return None
        return user, password

    @hookimpl
    def pixi_pack_ci_modify_plan(self, plan: PackPlan, options: PackOptions) -> None:
        if not self._active() or options.quiet:
            return
        with LogSection(
            f"pixi_pack_plan_{plan.environment}_{plan.platform}",
            f"pixi-pack-ci: {plan.environment} on {plan.platform}: {len(plan.artifacts)} packages, "
            f"{human_size(plan.download_size)}",
        ):
            for artifact in plan.artifacts:
                LogSection.line(f"  {artifact.describe()}  {artifact.file_name}")

    @hookimpl(trylast=True)  # after the provenance plugin, so packs.json can name the bundles
    def pixi_pack_ci_packs_written(self, packs: list[PackResult], options: PackOptions) -> None:
        if not self._active():
            return
        written = write_packs_json(packs, options.report, os.environ)
        dotenv = dotenv_path()
        if dotenv is not None:
            write_dotenv(packs, dotenv)
        if options.quiet:
            return
        with LogSection("pixi_pack_packs", f"pixi-pack-ci: {len(packs)} pack(s)", collapsed=False):
            for p in packs:
                LogSection.line(f"  {p.path} {p.sha256} ({human_size(p.size)}, {len(p.packages)} packages)")
            if written:
                LogSection.line(f"  manifest: {written}")

    @hookimpl(trylast=True)  # after the provenance plugin has signed and attached
    def pixi_pack_ci_images_written(self, images: list[ImageResult], options: ImageOptions) -> None:
        if not self._active():
            return
        values = image_dotenv(images, getattr(options.args, "environment", None) or "default")
        dotenv = dotenv_path()
        if dotenv is not None:
            write_image_dotenv(values, dotenv)
        if options.quiet:
            return
        with LogSection("pixi_pack_image", f"pixi-pack-ci: {len(images)} image(s)", collapsed=False):
            for name, value in values.items():
                LogSection.line(f"  {name}={value}")

    @hookimpl
    def pixi_pack_ci_add_commands(self, subparsers: Any) -> None:
        collect = subparsers.add_parser(
            "collect", help="merge the packs-*.json of CI matrix jobs into packs.json and SHA256SUMS"
        )
        collect.add_argument("folder", nargs="?", type=Path, default=Path("pixi-packs"), metavar="DIR")
        collect.set_defaults(handler=self._cmd_collect)
        image = subparsers.add_parser(
            "gitlab-image", help="the GitLab template's image job: its PIXI_PACK_* variables as one image command"
        )
        image.set_defaults(handler=self._cmd_gitlab_image)

    @staticmethod
    def _cmd_gitlab_image(args: argparse.Namespace) -> int:
        from pixi_pack_ci.core import main

        argv = image_arguments(os.environ)
        print(f"$ pixi-pack-ci {shlex.join(argv)}", file=sys.stderr, flush=True)
        return main(argv)

    @staticmethod
    def _cmd_collect(args: argparse.Namespace) -> int:
        if not args.folder.is_dir():
            raise UsageError(f"{args.folder} is not a folder")
        if not any(args.folder.glob("packs-*.json")):
            raise UsageError(f"no packs-*.json in {args.folder}: nothing to collect")
        out = merge_packs_json(args.folder)
        print(f"🧾 Wrote {out} and {args.folder / 'SHA256SUMS'}")
        return 0

    @hookimpl(optionalhook=True)  # the provenance plugin's hook: absent when it is blocked
    def pixi_pack_ci_provenance_build(self, claims: Mapping[str, Any] | None) -> BuildDescription | None:
        if not self._active():
            return None
        return gitlab_build_description(claims, os.environ)
