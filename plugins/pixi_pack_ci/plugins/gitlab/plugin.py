"""The GitLab CI plugin: hooks only; the work is in the sibling modules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pixi_pack_ci.core import hookimpl
from pixi_pack_ci.plugins.provenance.model import BuildDescription

from .provenance import gitlab_build_description, in_gitlab_ci


class GitLabPlugin:
    @hookimpl
    def pixi_pack_ci_provenance_build(self, claims: Mapping[str, Any] | None) -> BuildDescription | None:
        if not in_gitlab_ci(os.environ):
            return None
        return gitlab_build_description(claims, os.environ)
