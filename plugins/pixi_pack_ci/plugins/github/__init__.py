"""GitHub Actions: recognises a GitHub run and describes it for provenance.

Registered through the ``pixi_pack_ci`` entry point ``github``.
"""

from __future__ import annotations

from .plugin import GitHubPlugin

plugin = GitHubPlugin()

__all__ = ["GitHubPlugin", "plugin"]
