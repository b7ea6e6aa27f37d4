"""Built-in fetchers for the channel URL schemes pixi-pack reads besides http(s) and file://.

Each is a plugin on ``pixi_pack_ci_fetch_artifact`` that answers for its scheme and returns None for
any other, so the core's fetch loop (cache, retries, mirrors, hash checks) serves them all. They sit
in the core, not in ``plugins/``: a lockfile with an ``s3://``, ``gcs://`` or ``oci://`` channel is
an ordinary pixi lockfile, not a CI system or build tool to integrate with. Each imports its cloud
library only when a URL of its scheme comes up, so a pack without one never loads them.
"""

from __future__ import annotations

import ipaddress

from ..errors import DownloadError


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: a server on this machine (test servers, local mirrors)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def missing_library(scheme: str, extra: str, module: str) -> DownloadError:
    """The one line for a scheme whose library is not installed."""
    return DownloadError(f"{scheme}:// URLs need {module}, which is not installed: pip install 'pixi-pack-ci[{extra}]'")
