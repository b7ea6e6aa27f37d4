"""What can go wrong while signing or verifying, worded for the person reading the CI log."""

from __future__ import annotations

from pixi_pack_ci.core import PixiPackError


class ProvenanceError(PixiPackError):
    """Base class: a provenance step failed (exit 1)."""


class NoIdentityError(ProvenanceError):
    """Keyless signing was asked for, but this machine has no OIDC identity to sign with."""


class SigningError(ProvenanceError):
    """The signature could not be made (Fulcio, Rekor, or the key)."""


class KeyFileError(ProvenanceError):
    """A signing or verification key could not be read."""


class VerificationError(ProvenanceError):
    """The bundle does not prove what the user asked: bad signature, wrong signer, or not this pack."""


class UploadError(ProvenanceError):
    """The signed attestation could not be stored where it was meant to go."""
