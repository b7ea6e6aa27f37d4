"""GitLab CI: recognises a GitLab job and describes it for provenance.

Registered through the ``pixi_pack_ci`` entry point ``gitlab``.
"""

from __future__ import annotations

from .plugin import GitLabPlugin

plugin = GitLabPlugin()

__all__ = ["GitLabPlugin", "plugin"]
