"""``--add SRC:DEST``: files of this machine (an application, its data) in a layer of their own,
after the environment's, so changing them changes that layer only. Their times are the image's
and their modes normalised like the environment's, so a fresh checkout gives the same layer."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ImageUsageError
from .layers import LayerFiles, walk


@dataclass(frozen=True)
class Addition:
    source: Path
    dest: PurePosixPath


def parse_add(text: str) -> Addition:
    source, sep, dest = text.rpartition(":")
    if not sep or not source or not dest.startswith("/"):
        raise ImageUsageError(f"--add {text!r}: expected SRC:DEST with DEST an absolute path in the image")
    path = Path(source)
    if not path.exists():
        raise ImageUsageError(f"--add {text!r}: {source} does not exist")
    target = PurePosixPath(dest)
    if ".." in target.parts or str(target) == "/":
        raise ImageUsageError(f"--add {text!r}: DEST must be a path below / without '..'")
    if path.is_file() and dest.endswith("/"):
        target = target / path.name
    return Addition(path.absolute(), target)


def addition_files(addition: Addition, work: Path, epoch: int) -> tuple[LayerFiles, list[str]]:
    """The layer's files: a folder as it is (links kept, not followed), a single file under its
    name at DEST (through a hard link or copy in ``work``). Every time is ``epoch``."""
    source = addition.source
    if source.is_dir():
        root = source
    else:
        root = work / f"add-{len(list(work.glob('add-*')))}"
        root.mkdir(parents=True)
        try:
            os.link(source, root / addition.dest.name)
        except OSError:
            shutil.copy2(source, root / addition.dest.name)
    dest = addition.dest if source.is_dir() else addition.dest.parent
    # build_start 0: every file counts as new, so each gets ``epoch`` whatever its time here.
    return LayerFiles(root, dest, epoch, 0.0), sorted(walk(root))
