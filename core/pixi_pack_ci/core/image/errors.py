"""One-line errors of the ``image`` command."""

from __future__ import annotations

from ..errors import PixiPackError, UsageError


class ImageError(PixiPackError):
    """An image could not be built or written."""


class ImageUsageError(UsageError):
    """A flag or reference of the ``image`` command is malformed."""


class RegistryError(ImageError):
    """A registry refused or failed a request, after retries where retrying made sense."""
