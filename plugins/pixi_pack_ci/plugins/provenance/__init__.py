"""Provenance: sign packs with SLSA v1 in-toto attestations (Sigstore keyless or a key) and verify them.

Registered through the ``pixi_pack_ci`` entry point ``provenance``. CI plugins describe their run
through this plugin's own hook, ``pixi_pack_ci_provenance_build`` (see :mod:`.hookspecs`).
"""

from __future__ import annotations

from .model import Attestation, BuildDescription, Subject
from .plugin import ProvenancePlugin

plugin = ProvenancePlugin()

__all__ = ["Attestation", "BuildDescription", "ProvenancePlugin", "Subject", "plugin"]
