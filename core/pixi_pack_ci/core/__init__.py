"""pixi-pack-ci core: pack a ``pixi.lock`` environment into a pixi-pack compatible archive, and unpack it.

This module is the public API, for plugins and scripts: the hook markers, the data model, the
errors, the fetch plugin's context, and the entry points to the pipeline. Everything in the
submodules is private; the built-in plugins and the hatch integration import only from here
(import-linter checks it). Names that need py-rattler or httpx load when first used, so a plugin
that imports this module costs no start-up.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from .atomic import atomic_output
from .errors import (
    ChecksumMismatchError,
    DownloadError,
    PixiPackError,
    TransientFetchError,
    UsageError,
)
from .fetch_context import Digests, FetchContext
from .hookspecs import hookimpl, hookspec
from .image.refs import image_platforms, is_image_target
from .model import (
    CondaArtifact,
    ImageLayer,
    ImageOptions,
    ImageResult,
    PackOptions,
    PackPlan,
    PackResult,
    PypiArtifact,
    PypiSource,
    UnpackOptions,
    UnpackResult,
    human_size,
)
from .redact import SECRETS, redact_url, scrub

if TYPE_CHECKING:
    from .cli import main
    from .image.attached import ImageBundles, read_image_bundles
    from .inspection import inspect_pack
    from .install import install_environment

#: Public names that import py-rattler or httpx when used: module → names.
_LAZY = {
    "cli": ("main",),
    "inspection": ("inspect_pack",),
    "install": ("install_environment",),
    "image.attached": ("ImageBundles", "read_image_bundles"),
}


def __getattr__(name: str) -> Any:
    for module, names in _LAZY.items():
        if name in names:
            from importlib import import_module

            return getattr(import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SECRETS",
    "ChecksumMismatchError",
    "CondaArtifact",
    "Digests",
    "DownloadError",
    "FetchContext",
    "ImageBundles",
    "ImageLayer",
    "ImageOptions",
    "ImageResult",
    "PackOptions",
    "PackPlan",
    "PackResult",
    "PixiPackError",
    "PypiArtifact",
    "PypiSource",
    "TransientFetchError",
    "UnpackOptions",
    "UnpackResult",
    "UsageError",
    "__version__",
    "atomic_output",
    "hookimpl",
    "hookspec",
    "human_size",
    "image_platforms",
    "inspect_pack",
    "install_environment",
    "is_image_target",
    "main",
    "read_image_bundles",
    "redact_url",
    "scrub",
]
