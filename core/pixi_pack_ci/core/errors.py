"""Errors the user can act on.

Every error the CLI reports is a :class:`PixiPackError`: its ``str()`` is one line written for
the user, and ``exit_code`` is what the process returns (1 for a failed run, 2 for bad usage).
Anything else that escapes is a bug and is reported as such.
"""

from __future__ import annotations


class PixiPackError(Exception):
    """Base class of every error shown to the user as one line."""

    exit_code: int = 1

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Where the problem is, when known (plugins turn this into CI annotations).
        self.file = file
        self.line = line

    def __str__(self) -> str:
        return self.message


class UsageError(PixiPackError):
    """The command line or an input file is wrong before any work starts."""

    exit_code = 2


class ManifestNotFoundError(UsageError):
    pass


class LockfileError(PixiPackError):
    """The lockfile is missing, malformed, or has entries we cannot pack."""


class EnvironmentNotFoundError(UsageError):
    pass


class PlatformNotFoundError(UsageError):
    pass


class ConfigError(UsageError):
    """The pixi-style config TOML or the auth file is malformed."""


class DownloadError(PixiPackError):
    """A package could not be fetched after every retry and mirror."""


class TransientFetchError(DownloadError):
    """A failure worth retrying: 5xx, 408/429, a reset or timed-out connection, a truncated body.
    Fetch plugins raise it; the core then tries again (the next mirror, after a backoff)."""


class ChecksumMismatchError(DownloadError):
    """A fetched or cached file does not have the hash the lockfile promises."""


class ArchiveError(PixiPackError):
    """The pack could not be written, or a pack being read is invalid."""


class UnsafeArchiveError(ArchiveError):
    """A pack tries to write outside its target or contains entries we refuse to extract."""


class UnpackError(PixiPackError):
    """The environment could not be created from a pack."""


class TargetExistsError(UnpackError):
    exit_code = 1
