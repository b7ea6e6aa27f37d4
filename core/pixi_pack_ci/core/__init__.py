"""pixi-pack-ci core: pack a ``pixi.lock`` environment into a pixi-pack compatible archive, and unpack it.

Public API for plugins and scripts: the hook markers, the data model and the pipeline functions.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import PixiPackError
from .hookspecs import hookimpl
from .model import (
    CondaArtifact,
    PackOptions,
    PackPlan,
    PackResult,
    PypiArtifact,
    UnpackResult,
    human_size,
)

__all__ = [
    "CondaArtifact",
    "PackOptions",
    "PackPlan",
    "PackResult",
    "PixiPackError",
    "PypiArtifact",
    "UnpackResult",
    "__version__",
    "hookimpl",
    "human_size",
]
