"""Hooks the provenance plugin offers to other plugins (added through ``pixi_pack_ci_add_hookspecs``).

CI plugins describe their run for the SLSA predicate, and may publish the signed result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pixi_pack_ci.core import hookspec

if TYPE_CHECKING:
    from .model import Attestation, BuildDescription


@hookspec(firstresult=True)
def pixi_pack_ci_provenance_build(claims: Mapping[str, Any] | None) -> BuildDescription | None:
    """Describe the CI run that makes the packs, for the SLSA v1 predicate.

    Called once per attestation, before signing. ``claims`` are the (unverified) claims of the OIDC
    token that will sign, or ``None`` when signing with a key. A plugin that recognises its CI system
    returns a :class:`~pixi_pack_ci.plugins.provenance.model.BuildDescription`; others return
    ``None``. The provenance plugin's generic "local" description runs last.
    """


@hookspec
def pixi_pack_ci_provenance_signed(attestation: Attestation, report: dict[str, Any]) -> None:
    """Called once after a run's bundle has been written next to its packs.

    A CI plugin may store it elsewhere (the GitHub plugin uploads it to the attestations API) and
    add what it did to ``report``: the run's ``"attestation"`` entry, which ``pack --json`` prints
    and CI plugins read for their outputs.
    Raise ``PixiPackError`` to fail the run; the packs and bundles stay on disk.
    """
