"""What a conda subdir says about its system, decided in one place through ``rattler.Subdir``."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from rattler.platform import Subdir

ScriptKind = Literal["posix", "win-ia32", "win-amd64", "win-arm", "win-arm64"]


@lru_cache(maxsize=64)
def is_windows(platform: str) -> bool:
    """True for ``win-64``, ``win-arm64``, ``win-32``: scripts are PowerShell, binaries ``.exe``,
    environments keep ``Scripts/`` and ``Lib/site-packages``."""
    return bool(Subdir(platform).is_windows)


@lru_cache(maxsize=64)
def wheel_script_kind(platform: str) -> ScriptKind:
    """pypa installer's launcher kind for console scripts on ``platform``."""
    if not is_windows(platform):
        return "posix"
    arch = str(Subdir(platform).arch)
    kinds: dict[str, ScriptKind] = {"arm64": "win-arm64", "x86": "win-ia32"}
    return kinds.get(arch, "win-amd64")
